"""``python -m bench``: the benchmarks (``make bench`` / ``make bench-quick``).

Outputs go to ``bench-results/`` (git-ignored): ``<stem>.md`` (the tables
and the targets), ``<stem>.json`` (everything measured) and ``<stem>.png``
(edge CPU against players). Generated media is cached in
``bench-results/.cache/``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, argv in (
        ("ffmpeg", ["ffmpeg", "-hide_banner", "-version"]),
        ("nginx", ["/usr/sbin/nginx", "-v"]),
        ("streamgate_commit", ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    ):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            out[name] = (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            out[name] = "?"
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "streamgate"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if dirty.stdout.strip():
        out["streamgate_commit"] += " (+ uncommitted changes under streamgate/)"
    return out


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: every process gets reaped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fan-out at 100 and 500 players only, 10 s windows (< 2 min)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole run (default 110 quick, 570 full)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[
            "fanout", "capacity", "cold", "flood", "churn", "workers", "fleet", "flv", "rtmps"
        ],
        help="run only these scenarios",
    )
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        help="fan-out player counts (flv: default 500 2000; rtmps: 100 500 1000)",
    )
    parser.add_argument("--window", type=float, help="fan-out measured seconds per count")
    parser.add_argument(
        "--rcvlowat",
        type=int,
        default=None,
        help="players' SO_RCVLOWAT in counting mode (0: wake per segment)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the streamgate edges at the largest fan-out (needs py-spy)",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminate)
    from bench import report, scenarios
    from streamgate.loadtest.worker import raise_fd_limit

    raise_fd_limit()  # inherited by every server and worker process
    quick = args.quick
    budget = args.budget or (110.0 if quick else 575.0)
    started = time.monotonic()
    stem = "bench-quick" if quick else "bench"
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=args.out))
    bench = scenarios.Bench(
        workdir=workdir,
        cache=args.out / ".cache",
        quick=quick,
        deadline=started + budget,
        fanout_counts=args.counts or ((100, 500) if quick else (100, 500, 1000, 2000)),
        fanout_window=args.window or (10.0 if quick else 20.0),
        rcvlowat=args.rcvlowat,
        profile=args.profile,
        log=lambda line: print(line, flush=True),
    )
    command = "make bench-quick" if quick else "make bench"
    if argv is not None or (len(sys.argv) > 1 and sys.argv[1:] != ["--quick"]):
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "quick": quick,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
            "loadavg_before": _loadavg(),
            "versions": _versions(),
            "workdir": str(workdir),
        },
    }
    wanted = set(
        args.only or (["fanout"] if quick else ["fanout", "capacity", "cold", "flood", "churn"])
    )
    sg = [scenarios.Variant("streamgate", m) for m in bench.merges]
    sg50 = [scenarios.Variant("streamgate", 50)]
    sg350 = [scenarios.Variant("streamgate", 350)]
    sg50w2 = [scenarios.Variant("streamgate", 50, workers=2)]
    nginx = [scenarios.NGINX]
    flv_counts = sorted(args.counts or (500, 2000))
    rtmps_counts = sorted(args.counts or (100, 500, 1000))
    # (scenario, runner, seconds it needs at least); run in this order.
    plan: list[tuple[str, Callable[[], Any], int]] = [
        ("fanout", lambda: scenarios.fanout(bench, [*sg, *nginx]), 0),
        ("cold_start", lambda: scenarios.cold_start(bench, [*sg50, *nginx]), 35),
        ("flood", lambda: scenarios.flood(bench, [*sg50, *nginx]), 80),
        ("churn", lambda: scenarios.churn(bench, [*sg50, *nginx]), 90),
        ("capacity", lambda: scenarios.capacity(bench, [*sg350, *nginx], CAPACITY_STEPS), 60),
        # A named group (--only workers): 1 and 2 worker processes, same stream and counts.
        ("workers", lambda: scenarios.fanout(bench, [*sg50, *sg50w2]), 0),
        # A named group (--only fleet): 4 edges, with and without one Redis.
        ("fleet", lambda: scenarios.fleet(bench), 0),
        # A named group (--only flv): HTTP-FLV viewers against RTMP players (streamgate's
        # and nginx-rtmp's) at the same counts, then WebSocket-FLV at the smallest count.
        ("flv", lambda: scenarios.flv_fanout(bench, flv_counts, flv_counts[:1]), 0),
        # A named group (--only rtmps): one edge config with its RTMPS listener on, plain
        # RTMP players then RTMPS players at the same counts; and kernel TLS, as found.
        ("rtmps", lambda: scenarios.rtmps_fanout(bench, rtmps_counts), 0),
    ]
    failed = False
    for name, run, needs in plan:
        if name.split("_")[0] not in wanted:
            continue
        if bench.left() < needs:
            print(f"== {name}: skipped, {bench.left():.0f} s left of the budget", flush=True)
            results[name + "_skipped"] = "time budget"
            continue
        print(f"== {name} ({bench.left():.0f} s left)", flush=True)
        t0 = time.monotonic()
        try:
            results[name] = run()
        except Exception as exc:  # one broken scenario must not lose the others' figures
            failed = True
            traceback.print_exc()
            results[name + "_error"] = f"{type(exc).__name__}: {exc}"
        print(f"   {name} took {time.monotonic() - t0:.0f} s", flush=True)
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    results["meta"]["loadavg_after"] = _loadavg()
    results["meta"]["sources"] = {
        k: str(v)
        for k, v in sorted((p.name, p.stat().st_size) for p in (args.out / ".cache").glob("*.flv"))
    }
    paths = report.write_outputs(results, args.out, stem)
    print(report.markdown(results))
    print("\n".join(f"wrote {p}" for p in paths.values()))
    print(f"total {results['meta']['duration_s']:.0f} s")
    if failed:
        print(f"logs of the servers kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


# Capacity steps (players), doubling; two bisections follow the first failure, so the
# result is within an eighth of a step (250 for nginx-rtmp, 500 above 16,000).
CAPACITY_STEPS = (4000, 8000, 16000, 20000)

if __name__ == "__main__":
    sys.exit(main())
