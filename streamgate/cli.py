"""The ``streamgate`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from streamgate import __version__
from streamgate.auth import signcmd
from streamgate.config import Settings, load_settings
from streamgate.errors import ConfigError
from streamgate.loadtest import cli as loadtest_cli
from streamgate.log import setup_logging
from streamgate.probe import cli as probe_cli

__all__ = ["main"]

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"streamgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the gateway")
    run.add_argument("-c", "--config", required=True, help="TOML configuration file")
    run.add_argument("--log-format", choices=["text", "json"], help="overrides [log] format")
    # Started by the supervisor of [rtmp] workers > 1, never by hand: not listed.
    worker = sub.add_parser("worker")
    worker.add_argument("-c", "--config", required=True)
    worker.add_argument("--id", type=int, required=True)
    worker.add_argument("--count", type=int, required=True)
    worker.add_argument("--run-dir", required=True)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", required=True, help="TOML configuration file")
    sub.add_parser("config-reference", help="print the configuration reference (Markdown)")
    sign = sub.add_parser("sign", help="print a signed play or publish URL")
    signcmd.add_arguments(sign)
    probe = sub.add_parser(
        "probe",
        help="check an RTMP(S) origin or stream step by step (exit 0 only if media arrived)",
        description=probe_cli.DESCRIPTION,
        epilog=probe_cli.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe_cli.add_arguments(probe)
    loadtest = sub.add_parser(
        "loadtest",
        help="play a stream with many RTMP, HTTP-FLV or WebSocket-FLV players and report "
        "start times and bitrate",
    )
    loadtest_cli.add_arguments(loadtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sign":
        return signcmd.main(args)
    if args.command == "probe":
        return probe_cli.main(args)
    if args.command == "loadtest":
        return loadtest_cli.main(args)
    if args.command == "config-reference":
        from streamgate.reference import render_reference

        sys.stdout.write(render_reference())
        return 0
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"streamgate: invalid configuration:\n{exc.description}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        for warning in settings.warnings():
            print(f"{args.config}: warning: {warning}", file=sys.stderr)
        listen = settings.rtmp.listen
        shown = listen if isinstance(listen, str) else ", ".join(listen)
        print(f"{args.config}: OK ({settings.mode} mode, RTMP on {shown})")
        return 0
    if args.command == "worker":
        return _worker(args, settings)
    setup_logging(settings.log.level, args.log_format or settings.log.format)
    from streamgate.app import run

    try:
        run(settings, args.config)
    except ConfigError as exc:  # found while starting: a listen address that cannot be bound
        print(f"streamgate: {exc.description}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """One worker of a supervisor (see streamgate.workers)."""
    from streamgate.app import run
    from streamgate.workers.worker import WorkerRole, die_with_parent

    die_with_parent()
    # A SIGHUP before serve() listens for it must not kill a starting worker (the
    # supervisor sends every worker a reload); serve() installs its own handler.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(settings.log.level, settings.log.format, worker=args.id)
    try:
        run(settings, args.config, WorkerRole(args.id, args.count, args.run_dir))
    except ConfigError as exc:
        print(f"streamgate worker {args.id}: {exc.description}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
