"""Benchmark outputs: the benchmark targets checked, a Markdown table, JSON and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["evaluate", "markdown", "write_chart", "write_outputs"]


def _received(bitrate: dict[str, Any]) -> str:
    """The "min received / source" cell: the lowest ratio, and who fell short."""
    if bitrate["all_full_rate"]:
        return _fmt(bitrate["min_ratio"], 3)
    short = f" ({bitrate['below_99']} below, {bitrate['not_measured']} not playing)"
    return _fmt(bitrate["min_ratio"], 3) + short


def _kernel_share(row: dict[str, Any]) -> str:
    """The kernel's share of the edge's CPU as " (NN%)", when it was measured."""
    share = row.get("system_share")
    return f" ({share:.0%})" if share is not None else ""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _nginx_fanout(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["players"]: r for r in results.get("fanout", []) if r["kind"] == "nginx-rtmp"}


def _flv_refs(
    results: dict[str, Any],
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """The flv group's references per player count: streamgate's RTMP, nginx-rtmp's."""
    rows = results.get("flv", [])
    own = {
        r["players"]: r
        for r in rows
        if r["kind"] == "streamgate" and r.get("protocol", "rtmp") == "rtmp"
    }
    return own, {r["players"]: r for r in rows if r["kind"] == "nginx-rtmp"}


def _ratio(row: dict[str, Any], ref: dict[str, Any] | None) -> float | None:
    if ref and row.get("cpu_s_per_gbit") and ref.get("cpu_s_per_gbit"):
        return float(row["cpu_s_per_gbit"] / ref["cpu_s_per_gbit"])
    return None


def _flv_targets(results: dict[str, Any], add: Any) -> None:
    rows = results.get("flv", [])
    own, nginx = _flv_refs(results)
    viewers = [r for r in rows if r.get("protocol") == "flv"]
    for name, refs, limit in (("streamgate's RTMP", own, 1.1), ("nginx-rtmp", nginx, 1.0)):
        ratios = [
            (r["players"], x)
            for r in viewers
            if (x := _ratio(r, refs.get(r["players"]))) is not None
        ]
        if ratios:
            add(
                f"HTTP-FLV fan-out CPU/Gbit vs {name}, merge_ms=50",
                f"<= {limit}",
                ", ".join(f"{n}: {x:.2f}" for n, x in ratios),
                max(x for _, x in ratios) <= limit,
            )
    flv_rows = [r for r in rows if r.get("protocol") in ("flv", "ws-flv")]
    if flv_rows:
        bad = [
            f"{r['edge']} @ {r['players']}" for r in flv_rows if not r["bitrate"]["all_full_rate"]
        ]
        lowest = min((r["bitrate"]["min_ratio"] or 0.0) for r in flv_rows)
        add(
            "HTTP-FLV / WS-FLV: every viewer >= 99% of the source bitrate",
            "all",
            (f"all (lowest {lowest:.3f})" if not bad else "not at: " + "; ".join(bad)),
            not bad,
        )
    if viewers:
        top = max(viewers, key=lambda r: r["players"])
        add(
            f"RSS per viewer (HTTP-FLV, {top['players']:,} viewers; the RTMP players' bound)",
            "<= 12 KB",
            f"{top['rss_per_player_kb']:.1f} KB",
            top["rss_per_player_kb"] <= 12.0,
        )


def _rtmps_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    group = results.get("rtmps") or {}
    return list(group.get("rows", [])) if isinstance(group, dict) else []


def rtmps_costs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per player count of the rtmps group: CPU s / Gbit of the plain RTMP players and
    of the RTMPS players (one edge config), their ratio and difference (what the
    encryption costs per delivered Gbit)."""
    rows = _rtmps_rows(results)
    plain = {r["players"]: r for r in rows if r.get("protocol") == "rtmp"}
    out = []
    for r in rows:
        ref = plain.get(r["players"])
        if r.get("protocol") != "rtmps" or ref is None:
            continue
        tls, base = r.get("cpu_s_per_gbit"), ref.get("cpu_s_per_gbit")
        out.append(
            {
                "players": r["players"],
                "rtmp": base,
                "rtmps": tls,
                "ratio": round(tls / base, 3) if tls and base else None,
                "encryption_per_gbit": round(tls - base, 4) if tls and base else None,
            }
        )
    return out


def _pair(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _rtmps_targets(results: dict[str, Any], add: Any) -> None:
    costs = rtmps_costs(results)
    if costs:
        add(
            "RTMPS fan-out CPU/Gbit vs the same edge's RTMP (informative)",
            "-",
            ", ".join(f"{c['players']}: {_pair(c['ratio'])}" for c in costs),
            None,
        )
    tls = [r for r in _rtmps_rows(results) if r.get("protocol") == "rtmps"]
    if tls:
        bad = [str(r["players"]) for r in tls if not r["bitrate"]["all_full_rate"]]
        lowest = min((r["bitrate"]["min_ratio"] or 0.0) for r in tls)
        add(
            "RTMPS: every player >= 99% of the source bitrate",
            "all",
            f"all (lowest {lowest:.3f})" if not bad else "not at: " + ", ".join(bad),
            not bad,
        )


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each benchmark target: what was measured and whether it is met."""
    targets: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: str, met: bool | None, note: str = "") -> None:
        targets.append(
            {"target": name, "goal": goal, "measured": measured, "met": met, "note": note}
        )

    nginx = _nginx_fanout(results)
    for merge, limit in ((50, 1.0), (350, 0.35)):
        ratios = []
        for row in results.get("fanout", []):
            if row["kind"] == "streamgate" and row["merge_ms"] == merge:
                ref = nginx.get(row["players"])
                if ref and ref.get("cpu_s_per_gbit") and row.get("cpu_s_per_gbit"):
                    ratios.append((row["players"], row["cpu_s_per_gbit"] / ref["cpu_s_per_gbit"]))
        if ratios:
            worst = max(r for _, r in ratios)
            add(
                f"fan-out CPU/Gbit vs nginx-rtmp, merge_ms={merge}",
                f"<= {limit}",
                ", ".join(f"{n}: {r:.2f}" for n, r in ratios),
                worst <= limit,
            )
    for row in results.get("fanout", []):
        if row["kind"] == "streamgate" and row["players"] == max(
            r["players"] for r in results["fanout"] if r["kind"] == "streamgate"
        ):
            add(
                f"RSS per player ({row['edge']}, {row['players']} players)",
                "<= 12 KB",
                f"{row['rss_per_player_kb']:.1f} KB",
                row["rss_per_player_kb"] <= 12.0,
            )
    full = [r for r in results.get("fanout", []) if r["kind"] == "streamgate"]
    if full:
        bad = [f"{r['edge']} @ {r['players']}" for r in full if not r["bitrate"]["all_full_rate"]]
        add(
            "fan-out: every player >= 99% of the source bitrate (streamgate)",
            "all",
            "all" if not bad else "not at: " + "; ".join(bad),
            not bad,
        )
    one = {r["players"]: r for r in results.get("workers", []) if r.get("workers", 1) == 1}
    ratios = []
    for row in results.get("workers", []):
        ref = one.get(row["players"])
        if row.get("workers", 1) > 1 and ref and ref.get("cpu_s_per_gbit"):
            ratios.append((row["players"], row["cpu_s_per_gbit"] / ref["cpu_s_per_gbit"]))
    if ratios:
        add(
            "workers: CPU/Gbit with 2 workers vs 1 (all processes summed)",
            "<= 1.15",
            ", ".join(f"{n}: {r:.2f}" for n, r in ratios),
            max(r for _, r in ratios) <= 1.15,
        )
        links = sorted({r.get("origin_links") for r in results["workers"]} - {None})
        add("workers: origin links for one stream", "1", ", ".join(map(str, links)), links == [1])
    _flv_targets(results, add)
    _rtmps_targets(results, add)
    for row in results.get("fleet", []):
        if row["fleet"] == "with [cluster]":
            add(
                f"fleet of {row['edges']}: origin connects within one edge's bound",
                f"<= {row['one_edge_bound']}",
                f"{row['origin_connects']} (accept queue high {row['accept_queue_high']}"
                f"/{row['accept_queue_limit']})",
                row["within_one_edge_bound"] and not row["accept_queue_full_samples"],
            )
    caps = {c["kind"] + str(c.get("merge_ms")): c for c in results.get("capacity", [])}
    sg, ng = caps.get("streamgate350"), caps.get("nginx-rtmpNone")
    if sg:
        add(
            "capacity, one core, 600 kbps, merge_ms=350",
            ">= 16,000 players",
            f"{sg['max_players']:,} ({sg['stopped_because']})",
            sg["max_players"] >= 16000,
        )
        if ng and ng["max_players"]:
            ratio = sg["max_players"] / ng["max_players"]
            add(
                "capacity vs nginx-rtmp",
                ">= 4.5x",
                f"{ratio:.1f}x ({ng['max_players']:,} for nginx-rtmp)",
                ratio >= 4.5,
            )
    for row in results.get("cold_start", []):
        if row["kind"] == "streamgate":
            p50 = row["warm_ttfk_ms"]["p50"]
            add(
                "warm start: first keyframe p50 after play",
                "<= 30 ms",
                f"{_fmt(p50)} ms",
                p50 is not None and p50 <= 30.0,
            )
    for row in results.get("flood", []):
        if row["kind"] != "streamgate":
            continue
        bound = row.get("bound", {})
        add(
            "flood: upstream connects within missing_ttl / rate-cap bounds",
            f"<= {bound.get('bound')}",
            str(row["upstream_connects"]),
            bound.get("within"),
        )
        full_q = row["accept_queue_full_samples"] > 0 or row["listen_overflows"] > 0
        add(
            "flood: origin accept queue never full",
            "never full",
            f"high-water {row['accept_queue_high']}/{row['accept_queue_limit']}, "
            f"{row['listen_overflows']} overflows",
            not full_q,
        )
        legit = row["legit"]
        ok = all(v.get("started") for v in legit.values()) and bool(legit)
        add(
            "flood: a legitimate player still starts",
            "starts",
            ", ".join(
                f"{k}: {v['ttfk_ms']} ms" if v["started"] else f"{k}: {v['error']}"
                for k, v in legit.items()
            ),
            ok,
        )
    for row in results.get("churn", []):
        if row["kind"] != "streamgate":
            continue
        growth = row.get("object_growth")
        ok = growth is not None and growth < 1000 and row.get("sessions_left", 0) == 0
        add(
            "churn: no growth after the run",
            "objects and sessions back to baseline",
            f"objects {growth:+d}, sessions left {row.get('sessions_left')}, "
            f"RSS {row['rss_growth_kb']:+d} kB",
            ok,
        )
    return targets


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"# streamgate benchmarks ({'quick' if meta['quick'] else 'full'})",
        "",
        f"`{meta['command']}` on {meta['machine']}; {meta['started']}, "
        f"{meta['duration_s']:.0f} s; load average before/after {meta['loadavg_before']} / "
        f"{meta['loadavg_after']}. Edges pull from one streamgate origin; players are "
        f"`streamgate loadtest` workers on the same machine.",
        "",
    ]
    if results.get("fanout"):
        nginx = _nginx_fanout(results)
        out += [
            "## Fan-out: one 2.5 Mbit/s stream",
            "",
            "| edge | players | edge CPU cores (kernel share) | delivered Gbit | CPU s / Gbit "
            "| vs nginx-rtmp | RSS / player | min received / source | first keyframe p50 / p99 "
            "| client cores |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["fanout"]:
            ref = nginx.get(r["players"])
            ratio = (
                r["cpu_s_per_gbit"] / ref["cpu_s_per_gbit"]
                if ref and r["cpu_s_per_gbit"] and ref.get("cpu_s_per_gbit")
                else None
            )
            rate, kernel = _received(r["bitrate"]), _kernel_share(r)
            out.append(
                f"| {r['edge']} | {r['players']:,} | {_fmt(r['cores'])}{kernel} | "
                f"{_fmt(r['delivered_gbit'])} | {_fmt(r['cpu_s_per_gbit'])} | "
                f"{_fmt(ratio, 2) if r['kind'] == 'streamgate' else '1'} | "
                f"{_fmt(r['rss_per_player_kb'])} KB | {rate} | "
                f"{_fmt(r['ttfk_ms']['p50'])} / {_fmt(r['ttfk_ms']['p99'])} ms | "
                f"{_fmt(r.get('client_cores'))} |"
            )
        out.append("")
        out.append(
            "CPU is user + system time of the edge process over the window; delivered Gbit is "
            "what every player received; first keyframe is counted from the play command, "
            "during the ramp."
        )
        out.append("")
        for r in results["fanout"]:
            prof = r.get("profile")
            if prof and prof.get("self_pct"):
                out.append(
                    f"py-spy, {r['edge']} at {r['players']:,} players "
                    f"({prof['samples']} samples, native={prof.get('native')}): "
                    + ", ".join(f"{n} {v}%" for n, v in prof["self_pct"][:8])
                )
                out.append("")
    if results.get("workers"):
        out += [
            "## Workers: one 2.5 Mbit/s stream, 1 and 2 worker processes",
            "",
            "| edge | players | CPU cores (all processes) | delivered Gbit | CPU s / Gbit "
            "| origin links | min received / source |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["workers"]:
            out.append(
                f"| {r['edge']} | {r['players']:,} | {_fmt(r['cores'])} | "
                f"{_fmt(r['delivered_gbit'])} | {_fmt(r['cpu_s_per_gbit'])} | "
                f"{r.get('origin_links')} | {_fmt(r['bitrate']['min_ratio'], 3)} |"
            )
        out.append("")
    if results.get("flv"):
        out += _flv_markdown(results)
    if _rtmps_rows(results):
        out += _rtmps_markdown(results)
    if results.get("fleet"):
        out += [
            "## Fleet: missing names flooded at every edge",
            "",
            "| fleet | edges | names | plays | origin connects | one edge's bound "
            "| accept queue high | overflows |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["fleet"]:
            out.append(
                f"| {r['fleet']} | {r['edges']} | {r['names']:,} | {r['attempts']:,} | "
                f"{r['origin_connects']:,} | {r['one_edge_bound']:,} | "
                f"{r['accept_queue_high']}/{r['accept_queue_limit']} | {r['listen_overflows']} |"
            )
        out.append("")
    if results.get("capacity"):
        out += [
            "## Capacity: 600 kbit/s, edge pinned to one core",
            "",
            "| edge | largest count with every player >= 99% | stopped because | steps |",
            "|---|---:|---|---|",
        ]
        for c in results["capacity"]:
            steps = ", ".join(
                f"{s['players']:,}: {'ok' if s['all_full_rate'] else 'FAIL'} "
                f"({s['cores']} / client {s['client_cores']} cores)"
                for s in c["steps"]
            )
            out.append(f"| {c['edge']} | {c['max_players']:,} | {c['stopped_because']} | {steps} |")
        out.append("")
    if results.get("cold_start"):
        out += [
            "## Start time: first keyframe after play, 50 live streams",
            "",
            "| edge | cold p50 | cold p99 | warm p50 | warm p99 | failed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in results["cold_start"]:
            cold, warm = c["cold_ttfk_ms"], c["warm_ttfk_ms"]
            out.append(
                f"| {c['edge']} | {_fmt(cold['p50'])} ms | {_fmt(cold['p99'])} ms | "
                f"{_fmt(warm['p50'])} ms | {_fmt(warm['p99'])} ms | "
                f"{c['cold_failed'] + c['warm_failed']} |"
            )
        out.append("")
    if results.get("flood"):
        out += [
            "## Missing-stream flood: 1000 players, distinct missing names, 30 s",
            "",
            "streamgate's edge polls the origin's stream directory (`[edge] directory`, "
            "not authoritative: misses still cost connects, under the rate cap).",
            "",
            "| edge | plays | upstream connects | bound | drop p50 / p99 | waited out (10 s) "
            "| origin accept queue high / limit | edge cores | legitimate players |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for f in results["flood"]:
            legit = "; ".join(
                f"{k} {v['ttfk_ms']} ms" if v["started"] else f"{k} FAILED"
                for k, v in f["legit"].items()
            )
            out.append(
                f"| {f['edge']} | {f['attempts']:,} | {f['upstream_connects']:,} | "
                f"{_fmt(f.get('bound', {}).get('bound'))} | {_fmt(f['drop_ms']['p50'])} / "
                f"{_fmt(f['drop_ms']['p99'])} ms | {f['waited_out']} | "
                f"{f['accept_queue_high']} / {f['accept_queue_limit']} | "
                f"{f['edge_cores']} | {legit} |"
            )
        out.append("")
    if results.get("churn"):
        out += [
            "## Churn: 200 players/s joining and leaving one stream",
            "",
            "| edge | plays | started | edge cores | RSS growth after round 1 "
            "| object growth | sessions left |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in results["churn"]:
            out.append(
                f"| {c['edge']} | {c['plays']:,} | {c['started']:,} | {c['cores']} | "
                f"{c['rss_growth_kb']:+,} kB | {_fmt(c.get('object_growth'))} | "
                f"{_fmt(c.get('sessions_left'))} |"
            )
        out.append("")
    targets = results.get("targets", [])
    if targets:
        out += ["## Targets", "", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in targets:
            met = {True: "yes", False: "**no**", None: "?"}[t["met"]]
            out.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} |")
        out.append("")
    return "\n".join(out)


def _flv_markdown(results: dict[str, Any]) -> list[str]:
    own, nginx = _flv_refs(results)
    out = [
        "## HTTP-FLV fan-out: one 2.5 Mbit/s stream through a streamgate edge",
        "",
        "Every streamgate edge has the same config ([flv] listener on, merge_ms=50); only the "
        "players' protocol differs. Ratios are CPU s / Gbit against the same count in this run.",
        "",
        "| edge | players | edge CPU cores (kernel share) | delivered Gbit | CPU s / Gbit "
        "| vs streamgate RTMP | vs nginx-rtmp | RSS / viewer | min received / source "
        "| first keyframe p50 / p99 | client cores | groups / skipping / dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["flv"]:
        fan = list(((r.get("edge_after") or {}).get("fanout") or {}).values())
        state = (
            f"{fan[0]['groups']} / {fan[0]['skipping']} / {fan[0]['dropped_players']}"
            if fan
            else "-"
        )
        rate, kernel = _received(r["bitrate"]), _kernel_share(r)
        vs_own = _ratio(r, own.get(r["players"]))
        vs_nginx = _ratio(r, nginx.get(r["players"]))
        out.append(
            f"| {r['edge']} | {r['players']:,} | {_fmt(r['cores'])}{kernel} | "
            f"{_fmt(r['delivered_gbit'])} | {_fmt(r['cpu_s_per_gbit'])} | "
            f"{_fmt(vs_own, 3)} | {_fmt(vs_nginx, 3)} | "
            f"{_fmt(r['rss_per_player_kb'])} KB | {rate} | "
            f"{_fmt(r['ttfk_ms']['p50'])} / {_fmt(r['ttfk_ms']['p99'])} ms | "
            f"{_fmt(r.get('client_cores'))} | {state} |"
        )
    out += [
        "",
        "Groups / skipping / dropped: the edge's stream after the window (encodings it "
        "writes, FLV timelines included; players waiting for a keyframe after congestion; "
        "players dropped as too slow).",
        "",
    ]
    for r in results["flv"]:
        prof = r.get("profile")
        if prof and prof.get("self_pct"):
            out.append(
                f"py-spy, {r['edge']} at {r['players']:,} players "
                f"({prof['samples']} samples, native={prof.get('native')}): "
                + ", ".join(f"{n} {v}%" for n, v in prof["self_pct"][:8])
            )
            out.append("")
    return out


def _loaded(value: bool | None) -> str:
    return "no /proc/modules" if value is None else ("loaded" if value else "not loaded")


def _ktls_line(facts: dict[str, Any]) -> str:
    return (
        f"Kernel TLS here: Python {facts.get('python')} `ssl.OP_ENABLE_KTLS` "
        f"{'present' if facts.get('ssl_OP_ENABLE_KTLS') else 'absent'} ({facts.get('openssl')}); "
        f"kernel {facts.get('kernel')}: tcp_available_ulp {facts.get('tcp_available_ulp')}, "
        f"tls module: {_loaded(facts.get('tls_module_loaded'))}, "
        f"config: {facts.get('kernel_config_tls')}, "
        f"/proc/net/tls_stat {'present' if facts.get('proc_net_tls_stat') else 'absent'}."
    )


def _rtmps_markdown(results: dict[str, Any]) -> list[str]:
    out = [
        "## RTMPS fan-out: one 2.5 Mbit/s stream through a streamgate edge",
        "",
        "One edge config (merge_ms=50, RTMPS listener on); plain RTMP players, then RTMPS "
        "players (TLS, verified against the bench's CA), at the same counts in this run.",
        "",
        "| edge | players | edge CPU cores (kernel share) | delivered Gbit | CPU s / Gbit "
        "| marginal | RSS / player | min received / source | first keyframe p50 / p99 "
        "| client cores | dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in _rtmps_rows(results):
        fan = list(((r.get("edge_after") or {}).get("fanout") or {}).values())
        rate, kernel = _received(r["bitrate"]), _kernel_share(r)
        out.append(
            f"| {r['edge']} | {r['players']:,} | {_fmt(r['cores'])}{kernel} | "
            f"{_fmt(r['delivered_gbit'])} | {_fmt(r['cpu_s_per_gbit'])} | "
            f"{_fmt(r.get('cpu_s_per_gbit_marginal'))} | "
            f"{_fmt(r['rss_per_player_kb'])} KB | {rate} | "
            f"{_fmt(r['ttfk_ms']['p50'])} / {_fmt(r['ttfk_ms']['p99'])} ms | "
            f"{_fmt(r.get('client_cores'))} | {fan[0]['dropped_players'] if fan else '-'} |"
        )
    costs = rtmps_costs(results)
    if costs:
        out += [
            "",
            "| players | RTMP CPU s / Gbit | RTMPS CPU s / Gbit | ratio "
            "| encryption, CPU s / Gbit |",
            "|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {c['players']:,} | {_fmt(c['rtmp'])} | {_fmt(c['rtmps'])} | "
            f"{_pair(c['ratio'])} | {_fmt(c['encryption_per_gbit'])} |"
            for c in costs
        ]
    facts = (results.get("rtmps") or {}).get("ktls")
    if facts:
        out += ["", _ktls_line(facts)]
    out.append("")
    for r in _rtmps_rows(results):
        prof = r.get("profile")
        if prof and prof.get("self_pct"):
            out.append(
                f"py-spy, {r['edge']} at {r['players']:,} players "
                f"({prof['samples']} samples, native={prof.get('native')}): by file "
                + ", ".join(f"{n} {v}%" for n, v in prof.get("self_files_pct", [])[:6])
                + "; by line "
                + ", ".join(f"{n} {v}%" for n, v in prof.get("self_lines_pct", [])[:8])
            )
            out.append("")
    return out


def write_chart(results: dict[str, Any], path: Path) -> bool:
    """Edge CPU against players (fan-out and capacity); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [p for p in ("fanout", "capacity") if results.get(p)]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    palette = {
        "streamgate merge_ms=50": "tab:blue",
        "streamgate merge_ms=350": "tab:orange",
        "nginx-rtmp": "tab:green",
    }
    if results.get("fanout"):
        ax = axes[0][0]
        by_edge: dict[str, list[tuple[int, float]]] = {}
        for r in results["fanout"]:
            by_edge.setdefault(r["edge"], []).append((r["players"], r["cores"]))
        for edge, points in by_edge.items():
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=edge, color=palette.get(edge))
        ax.set_title("Fan-out, 2.5 Mbit/s: edge CPU")
        ax.set_xlabel("players")
        ax.set_ylabel("edge CPU (cores, user+sys)")
        ax.grid(alpha=0.3)
        ax.legend()
    if results.get("capacity"):
        ax = axes[0][len(panels) - 1]
        for c in results["capacity"]:
            steps = sorted(c["steps"], key=lambda s: s["players"])
            if not steps:
                continue
            color = palette.get(c["edge"])
            ax.plot(
                [s["players"] for s in steps],
                [s["cores"] for s in steps],
                color=color,
                label=f"{c['edge']} (max {c['max_players']:,})",
            )
            for ok, marker in ((True, "o"), (False, "x")):
                sel = [s for s in steps if bool(s["all_full_rate"]) is ok]
                if sel:
                    ax.scatter(
                        [s["players"] for s in sel],
                        [s["cores"] for s in sel],
                        marker=marker,
                        color=color,
                        s=60 if not ok else 30,
                        zorder=3,
                    )
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title("Capacity, 600 kbit/s, edge on one core (x: a player fell behind)")
        ax.set_xlabel("players")
        ax.set_ylabel("edge CPU (cores)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(results: dict[str, Any], out: Path, stem: str) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = evaluate(results)
    paths = {
        "json": out / f"{stem}.json",
        "markdown": out / f"{stem}.md",
        "chart": out / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["markdown"].write_text(markdown(results) + "\n")
    if not write_chart(results, paths["chart"]):
        del paths["chart"]
    return {k: str(v) for k, v in paths.items()}
