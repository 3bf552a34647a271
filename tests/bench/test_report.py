"""The benchmark report's HTTP-FLV group: ratios and targets from the rows."""

from __future__ import annotations

from typing import Any

from bench import report


def _row(kind: str, protocol: str, players: int, cpu: float, ratio: float = 1.01) -> dict[str, Any]:
    edge = "nginx-rtmp" if kind == "nginx-rtmp" else f"streamgate merge_ms=50 {protocol}"
    return {
        "edge": edge,
        "kind": kind,
        "protocol": protocol,
        "players": players,
        "cores": 0.1,
        "system_share": 0.8,
        "delivered_gbit": 100.0,
        "cpu_s_per_gbit": cpu,
        "rss_per_player_kb": 7.0,
        "bitrate": {
            "all_full_rate": ratio >= 0.99,
            "min_ratio": ratio,
            "below_99": 0 if ratio >= 0.99 else players,
            "not_measured": 0,
        },
        "ttfk_ms": {"p50": 1.0, "p99": 9.0},
        "client_cores": 0.1,
    }


def test_flv_targets_compare_with_the_same_count_in_the_same_run() -> None:
    results: dict[str, Any] = {
        "meta": {
            "command": "python -m bench --only flv",
            "quick": False,
            "machine": "2 CPUs",
            "started": "now",
            "duration_s": 200.0,
            "loadavg_before": "0 0 0",
            "loadavg_after": "0 0 0",
        },
        "flv": [
            _row("streamgate", "rtmp", 500, 0.05),
            _row("streamgate", "rtmp", 2000, 0.05),
            _row("streamgate", "flv", 500, 0.05),
            _row("streamgate", "flv", 2000, 0.06),  # 1.2x streamgate's RTMP
            _row("nginx-rtmp", "rtmp", 500, 0.1),
            _row("nginx-rtmp", "rtmp", 2000, 0.1),
            _row("streamgate", "ws-flv", 500, 0.05, ratio=0.9),
        ],
    }
    targets = {t["target"]: t for t in report.evaluate(results)}
    own = targets["HTTP-FLV fan-out CPU/Gbit vs streamgate's RTMP, merge_ms=50"]
    assert own["measured"] == "500: 1.00, 2000: 1.20" and own["met"] is False
    nginx = targets["HTTP-FLV fan-out CPU/Gbit vs nginx-rtmp, merge_ms=50"]
    assert nginx["measured"] == "500: 0.50, 2000: 0.60" and nginx["met"] is True
    rates = targets["HTTP-FLV / WS-FLV: every viewer >= 99% of the source bitrate"]
    assert rates["met"] is False
    assert "ws-flv @ 500" in rates["measured"]
    results["targets"] = list(targets.values())
    text = report.markdown(results)
    assert "## HTTP-FLV fan-out" in text
    assert "| streamgate merge_ms=50 flv | 2,000 |" in text


def test_rtmps_costs_compare_with_the_same_edges_rtmp_at_the_same_count() -> None:
    results: dict[str, Any] = {
        "meta": {
            "command": "python -m bench --only rtmps",
            "quick": False,
            "machine": "2 CPUs",
            "started": "now",
            "duration_s": 150.0,
            "loadavg_before": "0 0 0",
            "loadavg_after": "0 0 0",
        },
        "rtmps": {
            "rows": [
                _row("streamgate", "rtmp", 500, 0.06),
                _row("streamgate", "rtmp", 1000, 0.05),
                _row("streamgate", "rtmps", 500, 0.15),
                _row("streamgate", "rtmps", 1000, 0.13, ratio=0.98),
            ],
            "ktls": {"python": "3.11.7", "ssl_OP_ENABLE_KTLS": False, "tls_module_loaded": None},
        },
    }
    costs = report.rtmps_costs(results)
    assert [(c["players"], c["ratio"], c["encryption_per_gbit"]) for c in costs] == [
        (500, 2.5, 0.09),
        (1000, 2.6, 0.08),
    ]
    targets = {t["target"]: t for t in report.evaluate(results)}
    ratio = targets["RTMPS fan-out CPU/Gbit vs the same edge's RTMP (informative)"]
    assert ratio["measured"] == "500: 2.50, 1000: 2.60" and ratio["met"] is None
    rates = targets["RTMPS: every player >= 99% of the source bitrate"]
    assert rates["met"] is False and rates["measured"] == "not at: 1000"
    text = report.markdown(results)
    assert "## RTMPS fan-out" in text and "`ssl.OP_ENABLE_KTLS` absent" in text
    assert "| 500 | 0.06 | 0.15 | 2.50 | 0.09 |" in text
