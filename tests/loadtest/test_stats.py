"""Summaries: percentiles, outcome counts and the JSON file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from streamgate.loadtest.engine import PlayerRecord, Snapshot, delivered_bytes, window_rates
from streamgate.loadtest.player import State
from streamgate.loadtest.stats import describe, format_summary, percentile, summarize, write_json


def test_percentile_interpolates_linearly() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([10], 99) == 10
    # NumPy's "linear": rank (n-1)*q = 99*0.99 = 98.01 between 98 and 99 (0-based values).
    assert percentile(list(range(100)), 99) == pytest.approx(98.01)
    assert percentile(list(range(101)), 90) == pytest.approx(90.0)


def test_percentile_matches_sorted_order_whatever_the_input_order() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0, 1000) for _ in range(999)]
    shuffled = values[:]
    rng.shuffle(shuffled)
    for q in (1, 50, 90, 99):
        assert percentile(values, q) == percentile(shuffled, q)
    assert percentile(values, 50) == sorted(values)[499]


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_describe() -> None:
    d = describe([3.0, 1.0, 2.0])
    assert d == {
        "count": 3,
        "min": 1.0,
        "p50": 2.0,
        "p90": 2.8,
        "p99": 2.98,
        "max": 3.0,
        "mean": 2.0,
    }
    assert describe([])["count"] == 0
    assert describe([])["p50"] is None


def _record(index: int, attempt: int = 0, **kw: object) -> PlayerRecord:
    base: dict[str, object] = {
        "index": index,
        "attempt": attempt,
        "url": f"rtmp://127.0.0.1:1/live/s{index}",
        "state": int(State.LEFT),
        "started": 100.0,
        "tcp": 100.001,
        "handshake": 100.002,
        "connected": 100.003,
        "play_sent": 100.004,
        "play_start": 100.005,
        "keyframe": 100.010,
        "ended": 120.0,
        "closed_by_server": False,
        "last_status": "NetStream.Play.Start",
        "error": "",
        "bytes": 1000,
    }
    base.update(kw)
    return PlayerRecord(**base)  # type: ignore[arg-type]


def test_summarize_counts_and_times() -> None:
    records = [
        _record(0),
        _record(1, keyframe=100.030),
        # refused twice, then played
        _record(
            2,
            0,
            play_start=0.0,
            keyframe=0.0,
            state=int(State.FAILED),
            ended=100.014,
            closed_by_server=True,
            last_status="NetStream.Play.StreamNotFound",
            error="NetStream.Play.StreamNotFound: no such stream",
            bytes=10,
        ),
        _record(
            2,
            1,
            started=101.0,
            tcp=101.001,
            handshake=101.002,
            connected=101.003,
            play_sent=101.004,
            play_start=0.0,
            keyframe=0.0,
            state=int(State.FAILED),
            ended=101.024,
            closed_by_server=True,
            last_status="NetStream.Play.StreamNotFound",
            error="NetStream.Play.StreamNotFound: no such stream",
            bytes=10,
        ),
    ]
    rates = {0: 2_500_000.0, 1: 2_400_000.0, 2: None}
    s = summarize(records, rates, source_bps=2_500_000.0, window=20.0, window_bytes=12_250_000)
    assert s["players"] == 3
    assert s["attempts"] == 4
    assert s["reached"] == {"tcp": 3, "handshake": 3, "play_start": 2, "keyframe": 2}
    assert s["final_state"] == {"left": 2, "failed": 1}
    assert s["closed_by_server"] == 2
    assert s["last_status"]["NetStream.Play.StreamNotFound"] == 2
    assert s["errors"] == {"NetStream.Play.StreamNotFound": 2}
    # keyframe after play: 6 ms and 26 ms
    kf = s["timings_ms"]["keyframe_after_play_ms"]
    assert kf["count"] == 2
    assert kf["p50"] == pytest.approx(16.0)
    assert kf["max"] == pytest.approx(26.0)
    drop = s["timings_ms"]["drop_ms"]
    assert drop["count"] == 2
    assert drop["min"] == pytest.approx(10.0)
    assert drop["max"] == pytest.approx(20.0)
    bitrate = s["bitrate"]
    assert bitrate["players_measured"] == 2
    assert bitrate["players_not_measured"] == 1
    assert bitrate["aggregate_mbps"] == pytest.approx(4.9)
    # 2.4 of 2.5 Mbit/s is below 99 %, and the unmeasured player counts as failing too.
    assert bitrate["below_full_rate"] == 2
    assert bitrate["all_full_rate"] is False
    assert bitrate["ratio"]["min"] == pytest.approx(0.96)
    text = format_summary(s)
    assert "first keyframe after play" in text
    assert "2 player(s) below 99%" in text


def test_window_rates_between_arrivals() -> None:
    counting, left = int(State.COUNTING), int(State.LEFT)
    before = Snapshot(
        10.0,
        {
            0: (0, counting, 1000, 9.9),
            1: (0, counting, 500, 9.5),
            2: (0, counting, 0, 9.0),
            3: (0, int(State.STARTED), 10, 9.0),
        },
    )
    after = Snapshot(
        20.0,
        {
            0: (0, counting, 1000 + 312_500, 19.9),
            1: (1, counting, 900, 19.0),
            2: (0, left, 10, 12.0),
            3: (0, counting, 5000, 19.0),
            4: (0, counting, 100, 19.0),
        },
    )
    rates = window_rates(before, after)
    assert rates[0] == pytest.approx(250_000.0)  # 312.5 kB in 10 s
    assert rates[1] is None  # another attempt
    assert rates[2] is None  # left during the window
    assert rates[3] is None  # not counting at the start
    assert rates[4] is None  # not there at the start
    assert delivered_bytes(before, after) == 312_500 + 10 + 4990


def test_json_output(tmp_path: Path) -> None:
    records = [
        _record(0),
        _record(1, 0, state=int(State.FAILED), closed_by_server=True),
        _record(1, 1),
    ]
    rates = {0: 600_000.0, 1: None}
    summary = summarize(records, rates, source_bps=600_000.0, window=5.0, window_bytes=375_000)
    path = tmp_path / "out.json"
    write_json(path, summary, records, rates, {"players": 2, "url": "rtmp://x/live/y"})
    doc = json.loads(path.read_text())
    assert doc["config"] == {"players": 2, "url": "rtmp://x/live/y"}
    assert doc["summary"]["players"] == 2
    assert doc["summary"]["bitrate"]["below_full_rate"] == 1
    rows = doc["players"]
    assert [(r["index"], r["attempt"]) for r in rows] == [(0, 0), (1, 0), (1, 1)]
    assert rows[0]["keyframe_ms"] == pytest.approx(10.0)
    assert rows[0]["keyframe_after_play_ms"] == pytest.approx(6.0)
    assert rows[0]["window_kbps"] == pytest.approx(600.0)
    assert "window_kbps" not in rows[1]  # only the last attempt was measured
    assert rows[2]["window_kbps"] is None
    assert rows[1]["state"] == "failed"
