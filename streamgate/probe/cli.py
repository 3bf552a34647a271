"""``streamgate probe URL``: the arguments, and the human and JSON reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from streamgate.probe.steps import (
    ProbeOptions,
    ProbeReport,
    ProbeTarget,
    StepResult,
    parse_target,
    run_probe,
)

__all__ = ["DESCRIPTION", "EPILOG", "add_arguments", "main", "render_diagnosis", "render_step"]

DESCRIPTION = (
    "Check an RTMP(S) origin or stream step by step, with timings: DNS, TCP connect, "
    "TLS (rtmps), RTMP handshake, connect, play, first media, first keyframe, codecs. "
    "Ends with one diagnosis line."
)
EPILOG = """\
exit status:
  0  media arrived (and a keyframe, unless the stream is audio-only)
  1  any failure; the last line says which step failed and why
  2  usage error

examples:
  streamgate probe rtmp://127.0.0.1/live/cam1
  streamgate probe rtmps://origin.example.com/live/cam1 --ca private-ca.pem
  streamgate probe rtmp://origin:1935/live/cam1 --json --media-timeout 10
"""


def _target(text: str) -> ProbeTarget:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds in (0, 3600]")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the probe's arguments to ``parser`` (the ``probe`` sub-command's parser)."""
    parser.add_argument(
        "url",
        type=_target,
        metavar="URL",
        help="rtmp://host[:port]/app/stream or rtmps://... (default ports 1935 and 443)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds each network step may take (default 5; TCP: per address)",
    )
    parser.add_argument(
        "--media-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds from Play.Start to the first media, and from it to the first "
        "keyframe (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="rtmps: trust only the CA certificate(s) in this PEM file instead of the "
        "system trust store (a private CA)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="rtmps: do NOT verify the server's certificate (chain, dates, host name)",
    )


def _markers(stream: TextIO) -> tuple[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "ok", "XX"
    return "✓", "✗"


def render_step(step: StepResult, markers: tuple[str, str] = ("✓", "✗")) -> str:
    """``✓ tcp          1 ms  connected to 127.0.0.1:1935 from ...``."""
    mark = markers[0] if step.ok else markers[1]
    return f"{mark} {step.name:<9} {step.ms:>6.0f} ms  {step.detail}"


def render_diagnosis(report: ProbeReport) -> str:
    """The last line: ``OK: media arrived: ...`` or ``FAIL: connection refused ...``."""
    return f"{'OK' if report.ok else 'FAIL'}: {report.diagnosis}"


def main(args: argparse.Namespace) -> int:
    """Run the probe described by parsed ``args``; returns the exit status (0 or 1)."""
    target: ProbeTarget = args.url
    options = ProbeOptions(
        timeout=args.timeout,
        media_timeout=args.media_timeout,
        insecure=args.insecure,
        cafile=args.ca,
    )
    out = sys.stdout
    markers = _markers(out)

    def print_step(step: StepResult) -> None:
        print(render_step(step, markers), file=out, flush=True)

    if not args.json:
        print(f"probe {target}", file=out, flush=True)
        if target.tls and options.insecure:
            print("WARNING: --insecure: the server's certificate is NOT verified", file=out)
    try:
        report = asyncio.run(run_probe(target, options, None if args.json else print_step))
    except KeyboardInterrupt:
        print("probe interrupted", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.as_dict(), out, indent=2, default=str)
        out.write("\n")
    else:
        print(render_diagnosis(report), file=out)
    return 0 if report.ok else 1
