"""The benchmark scenarios, each run against streamgate and nginx-rtmp edges.

Every scenario starts its own origin (streamgate, with its GOP cache) and
publisher, then, one after the other, each edge under test pulling from that
same origin, and the load generator against the edge. Readings of the edge
(``/proc`` CPU and RSS) are taken at the same moments as the players'
snapshots, so "CPU per delivered Gbit" divides two numbers from one window.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import platform
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.media import Source, ensure_source, publisher_argv
from bench.servers import (
    AcceptQueue,
    Procs,
    Reading,
    Server,
    listen_overflows,
    read,
    tcp_counters,
)
from streamgate.config import EdgeSettings, RtmpSettings
from streamgate.loadtest.engine import (
    LoadGenerator,
    PlayerRecord,
    Snapshot,
    delivered_bytes,
    window_rates,
)
from streamgate.loadtest.player import PlayerOptions, State
from streamgate.loadtest.stats import FULL_RATE, describe

__all__ = [
    "Bench",
    "Variant",
    "capacity",
    "churn",
    "cold_start",
    "fanout",
    "fleet",
    "flood",
    "flv_fanout",
    "ktls_facts",
    "rtmps_fanout",
]

SERVER_CPU = 0  # capacity: the edge alone on this core
CLIENT_CPU = 1  # ... and everything else on this one


@dataclass
class Bench:
    """Settings and shared state of one benchmark run."""

    workdir: Path
    cache: Path
    quick: bool = False
    deadline: float = math.inf  # monotonic: scenarios shorten or skip past it
    workers: int = 2
    rcvlowat: int | None = None
    fanout_counts: Sequence[int] = (100, 500, 1000, 2000)
    fanout_window: float = 20.0
    fanout_rate: float = 500.0
    merges: Sequence[int] = (50, 350)
    profile: bool = False
    log: Callable[[str], None] = print
    results: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def options(self, **kw: Any) -> PlayerOptions:
        if self.rcvlowat is not None:
            kw.setdefault("rcvlowat", self.rcvlowat)
        return PlayerOptions(**kw)

    def source(self, kbps: int) -> Source:
        size = "1280x720" if kbps >= 1500 else "640x360"
        return ensure_source(self.cache, kbps, size=size)


@dataclass(frozen=True)
class Variant:
    """An edge under test."""

    kind: str  # "streamgate" or "nginx-rtmp"
    merge_ms: int | None = None
    workers: int = 1  # streamgate's [rtmp] workers
    # The players': "rtmp", "rtmps", "flv" (HTTP-FLV) or "ws-flv" (streamgate only).
    protocol: str = "rtmp"

    @property
    def label(self) -> str:
        if self.kind == "streamgate":
            more = f" workers={self.workers}" if self.workers != 1 else ""
            more += f" {PROTOCOL_NAMES[self.protocol]}" if self.protocol != "rtmp" else ""
            return f"streamgate merge_ms={self.merge_ms}{more}"
        return "nginx-rtmp"

    @property
    def slug(self) -> str:
        if self.kind != "streamgate":
            return "nginx"
        slug = f"sg{self.merge_ms}" + (f"w{self.workers}" if self.workers != 1 else "")
        return slug + (f"-{self.protocol}" if self.protocol != "rtmp" else "")

    def url(self, edge: Server, name: str) -> str:
        """Where this variant's players play ``name`` on ``edge``."""
        if self.protocol == "rtmp":
            return edge.url(name)
        if self.protocol == "rtmps":
            return edge.rtmps_url(name)
        return edge.flv_url(name, scheme="ws" if self.protocol == "ws-flv" else "http")


PROTOCOL_NAMES = {"rtmp": "RTMP", "rtmps": "RTMPS", "flv": "HTTP-FLV", "ws-flv": "WS-FLV"}


@dataclass(frozen=True)
class TlsFiles:
    """An edge's RTMPS certificate and key, and the CA its players trust."""

    cert: Path
    key: Path
    ca: Path


def make_certificate(directory: Path) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1 (the tests' PKI, ``cryptography``)."""
    from tests.pki import Pki

    pki = Pki(directory, name="Bench Root CA")
    issued = pki.server("edge", ("127.0.0.1", "localhost"))
    return TlsFiles(issued.cert, issued.key, pki.ca)


NGINX = Variant("nginx-rtmp")


def _settings_keys(section: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """Only the settings this streamgate has (the bench outlives renames)."""
    return {k: v for k, v in values.items() if k in section.model_fields}


def start_edge(
    procs: Procs,
    variant: Variant,
    origin: Server,
    *,
    cpus: list[int] | None = None,
    edge: dict[str, Any] | None = None,
    flv: bool = False,
    tls: TlsFiles | None = None,
) -> Server:
    """``flv``: a streamgate edge with its [flv] listener too (always for FLV players);
    ``tls``: with its RTMPS listener too (needed by RTMPS players)."""
    if variant.kind == "nginx-rtmp":
        return procs.nginx(f"{variant.slug}-edge", origin_port=origin.port, cpus=cpus)
    return procs.streamgate(
        f"{variant.slug}-edge",
        mode="edge",
        origin_port=origin.port,
        merge_ms=variant.merge_ms or 0,
        edge=_settings_keys(EdgeSettings, edge or {}),
        rtmp=_settings_keys(
            RtmpSettings,
            {"drain_time": 0.5, **({"workers": variant.workers} if variant.workers != 1 else {})},
        ),
        cpus=cpus,
        flv=flv or variant.protocol in ("flv", "ws-flv"),
        tls=(tls.cert, tls.key) if tls is not None else None,
    )


def start_origin(
    procs: Procs, bench: Bench, *, cpus: list[int] | None = None, http: bool = False
) -> Server:
    return procs.streamgate(
        "origin",
        mode="origin",
        log_level="warning",
        rtmp=_settings_keys(RtmpSettings, {"drain_time": 0.5}),
        cpus=cpus,
        http=http,
    )


def directory_of(origin: Server) -> dict[str, Any]:
    """Edge settings that poll ``origin``'s stream directory (its HTTP API)."""
    assert origin.http_port is not None
    return {"directory": [f"http://127.0.0.1:{origin.http_port}/api/v1/directory"]}


def publish(
    procs: Procs, source: Source, origin: Server, names: list[str], cpus: list[int] | None = None
) -> None:
    """One ffmpeg for all names (tee muxer), then wait until the origin has them all."""
    argv = publisher_argv(source, [origin.url(n) for n in names])
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    proc = procs.spawn(argv, f"publisher-{names[0]}.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the publisher exited ({proc.returncode}); see its log")
        if origin.stats().get("streams", 0) >= len(names):
            return
        time.sleep(0.25)
    raise TimeoutError(f"{len(names)} stream(s) not published on the origin within 20 s")


def wait_counting(gen: LoadGenerator, count: int, timeout: float) -> Snapshot:
    deadline = time.monotonic() + timeout
    while True:
        snap = gen.snapshot()
        if snap.count(State.COUNTING) >= count or time.monotonic() > deadline:
            return snap
        time.sleep(0.1)


def sleep_until(when: float) -> None:
    while (left := when - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def client_cpu(gen: LoadGenerator) -> float:
    total = 0.0
    for proc in gen.procs:
        if proc.pid is not None:
            total += read(proc.pid).cpu
    return total


@dataclass
class Window:
    """Players and server between two moments."""

    s0: Snapshot
    s1: Snapshot
    r0: Reading
    r1: Reading
    c0: float
    c1: float

    @property
    def seconds(self) -> float:
        return self.r1.taken - self.r0.taken

    @property
    def cpu(self) -> float:
        return self.r1.cpu - self.r0.cpu

    @property
    def client_cores(self) -> float:
        return (self.c1 - self.c0) / self.seconds

    def rates(self) -> dict[int, float | None]:
        return window_rates(self.s0, self.s1)


def measure(gen: LoadGenerator, server: Server, seconds: float) -> Window:
    s0, r0, c0 = gen.snapshot(), server.reading(), client_cpu(gen)
    time.sleep(seconds)
    s1, r1, c1 = gen.snapshot(), server.reading(), client_cpu(gen)
    return Window(s0, s1, r0, r1, c0, c1)


def ttfk(records: Sequence[PlayerRecord], lo: int, hi: int) -> dict[str, Any]:
    """First keyframe after play (ms) of players lo <= index < hi, first attempts."""
    values = [
        (r.keyframe - r.play_sent) * 1000.0
        for r in records
        if lo <= r.index < hi and r.attempt == 0 and r.keyframe and r.play_sent
    ]
    return describe(values, 1)


def _rate_check(
    rates: dict[int, float | None], floor_bps: float, wanted: set[int] | None = None
) -> dict[str, Any]:
    values = [v for i, v in rates.items() if v is not None and (wanted is None or i in wanted)]
    missing = [i for i, v in rates.items() if v is None and (wanted is None or i in wanted)]
    if wanted is not None:
        missing += [i for i in wanted if i not in rates]
    below = sum(1 for v in values if v < FULL_RATE * floor_bps)
    return {
        "measured": len(values),
        "not_measured": len(missing),
        "below_99": below,
        "all_full_rate": below == 0 and not missing and bool(values),
        "min_ratio": round(min(values) / floor_bps, 4) if values else None,
        "p50_ratio": round(sorted(values)[len(values) // 2] / floor_bps, 4) if values else None,
    }


# ---------------------------------------------------------------------------- 1. fan-out


def fanout(
    bench: Bench,
    variants: Sequence[Variant],
    *,
    counts: dict[Variant, Sequence[int]] | None = None,
    flv: bool = False,
    workdir: str = "fanout",
    edge_stats: bool = False,
    tls: TlsFiles | None = None,
    profile_at: int | None = None,
) -> list[dict[str, Any]]:
    """One 2.5 Mbit/s stream fanned out to N players per edge; CPU per Gbit, RSS, rates.

    ``counts``: player counts of some variants (default ``bench.fanout_counts``);
    ``flv``: every streamgate edge has its [flv] listener on (the same config
    whatever its players' protocol); ``edge_stats``: a streamgate edge's statistics
    dump after each window (its fan-out state and counters, in the row); ``tls``:
    every streamgate edge has its RTMPS listener on (this certificate), and RTMPS
    players trust its CA; ``profile_at``: with ``--profile``, sample each streamgate
    edge after the window at this count (default: after the largest)."""
    src = bench.source(2500)
    rows: list[dict[str, Any]] = []
    with Procs(bench.workdir / workdir) as procs:
        origin = start_origin(procs, bench)
        publish(procs, src, origin, ["fan"])
        for variant in variants:
            edge = start_edge(procs, variant, origin, flv=flv, tls=tls)
            try:
                steps = (counts or {}).get(variant, bench.fanout_counts)
                ca = str(tls.ca) if tls is not None and variant.protocol == "rtmps" else None
                rows += _fanout_edge(
                    bench, variant, edge, src, origin, steps, edge_stats, ca, profile_at
                )
            finally:
                procs.stop(edge)
    return rows


def flv_fanout(
    bench: Bench, counts: Sequence[int] = (500, 2000), ws_counts: Sequence[int] = (500,)
) -> list[dict[str, Any]]:
    """The fan-out of HTTP-FLV viewers through a streamgate edge (merge_ms 50), against
    streamgate's own RTMP players and nginx-rtmp's in the same run (same origin, same
    stream, same counts), then WebSocket-FLV viewers at ``ws_counts``."""
    rtmp = Variant("streamgate", 50)
    http_flv = Variant("streamgate", 50, protocol="flv")
    ws_flv = Variant("streamgate", 50, protocol="ws-flv")
    variants = [rtmp, http_flv, NGINX] + ([ws_flv] if ws_counts else [])
    steps = {rtmp: counts, http_flv: counts, NGINX: counts, ws_flv: ws_counts}
    return fanout(bench, variants, counts=steps, flv=True, workdir="flv", edge_stats=True)


def rtmps_fanout(bench: Bench, counts: Sequence[int] = (100, 500, 1000)) -> dict[str, Any]:
    """The fan-out through one streamgate edge config (merge_ms 50, its RTMPS listener
    on) to plain RTMP players, then to RTMPS players (verified against the bench's
    CA), at the same counts in the same run; and what kernel TLS this machine has."""
    tls = make_certificate(bench.workdir / "pki")
    rtmp = Variant("streamgate", 50)
    rtmps = Variant("streamgate", 50, protocol="rtmps")
    profile_at = 500 if 500 in counts else max(counts)
    rows = fanout(
        bench,
        [rtmp, rtmps],
        counts={rtmp: counts, rtmps: counts},
        workdir="rtmps",
        edge_stats=True,
        tls=tls,
        profile_at=profile_at,
    )
    return {"rows": rows, "ktls": ktls_facts()}


def ktls_facts() -> dict[str, Any]:
    """What kernel TLS (kTLS) this machine and this Python offer, as read here."""
    ulp = Path("/proc/sys/net/ipv4/tcp_available_ulp")
    modules = Path("/proc/modules")
    config = Path("/proc/config.gz")
    config_tls = None
    if config.exists():
        try:
            with gzip.open(config, "rt") as f:
                config_tls = next(
                    (ln.strip() for ln in f if ln.startswith(("CONFIG_TLS=", "# CONFIG_TLS "))),
                    "CONFIG_TLS absent",
                )
        except OSError:
            config_tls = None
    ulps = ulp.read_text().split() if ulp.exists() else None
    loaded = None
    if modules.exists():
        loaded = any(line.split()[0] == "tls" for line in modules.read_text().splitlines())
    return {
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "ssl_OP_ENABLE_KTLS": hasattr(ssl, "OP_ENABLE_KTLS"),
        "tcp_available_ulp": ulps,
        "tls_ulp": None if ulps is None else "tls" in ulps,
        "tls_module_loaded": loaded,  # None: no /proc/modules (no loadable modules)
        "kernel": platform.release(),
        "kernel_config_tls": config_tls,
        "proc_net_tls_stat": Path("/proc/net/tls_stat").exists(),
    }


def origin_links(origin: Server) -> int:
    """Connections the (streamgate) origin holds besides the publisher: the edge's links."""
    return int(origin.stats().get("sessions", 1)) - 1


def _fanout_edge(
    bench: Bench,
    variant: Variant,
    edge: Server,
    src: Source,
    origin: Server,
    counts: Sequence[int],
    edge_stats: bool = False,
    ca_file: str | None = None,
    profile_at: int | None = None,
) -> list[dict[str, Any]]:
    rows = []
    after: dict[int, dict[str, Any]] = {}  # players -> the edge's state after the window
    url = variant.url(edge, "fan")
    profile: dict[str, Any] | None = None
    profiled = 0  # the player count profile was sampled at
    with LoadGenerator(bench.options(ca_file=ca_file), workers=bench.workers) as gen:
        gen.add([url], 10.0)
        if not wait_counting(gen, 1, 15).count(State.COUNTING):
            raise RuntimeError(f"{variant.label}: the first player did not start")
        time.sleep(1.0)
        # The edge with one player: its fixed cost (the upstream link, timers).
        idle = measure(gen, edge, 1.5)
        base = idle.r1
        base_cores = idle.cpu / idle.seconds
        current = 1
        steps: list[tuple[int, int, Window]] = []
        links: dict[int, int] = {}
        for n in counts:
            need = bench.fanout_window + 4 + (n - current) / bench.fanout_rate + 5
            if bench.left() < need:
                bench.log(f"  {variant.label}: {n} players skipped (time budget)")
                break
            first = gen.next_index
            last = gen.add([url] * (n - current), bench.fanout_rate)
            current = n
            sleep_until(last)
            # Every player playing (nginx-rtmp's wait up to a GOP for a keyframe), then 1 s
            # more so the GOP bursts of the last ones are over.
            wait_counting(gen, n, 10.0)
            time.sleep(1.0)
            window = measure(gen, edge, bench.fanout_window)
            steps.append((n, first, window))
            links[n] = origin_links(origin)
            if edge_stats and variant.kind == "streamgate":
                dump = edge.stats()
                counters = dump.get("counters", {})
                after[n] = {
                    "fanout": dump.get("fanout"),
                    "slow_players_dropped": counters.get("slow_players_dropped"),
                }
            bench.log(
                f"  {variant.label}: {n} players, edge {window.cpu / window.seconds:.2f} "
                f"cores, client {window.client_cores:.2f} cores"
            )
            if n == profile_at:
                profile, profiled = _profile(bench, variant, edge), n
        if profile_at is None and steps:
            profile, profiled = _profile(bench, variant, edge), steps[-1][0]
        records = gen.stop()
    floor = src.min_bps(bench.fanout_window)
    for n, first, w in steps:
        bits = delivered_bytes(w.s0, w.s1) * 8
        check = _rate_check(w.rates(), floor)
        rows.append(
            {
                "edge": variant.label,
                "kind": variant.kind,
                "merge_ms": variant.merge_ms,
                "workers": variant.workers,
                "protocol": variant.protocol,
                "origin_links": links.get(n),
                "players": n,
                "window_s": round(w.seconds, 2),
                "cpu_s": round(w.cpu, 3),
                "cores": round(w.cpu / w.seconds, 3),
                "system_share": round((w.r1.system - w.r0.system) / w.cpu, 3) if w.cpu else None,
                "delivered_gbit": round(bits / 1e9, 3),
                "cpu_s_per_gbit": round(w.cpu / (bits / 1e9), 4) if bits else None,
                "base_cores": round(base_cores, 4),
                # Without the fixed cost of the edge with one player.
                "cpu_s_per_gbit_marginal": (
                    round((w.cpu - base_cores * w.seconds) / (bits / 1e9), 4) if bits else None
                ),
                "rss_kb": w.r1.rss_kb,
                "rss_base_kb": base.rss_kb,
                "rss_per_player_kb": round((w.r1.rss_kb - base.rss_kb) / max(1, n - 1), 2),
                "bitrate": check,
                "source_floor_kbps": round(floor / 1000, 1),
                "ttfk_ms": ttfk(records, first, first + n),
                "client_cores": round(w.client_cores, 3),
                "failed_players": sum(
                    1 for r in records if r.index < n and r.state == State.FAILED
                ),
                **({"edge_after": after[n]} if n in after else {}),
            }
        )
    for row in rows:
        if profile is not None and row["players"] == profiled:
            row["profile"] = profile
    return rows


def _profile(bench: Bench, variant: Variant, edge: Server) -> dict[str, Any] | None:
    """``--profile``: py-spy a streamgate edge for 10 s (outside the measured windows)."""
    if not bench.profile or variant.kind != "streamgate":
        return None
    from bench.profile import profile_pid

    # The raw stacks are kept next to the report (the work directory is removed).
    return profile_pid(edge.pid, bench.cache.parent / f"profile-{variant.slug}", seconds=10)


# ---------------------------------------------------------------------------- 2. capacity


def capacity(
    bench: Bench, variants: Sequence[Variant], steps: Sequence[int], reserve: float = 40.0
) -> list[dict[str, Any]]:
    """600 kbit/s, the edge alone on one core: players ramped until one falls behind."""
    src = bench.source(600)
    out = []
    client = [CLIENT_CPU]
    with Procs(bench.workdir / "capacity") as procs:
        origin = start_origin(procs, bench, cpus=client)
        publish(procs, src, origin, ["cap"], cpus=client)
        for k, variant in enumerate(variants):
            # What is left of the run, less ``reserve`` seconds for each edge still to come.
            budget = bench.left() - 5 - reserve * (len(variants) - 1 - k)
            edge = start_edge(procs, variant, origin, cpus=[SERVER_CPU])
            try:
                out.append(_capacity_edge(bench, variant, edge, src, steps, budget))
            finally:
                procs.stop(edge)
    return out


def _capacity_edge(
    bench: Bench,
    variant: Variant,
    edge: Server,
    src: Source,
    steps: Sequence[int],
    budget: float,
    refine: int = 2,
) -> dict[str, Any]:
    """Walk up ``steps`` until a step fails, then bisect ``refine`` times between the
    last good and the first bad count (removing the newest players)."""
    url = edge.url("cap")
    window_s, settle = 4.0, 2.5  # settle > one GOP: skipping players resume
    floor = src.min_bps(window_s)
    tried: list[dict[str, Any]] = []
    end = min(time.monotonic() + budget, bench.deadline - 5)

    def rate(n: int) -> float:
        # New players cost a handshake and a GOP burst each: ramping 1,000/s into an edge
        # already serving 10,000+ on one core measures the ramp, not the steady state.
        return 1000.0 if n <= 8000 else 500.0

    # One worker: the client has one core, and removal takes the newest players.
    with LoadGenerator(bench.options(start_timeout=15.0), workers=1, cpus=[CLIENT_CPU]) as gen:
        order: list[int] = []  # every index added, oldest first (the worker's own list)
        expected: set[int] = set()  # the players that should be playing

        def add(count: int, n: int) -> None:
            first = gen.next_index
            sleep_until(gen.add([url] * count, rate(n)))
            new = range(first, gen.next_index)
            order.extend(new)
            expected.update(new)

        def step(n: int) -> bool:
            if n > len(expected):
                add(n - len(expected), n)
            else:
                count = len(expected) - n
                gen.remove(count)
                for _ in range(count):
                    expected.discard(order.pop())
                # Players the failed step cost (dropped, or never admitted) are replaced:
                # a smaller count is judged on its own, not on the bigger one's casualties.
                dead = expected - gen.snapshot().plays.keys()
                expected.difference_update(dead)
                if dead:
                    add(len(dead), n)
            # Every player must be playing before the window: a start queue is not a limit.
            started = wait_counting(gen, n, 5.0 + n / 2000).count(State.COUNTING)
            time.sleep(settle)
            k0 = tcp_counters()
            w = measure(gen, edge, window_s)
            k1 = tcp_counters()
            check = _rate_check(w.rates(), floor, set(expected))
            row = {
                "players": n,
                "started_before_window": started,
                "cores": round(w.cpu / w.seconds, 3),
                "client_cores": round(w.client_cores, 3),
                **check,
                "rss_kb": w.r1.rss_kb,
                "tcp_counters": {k: k1[k] - k0[k] for k in k1 if k1[k] != k0[k]},
            }
            # Which side gave out: a client that used its whole core may be the limit.
            row["client_limited"] = w.client_cores > 0.85
            tried.append(row)
            bench.log(
                f"  {variant.label}: {n} players: below 99% {check['below_99']}, "
                f"not playing {check['not_measured']}, edge {row['cores']} cores, "
                f"client {row['client_cores']} cores"
            )
            return bool(check["all_full_rate"])

        def fits(n: int) -> bool:
            cost = max(0, n - len(expected)) / rate(n) + 3.0 + settle + window_s + 2
            return time.monotonic() + cost < end

        best, bad = 0, 0
        verdict = "passed every step"
        for n in steps:
            if not fits(n):
                verdict = "time budget"
                break
            if not step(n):
                bad = n
                break
            best = n
        for _ in range(refine if bad else 0):
            mid = (best + bad) // 2 // 250 * 250
            if mid <= best or not fits(mid):
                break
            if step(mid):
                best = mid
            else:
                bad = mid
        if bad:
            last = next(r for r in reversed(tried) if r["players"] == bad)
            verdict = (
                "players fell below 99%" if last["below_99"] else "players not playing"
            ) + f" at {bad:,}"
            if last["client_limited"]:
                verdict += " (the client's core was saturated: client-limited)"
        gen.stop()
    return {
        "edge": variant.label,
        "kind": variant.kind,
        "merge_ms": variant.merge_ms,
        "max_players": best,
        "first_failure": bad or None,
        "stopped_because": verdict,
        "steps": tried,
        "source_floor_kbps": round(floor / 1000, 1),
    }


# ---------------------------------------------------------------------------- 3. cold start


def cold_start(
    bench: Bench, variants: Sequence[Variant], streams: int = 50
) -> list[dict[str, Any]]:
    """First keyframe after play when the edge has no link yet (cold), then when it has (warm)."""
    src = bench.source(600)
    names = [f"cold{i}" for i in range(streams)]
    out = []
    with Procs(bench.workdir / "cold") as procs:
        origin = start_origin(procs, bench)
        publish(procs, src, origin, names)
        time.sleep(src.gop_s)  # every stream has a GOP in the origin's cache
        for variant in variants:
            edge = start_edge(procs, variant, origin)
            try:
                with LoadGenerator(bench.options(), workers=1) as gen:
                    # 15 per second: below the edge's upstream connect rate cap (20/s).
                    last = gen.add([edge.url(n) for n in names], 15.0)
                    sleep_until(last)
                    wait_counting(gen, streams, 10)
                    last = gen.add([edge.url(n) for n in names], 15.0)
                    sleep_until(last)
                    wait_counting(gen, 2 * streams, 10)
                    records = gen.stop()
            finally:
                procs.stop(edge)
            cold, warm = ttfk(records, 0, streams), ttfk(records, streams, 2 * streams)
            out.append(
                {
                    "edge": variant.label,
                    "kind": variant.kind,
                    "merge_ms": variant.merge_ms,
                    "streams": streams,
                    "cold_ttfk_ms": cold,
                    "warm_ttfk_ms": warm,
                    "cold_failed": streams - cold["count"],
                    "warm_failed": streams - warm["count"],
                }
            )
            bench.log(
                f"  {variant.label}: cold p50 {cold['p50']} ms p99 {cold['p99']} ms; "
                f"warm p50 {warm['p50']} ms p99 {warm['p99']} ms"
            )
    return out


# ---------------------------------------------------------------------------- 4. flood


def flood(
    bench: Bench,
    variants: Sequence[Variant],
    players: int = 1000,
    seconds: float = 30.0,
    reconnect_delay: float = 0.5,
) -> list[dict[str, Any]]:
    """Players on distinct missing names, reconnecting when dropped; what reaches the origin.

    streamgate's edge reads the origin's directory ([edge] directory, not
    authoritative), so the connect rate still bounds the misses while a cold
    live stream starts through them.
    """
    src = bench.source(600)
    out = []
    with Procs(bench.workdir / "flood") as procs:
        origin = start_origin(procs, bench, http=True)
        publish(procs, src, origin, ["watched", "legit"])
        for variant in variants:
            edge = start_edge(procs, variant, origin, edge=directory_of(origin))
            try:
                out.append(
                    _flood_edge(bench, variant, edge, origin, players, seconds, reconnect_delay)
                )
            finally:
                procs.stop(edge)
    return out


def _flood_edge(
    bench: Bench,
    variant: Variant,
    edge: Server,
    origin: Server,
    players: int,
    seconds: float,
    reconnect_delay: float,
) -> dict[str, Any]:
    with LoadGenerator(bench.options(start_timeout=10.0), workers=bench.workers) as gen:
        gen.add([edge.url("watched")], 10.0)  # a stream already live on the edge
        wait_counting(gen, 1, 15)
        accepted0 = origin.stats()["sessions_total"]
        overflows0 = listen_overflows()
        with AcceptQueue(origin.port) as queue:
            r0 = edge.reading()
            begin = time.monotonic() + 0.1
            end = begin + seconds
            urls = [edge.url(f"missing{i}") for i in range(players)]
            gen.add(
                urls,
                float(players),
                start_at=begin,
                reconnect=True,
                reconnect_delay=reconnect_delay,
                until=end,
            )
            sleep_until(begin + seconds / 3)
            legit_first = gen.next_index
            gen.add([edge.url("watched"), edge.url("legit")], 10.0)
            sleep_until(end)
            r1 = edge.reading()
            records = gen.stop()
        accepted1 = origin.stats()["sessions_total"]
    overflows = listen_overflows() - overflows0
    flood_records = [r for r in records if 1 <= r.index < 1 + players]
    drops = [
        (r.ended - r.play_sent) * 1000 for r in flood_records if r.closed_by_server and r.play_sent
    ]
    legit = {
        ("warm" if r.index == legit_first else "cold"): {
            "started": bool(r.keyframe),
            "ttfk_ms": round((r.keyframe - r.play_sent) * 1000, 1) if r.keyframe else None,
            "error": r.error or None,
        }
        for r in records
        if r.index >= legit_first
    }
    # The legitimate cold play makes one upstream connect of its own.
    upstream = accepted1 - accepted0 - (1 if legit.get("cold", {}).get("started") else 0)
    row: dict[str, Any] = {
        "edge": variant.label,
        "kind": variant.kind,
        "players": players,
        "seconds": seconds,
        "attempts": len(flood_records),
        "upstream_connects": upstream,
        "drop_ms": describe(drops, 1),
        # Plays the edge neither refused nor closed within the players' 10 s start timeout.
        "waited_out": sum(
            1 for r in flood_records if r.state == State.FAILED and not r.closed_by_server
        ),
        "in_flight_at_end": sum(1 for r in flood_records if r.state == State.LEFT),
        "accept_queue_high": queue.high,
        "accept_queue_limit": queue.limit,
        "accept_queue_full_samples": queue.full_samples,
        "listen_overflows": overflows,
        "edge_cores": round((r1.cpu - r0.cpu) / (r1.taken - r0.taken), 3),
        "legit": legit,
    }
    if variant.kind == "streamgate":
        e = EdgeSettings()
        rate_bound = math.ceil(e.max_connects_per_second * (seconds + 1))
        ttl_bound = players * math.ceil(seconds / e.missing_ttl)
        row["bound"] = {
            "max_connects_per_second": e.max_connects_per_second,
            "missing_ttl": e.missing_ttl,
            "rate_cap_bound": rate_bound,
            "missing_ttl_bound": ttl_bound,
            "bound": min(rate_bound, ttl_bound),
            "within": upstream <= min(rate_bound, ttl_bound),
        }
    bench.log(
        f"  {variant.label}: {row['attempts']} plays, {upstream} upstream connects, "
        f"drop p50 {row['drop_ms']['p50']} ms, accept queue high {queue.high}/"
        f"{queue.limit}, legit {legit}"
    )
    return row


# ---------------------------------------------------------------------------- 5. churn


def churn(
    bench: Bench,
    variants: Sequence[Variant],
    per_second: float = 200.0,
    rounds: int = 2,
    round_seconds: float = 15.0,
    hold: float = 1.5,
) -> list[dict[str, Any]]:
    """Players joining and leaving on one live stream; CPU, and state before/after each round."""
    src = bench.source(600)
    out = []
    with Procs(bench.workdir / "churn") as procs:
        origin = start_origin(procs, bench)
        publish(procs, src, origin, ["churn"])
        for variant in variants:
            edge = start_edge(procs, variant, origin)
            try:
                out.append(
                    _churn_edge(bench, variant, edge, per_second, rounds, round_seconds, hold)
                )
            finally:
                procs.stop(edge)
    return out


def _state(edge: Server) -> dict[str, Any]:
    if edge.kind == "streamgate":
        s = edge.stats()
        return {
            "rss_kb": s["rss_kb"],
            "objects": s["objects"],
            "sessions_alive": s["sessions_alive"],
            "top_types": s["top_types"],
        }
    return {"rss_kb": edge.reading().rss_kb}


def _churn_edge(
    bench: Bench,
    variant: Variant,
    edge: Server,
    per_second: float,
    rounds: int,
    round_seconds: float,
    hold: float,
) -> dict[str, Any]:
    url = edge.url("churn")
    states = []
    with LoadGenerator(bench.options(), workers=bench.workers) as gen:
        gen.add([url], 10.0)  # keeps the stream on the edge between rounds
        wait_counting(gen, 1, 15)
        time.sleep(1.0)
        states.append(_state(edge))
        r0 = edge.reading()
        first = gen.next_index
        for _ in range(rounds):
            count = int(per_second * round_seconds)
            last = gen.add([url] * count, per_second, hold=hold)
            sleep_until(last + hold + 0.5)
            states.append(_state(edge))
        r1 = edge.reading()
        records = gen.stop()
    churned = [r for r in records if r.index >= first]
    started = sum(1 for r in churned if r.keyframe)
    row: dict[str, Any] = {
        "edge": variant.label,
        "kind": variant.kind,
        "per_second": per_second,
        "rounds": rounds,
        "round_seconds": round_seconds,
        "hold_s": hold,
        "plays": len(churned),
        "started": started,
        "cores": round((r1.cpu - r0.cpu) / (r1.taken - r0.taken), 3),
        "ttfk_ms": ttfk(records, first, gen.next_index),
        "states": states,
    }
    # Growth between the end of round 1 and the end of the last round: round 1 warms
    # caches and allocator pools, so anything that still grows after it is a leak.
    a, b = states[1], states[-1]
    row["rss_growth_kb"] = b["rss_kb"] - a["rss_kb"]
    if "objects" in b:
        row["object_growth"] = b["objects"] - a["objects"]
        row["sessions_left"] = b["sessions_alive"] - states[0]["sessions_alive"]
    bench.log(
        f"  {variant.label}: {started}/{len(churned)} started, {row['cores']} cores, "
        f"rss growth {row['rss_growth_kb']} kB, objects "
        f"{row.get('object_growth', '-')}"
    )
    return row


# ---------------------------------------------------------------------------- 6. fleet


def fleet(
    bench: Bench,
    edges: int = 4,
    names: int = 1000,
    seconds: float = 30.0,
    reconnect_delay: float = 0.5,
) -> list[dict[str, Any]]:
    """The seed incident at fleet scale: ``edges`` streamgate edges in front of one
    origin, the same ``names`` missing names played at every edge and re-opened
    when dropped; origin connects and its accept queue, without and with [cluster]
    (one redis-server; the fleet's connect budget set to one edge's rate)."""
    from tests.cluster.redisd import RedisServer  # the tests' throw-away redis-server

    rate = EdgeSettings().max_connects_per_second
    rows = []
    for shared in (False, True):
        label = "with [cluster]" if shared else "without [cluster]"
        with (
            Procs(bench.workdir / f"fleet-{int(shared)}") as procs,
            contextlib.ExitStack() as stack,
        ):
            origin = start_origin(procs, bench)
            (procs.workdir / "redis").mkdir(parents=True, exist_ok=True)
            redis = stack.enter_context(RedisServer(procs.workdir / "redis")) if shared else None
            servers = [
                procs.streamgate(
                    f"edge{i}",
                    mode="edge",
                    origin_port=origin.port,
                    log_level="warning",
                    edge={"fleet_max_connects_per_second": rate} if shared else {},
                    cluster={"redis_url": redis.url, "node_id": f"edge{i}"} if redis else None,
                )
                for i in range(edges)
            ]
            time.sleep(1.0)  # the nodes' first heartbeat and full read
            with LoadGenerator(bench.options(start_timeout=10.0), workers=bench.workers) as gen:
                accepted0 = origin.stats()["sessions_total"]
                overflows0 = listen_overflows()
                with AcceptQueue(origin.port) as queue:
                    begin = time.monotonic() + 0.2
                    end = begin + seconds
                    urls = [s.url(f"missing{i}") for s in servers for i in range(names)]
                    gen.add(
                        urls,
                        float(len(urls)),
                        start_at=begin,
                        reconnect=True,
                        reconnect_delay=reconnect_delay,
                        until=end,
                    )
                    sleep_until(end)
                    records = gen.stop()
                accepted1 = origin.stats()["sessions_total"]
            for server in servers:
                procs.stop(server)
        e = EdgeSettings()
        one_edge = min(
            math.ceil(e.max_connects_per_second * (seconds + 1)),
            names * math.ceil(seconds / e.missing_ttl),
        )
        row = {
            "fleet": label,
            "edges": edges,
            "names": names,
            "seconds": seconds,
            "attempts": len(records),
            "origin_connects": accepted1 - accepted0,
            "one_edge_bound": one_edge,
            "within_one_edge_bound": accepted1 - accepted0 <= one_edge,
            "accept_queue_high": queue.high,
            "accept_queue_limit": queue.limit,
            "accept_queue_full_samples": queue.full_samples,
            "listen_overflows": listen_overflows() - overflows0,
        }
        bench.log(
            f"  {edges} edges {label}: {row['attempts']} plays, {row['origin_connects']} origin "
            f"connects (one edge's bound {one_edge}), accept queue high {queue.high}/{queue.limit}"
        )
        rows.append(row)
    return rows
