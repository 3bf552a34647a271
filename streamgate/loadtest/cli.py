"""``streamgate loadtest``: many RTMP (or RTMPS), HTTP-FLV or WebSocket-FLV players
against one server, timed and measured (the URL's scheme picks the protocol).

The lead wires this as a subcommand of ``streamgate``; until then it runs as
``python -m streamgate.loadtest``. Both call :func:`add_arguments` on a
parser and :func:`main` with the parsed namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamgate.auth.signcmd import DEFAULT_ENV as DEFAULT_SECRET_ENV  # what `sign` reads
from streamgate.auth.signcmd import read_secret
from streamgate.errors import ConfigError
from streamgate.loadtest.flv import FLV_SCHEMES
from streamgate.loadtest.player import SCAN_MODES, PlayerOptions
from streamgate.loadtest.run import LoadConfig, run_load
from streamgate.loadtest.signing import FORMATS, UrlSigner
from streamgate.loadtest.stats import format_summary, write_json
from streamgate.loadtest.worker import parse_url

__all__ = ["add_arguments", "main"]

EXIT_FAILED_PLAYERS = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Run N RTMP, HTTP-FLV or WebSocket-FLV players against a server; report start
    times and received bitrate."""
    parser.add_argument(
        "url",
        help="rtmp://host[:port]/app/stream (RTMP), rtmps://host[:port]/app/stream (RTMP "
        "over TLS, port 443 by default), http://host:port/app/stream.flv "
        "(HTTP-FLV) or ws://host:port/app/stream.flv (WebSocket-FLV); '{i}' in it is "
        "replaced by the stream number (player index modulo --streams), for distinct names",
    )
    parser.add_argument("-n", "--players", type=int, default=10, help="players (default 10)")
    parser.add_argument(
        "-r",
        "--rate",
        type=float,
        default=100.0,
        help="players started per second during the ramp (default 100)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=float,
        default=10.0,
        help="seconds measured once every player started, after --warmup (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds between the end of the ramp and the measured window (default 2)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=None,
        help="each player leaves after this many seconds (churn); default: stays to the end",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="with '{i}' in the URL: number of distinct names (default: one per player)",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="a player the server refused or closed starts again (see --reconnect-delay)",
    )
    parser.add_argument("--reconnect-delay", type=float, default=0.5, help="seconds (default 0.5)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="player processes (default: one per CPU this process may use)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=10.0,
        help="a player without a keyframe after this many seconds fails (default 10)",
    )
    parser.add_argument(
        "--source-kbps",
        type=float,
        default=None,
        help="the publisher's bitrate: players below 99%% of it are counted as falling behind",
    )
    parser.add_argument("--query", default="", help="query string added to every URL (a=b&c=d)")
    parser.add_argument(
        "--sign",
        choices=FORMATS,
        default=None,
        help="sign every URL in this token format (as `streamgate sign`); the secret comes "
        f"from ${DEFAULT_SECRET_ENV} or --sign-secret-file",
    )
    parser.add_argument("--sign-kid", default=None, help="key id (signed format)")
    parser.add_argument("--sign-ttl", type=float, default=3600.0, help="token lifetime (s)")
    parser.add_argument(
        "--sign-secret-env",
        default=DEFAULT_SECRET_ENV,
        help=f"environment variable holding the secret (default {DEFAULT_SECRET_ENV})",
    )
    parser.add_argument("--sign-secret-file", type=Path, help="file holding the secret")
    parser.add_argument(
        "--sign-ip",
        default="",
        help="bind tokens to this client address (servers with [auth] bind_ip on)",
    )
    parser.add_argument(
        "--status-scan",
        choices=SCAN_MODES,
        default="tail",
        help="after the first keyframe, look for onStatus codes at the end of each read "
        "(tail, default), in every byte (full: costs a pass over all media), or not at all; "
        "FLV viewers look at the end of each read for the stream's end (either mode) or not",
    )
    parser.add_argument(
        "--delayed-acks",
        action="store_true",
        help="leave Linux's delayed ACKs on (default: TCP_QUICKACK until the first keyframe)",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--ca-file",
        metavar="FILE",
        default=None,
        help="rtmps: verify the server against the CA certificate(s) in this PEM file "
        "only (default: the system's CAs)",
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="rtmps: do NOT verify the server's certificate (chain, dates, host name)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the summary and every player here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _signer(args: argparse.Namespace) -> UrlSigner | None:
    if args.sign is None:
        return None
    try:
        secret = read_secret(args.sign_secret_file, args.sign_secret_env, "--sign-secret-file")
    except ConfigError as exc:
        raise ValueError(f"--sign: {exc.description}") from None
    return UrlSigner(secret, args.sign, args.sign_ttl, args.sign_kid, args.sign_ip)


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        url=args.url,
        players=args.players,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        hold=args.hold,
        streams=args.streams,
        reconnect=args.reconnect,
        reconnect_delay=args.reconnect_delay,
        workers=args.workers,
        start_timeout=args.start_timeout,
        status_scan=args.status_scan,
        quickack=not args.delayed_acks,
        signer=_signer(args),
        query=args.query,
        source_kbps=args.source_kbps,
        ca_file=args.ca_file,
        insecure=args.insecure,
    )


def main(args: argparse.Namespace) -> int:
    """Run; exit 0 if every player reached its first keyframe (and kept up, with
    --source-kbps), 1 otherwise, 2 on bad arguments."""
    try:
        config = config_from_args(args)
        if config.players < 1 or config.rate <= 0 or config.duration < 0:
            raise ValueError("--players and --rate must be positive, --duration not negative")
        if config.url.partition("://")[0] not in ("rtmp", "rtmps", *FLV_SCHEMES):
            raise ValueError(f"not an rtmp://, rtmps://, http:// or ws:// URL: {config.url!r}")
        parsed = parse_url(config.url.replace("{i}", "0"))  # a bad one fails here
        if getattr(parsed, "tls", False):
            # A CA file that cannot be read fails here too, not in every player.
            PlayerOptions(ca_file=config.ca_file, insecure=config.insecure).ssl_context()
    except ValueError as exc:
        print(f"streamgate loadtest: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if config.insecure and not args.quiet:
        report("WARNING: --insecure: the server's certificate is NOT verified")
    result = run_load(config, report=None if args.quiet else report)
    print(format_summary(result.summary))
    if args.json:
        write_json(args.json, result.summary, result.records, result.rates, config.public())
        print(f"wrote {args.json}")
    summary = result.summary
    ok = summary["reached"]["keyframe"] == summary["players"]
    bitrate = summary.get("bitrate", {})
    if config.source_kbps and not bitrate.get("all_full_rate", False):
        ok = False
    if not args.quiet and not ok:
        print(json.dumps(summary["final_state"]), file=sys.stderr)
    return 0 if ok else EXIT_FAILED_PLAYERS
