"""Summaries of a load-test run: percentiles, outcome counts, text and JSON.

Percentiles interpolate linearly between the two nearest ranks (NumPy's
default, ``method="linear"``), so p50 of ``[1, 2, 3, 4]`` is 2.5.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streamgate.loadtest.engine import PlayerRecord

__all__ = [
    "FULL_RATE",
    "describe",
    "format_summary",
    "percentile",
    "summarize",
    "write_json",
]

FULL_RATE = 0.99
"""A player receiving at least this share of the source bitrate keeps up."""

_TIMINGS = (
    ("tcp_ms", "TCP connected"),
    ("handshake_ms", "handshake done"),
    ("play_start_ms", "NetStream.Play.Start"),
    ("keyframe_ms", "first keyframe"),
    ("keyframe_after_play_ms", "first keyframe after play"),
    ("drop_ms", "refused/closed after play"),
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def describe(values: Iterable[float], digits: int = 3) -> dict[str, float | int | None]:
    """count, min, p50, p90, p99, max and mean (None when there are no values)."""
    data = sorted(values)
    if not data:
        return {
            "count": 0,
            "min": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "mean": None,
        }
    return {
        "count": len(data),
        "min": round(data[0], digits),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(data[-1], digits),
        "mean": round(sum(data) / len(data), digits),
    }


def _ms(start: float, end: float) -> float | None:
    return (end - start) * 1000.0 if start and end else None


def _timings(records: Sequence[PlayerRecord]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {key: [] for key, _ in _TIMINGS}
    for r in records:
        for key, value in (
            ("tcp_ms", _ms(r.started, r.tcp)),
            ("handshake_ms", _ms(r.started, r.handshake)),
            ("play_start_ms", _ms(r.started, r.play_start)),
            ("keyframe_ms", _ms(r.started, r.keyframe)),
            ("keyframe_after_play_ms", _ms(r.play_sent, r.keyframe)),
            ("drop_ms", _ms(r.play_sent, r.ended) if r.closed_by_server else None),
        ):
            if value is not None:
                out[key].append(value)
    return out


def summarize(
    records: Sequence[PlayerRecord],
    rates: Mapping[int, float | None] | None = None,
    *,
    source_bps: float | None = None,
    window: float | None = None,
    window_bytes: int | None = None,
) -> dict[str, Any]:
    """The summary of a run.

    ``rates`` are per-player received bits per second over the measured
    window (see :func:`~streamgate.loadtest.engine.window_rates`);
    ``source_bps`` is the publisher's bitrate to compare them with.
    """
    players = {r.index for r in records}
    first = {r.index: r for r in records if r.attempt == 0}
    last: dict[int, PlayerRecord] = {}
    for r in records:
        if r.index not in last or r.attempt > last[r.index].attempt:
            last[r.index] = r
    timings = _timings(records)
    summary: dict[str, Any] = {
        "players": len(players),
        "attempts": len(records),
        "reached": {
            "tcp": sum(1 for r in first.values() if r.tcp),
            "handshake": sum(1 for r in first.values() if r.handshake),
            "play_start": sum(1 for r in first.values() if r.play_start),
            "keyframe": sum(1 for r in first.values() if r.keyframe),
        },
        "final_state": dict(Counter(r.state_name for r in last.values()).most_common()),
        "closed_by_server": sum(1 for r in records if r.closed_by_server),
        "last_status": dict(Counter(r.last_status or "-" for r in records).most_common()),
        "errors": dict(Counter(_error_kind(r.error) for r in records if r.error).most_common(8)),
        "timings_ms": {key: describe(timings[key]) for key, _ in _TIMINGS},
        "bytes": sum(r.bytes for r in records),
    }
    if rates is not None:
        measured = [v for v in rates.values() if v is not None]
        bitrate: dict[str, Any] = {
            "players_measured": len(measured),
            "players_not_measured": sum(1 for v in rates.values() if v is None),
            "kbps": describe((v / 1000.0 for v in measured), 1),
        }
        if window is not None:
            bitrate["window_s"] = round(window, 3)
        if window_bytes is not None and window:
            bitrate["aggregate_mbps"] = round(window_bytes * 8 / window / 1e6, 3)
        if source_bps:
            ratios = [v / source_bps for v in measured]
            bitrate["source_kbps"] = round(source_bps / 1000.0, 1)
            bitrate["ratio"] = describe(ratios, 4)
            bitrate["below_full_rate"] = sum(1 for x in ratios if x < FULL_RATE) + sum(
                1 for v in rates.values() if v is None
            )
            bitrate["all_full_rate"] = bitrate["below_full_rate"] == 0 and bool(measured)
        summary["bitrate"] = bitrate
    return summary


def _error_kind(error: str) -> str:
    """Group errors by their kind, not their details (ports, counts)."""
    head = error.split(":", 1)[0].strip()
    return head[:80] if head else error[:80]


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few aligned lines for a terminal."""
    lines = [
        f"players {summary['players']}  attempts {summary['attempts']}  "
        f"closed by server {summary['closed_by_server']}",
        "reached (first attempt): " + "  ".join(f"{k} {v}" for k, v in summary["reached"].items()),
        "final state: " + "  ".join(f"{k} {v}" for k, v in summary["final_state"].items()),
        "last status: "
        + "  ".join(f"{k} x{v}" for k, v in list(summary["last_status"].items())[:5]),
    ]
    if summary["errors"]:
        lines.append("errors: " + "; ".join(f"{k} x{v}" for k, v in summary["errors"].items()))
    lines.append(f"{'ms':<28}{'n':>7}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
    labels = dict(_TIMINGS)
    for key, stats in summary["timings_ms"].items():
        if not stats["count"]:
            continue
        lines.append(
            f"{labels[key]:<28}{stats['count']:>7}"
            + "".join(f"{stats[q]:>10.1f}" for q in ("p50", "p90", "p99", "max"))
        )
    bitrate = summary.get("bitrate")
    if bitrate:
        kbps = bitrate["kbps"]
        text = f"received kbps over {bitrate.get('window_s', '?')} s: "
        if kbps["count"]:
            text += f"min {kbps['min']}  p50 {kbps['p50']}  max {kbps['max']}"
        else:
            text += "none measured"
        if "aggregate_mbps" in bitrate:
            text += f"  (all players {bitrate['aggregate_mbps']} Mbit/s)"
        lines.append(text)
        if "ratio" in bitrate:
            lines.append(
                f"source {bitrate['source_kbps']} kbps: {bitrate['below_full_rate']} player(s) "
                f"below {FULL_RATE:.0%}, lowest ratio {bitrate['ratio']['min']}"
            )
        if bitrate["players_not_measured"]:
            lines.append(
                f"not measured (not playing for the whole window): "
                f"{bitrate['players_not_measured']}"
            )
    return "\n".join(lines)


def write_json(
    path: str | Path,
    summary: Mapping[str, Any],
    records: Sequence[PlayerRecord] = (),
    rates: Mapping[int, float | None] | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """``{"config", "summary", "players": [...]}``; per-player times in ms from the connect.

    The window bitrate is on each player's last attempt (the one measured).
    """
    last: dict[int, int] = {}
    for r in records:
        last[r.index] = max(last.get(r.index, 0), r.attempt)
    players = []
    for r in records:
        row = r.as_dict()
        if rates is not None and r.attempt == last[r.index]:
            rate = rates.get(r.index)
            row["window_kbps"] = round(rate / 1000.0, 3) if rate is not None else None
        players.append(row)
    doc = {"config": dict(config or {}), "summary": dict(summary), "players": players}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
