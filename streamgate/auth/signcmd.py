"""``streamgate sign``: print a signed play or publish URL.

The secret never comes from the command line (it would land in shell
history and ``ps``): it is read from an environment variable, a file, or the
configuration's keys by key id. A token longer-lived than
``[auth] max_token_lifetime`` (of ``-c``'s configuration, else the default or
``$STREAMGATE_AUTH__MAX_TOKEN_LIFETIME``; ``--max-lifetime`` overrides) is
refused here rather than made: the server would refuse it anyway.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from streamgate.auth.tokens import token_query
from streamgate.client import parse_rtmp_url
from streamgate.config import load_keys, load_settings
from streamgate.errors import ConfigError

__all__ = ["add_arguments", "main", "read_secret"]

DEFAULT_ENV = "STREAMGATE_SIGN_SECRET"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="rtmp://host[:port]/app/stream to sign")
    parser.add_argument("--ttl", type=float, default=3600.0, help="seconds valid (default 3600)")
    parser.add_argument("--action", choices=["play", "publish"], default="play")
    parser.add_argument(
        "--format",
        choices=["signed", "nms", "secure_link"],
        default="signed",
        help="token format (default: streamgate's signed)",
    )
    parser.add_argument("--kid", help="key id (signed format; picks the key from -c)")
    parser.add_argument("--ip", default="", help="bind the token to this client IP")
    parser.add_argument(
        "--max-lifetime",
        type=float,
        help="longest --ttl allowed (default: [auth] max_token_lifetime; 0: no maximum)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--secret-env", default=DEFAULT_ENV, help=f"environment variable (default {DEFAULT_ENV})"
    )
    source.add_argument("--secret-file", type=Path, help="file holding the secret")
    source.add_argument("-c", "--config", help="take the key --kid from this configuration")


def _check_ttl(args: argparse.Namespace) -> None:
    """A ttl the server would accept, or a :class:`ConfigError` saying why not."""
    ttl: float = args.ttl
    if not math.isfinite(ttl) or ttl <= 0:
        raise ConfigError(f"--ttl must be a positive number of seconds, not {ttl}")
    limit: float | None = args.max_lifetime
    if limit is None:
        limit = load_settings(args.config).auth.max_token_lifetime
    elif not math.isfinite(limit) or limit < 0:
        raise ConfigError(f"--max-lifetime must be 0 or a positive number, not {limit}")
    if limit and ttl > limit:
        raise ConfigError(
            f"--ttl {ttl:g} exceeds max_token_lifetime ({limit:g} s): the server would "
            "refuse this token (raise [auth] max_token_lifetime, or --max-lifetime 0)"
        )


def _secret(args: argparse.Namespace) -> bytes:
    if args.config:
        settings = load_settings(args.config)
        play, publish = load_keys(settings.auth)
        keys = play if args.action == "play" else publish
        kid: str | None = args.kid
        if not kid or kid not in keys:
            raise ConfigError(f"{args.config}: no {args.action} key with id {kid!r}")
        return keys[kid]
    return read_secret(args.secret_file, args.secret_env, "--secret-file or -c with --kid")


def read_secret(path: Path | None, env: str, alternatives: str) -> bytes:
    """A signing secret from a file, else from the environment variable ``env``."""
    secret: str
    if path is not None:
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    else:
        secret = os.environ.get(env, "")
    if not secret:
        raise ConfigError(f"no secret: set ${env}, or use {alternatives}")
    return secret.encode()


def main(args: argparse.Namespace) -> int:
    try:
        url = parse_rtmp_url(args.url)
        _check_ttl(args)
        secret = _secret(args)
    except (ValueError, ConfigError) as exc:
        message = exc.description if isinstance(exc, ConfigError) else str(exc)
        print(f"streamgate sign: {message}", file=sys.stderr)
        return 2
    stream = url.name.partition("?")[0]
    exp = int(time.time() + args.ttl)
    query = token_query(args.format, args.action, url.app, stream, exp, secret, args.kid, args.ip)
    print(f"{url.tc_url}/{stream}?{query}")
    return 0
