"""One load-test run: ramp, warm-up, a measured window, records and a summary.

This is what ``streamgate loadtest`` does; the benchmark harness drives
:class:`~streamgate.loadtest.engine.LoadGenerator` directly when it needs
steps (capacity) or server readings at the window's edges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from streamgate.loadtest.engine import (
    LoadGenerator,
    PlayerRecord,
    Snapshot,
    delivered_bytes,
    window_rates,
)
from streamgate.loadtest.player import PlayerOptions, State
from streamgate.loadtest.signing import UrlSigner, add_query
from streamgate.loadtest.stats import summarize

__all__ = ["LoadConfig", "LoadResult", "player_urls", "run_load"]


@dataclass
class LoadConfig:
    """Everything one run needs; see ``streamgate loadtest --help`` for each field."""

    url: str
    players: int = 10
    rate: float = 100.0
    duration: float = 10.0
    warmup: float = 2.0
    hold: float | None = None
    streams: int | None = None
    reconnect: bool = False
    reconnect_delay: float = 0.5
    workers: int | None = None
    cpus: list[int] | None = None
    start_timeout: float = 10.0
    status_scan: str = "tail"
    quickack: bool = True
    signer: UrlSigner | None = None
    query: str = ""
    source_kbps: float | None = None
    ca_file: str | None = None  # rtmps://: trust only this PEM file's CAs
    insecure: bool = False  # rtmps://: no certificate verification

    def public(self) -> dict[str, Any]:
        """The settings as a dict for the JSON output, without the signing secret."""
        out = asdict(self)
        signer = self.signer
        out["signer"] = (
            {"format": signer.format, "ttl": signer.ttl, "kid": signer.kid} if signer else None
        )
        return out


@dataclass
class LoadResult:
    config: LoadConfig
    records: list[PlayerRecord]
    rates: dict[int, float | None]
    before: Snapshot
    after: Snapshot
    summary: dict[str, Any]


def player_urls(config: LoadConfig) -> list[str]:
    """One URL per player: ``{i}`` in the URL is the stream number (``i % streams``)."""
    urls = []
    streams = config.streams or config.players
    for i in range(config.players):
        url = config.url.replace("{i}", str(i % streams)) if "{i}" in config.url else config.url
        url = add_query(url, config.query)
        if config.signer is not None:
            url = config.signer.sign(url)
        urls.append(url)
    return urls


def _sleep_until(when: float, progress: Callable[[], None] | None, every: float) -> None:
    next_report = time.monotonic() + every
    while (left := when - time.monotonic()) > 0:
        time.sleep(min(left, max(0.0, next_report - time.monotonic()), 0.5))
        if progress is not None and time.monotonic() >= next_report:
            progress()
            next_report += every


def run_load(
    config: LoadConfig,
    *,
    report: Callable[[str], None] | None = None,
    report_every: float = 5.0,
) -> LoadResult:
    """Run ``config`` to the end and summarise it."""
    if config.players < 1:
        raise ValueError("at least one player")
    urls = player_urls(config)
    options = PlayerOptions(
        start_timeout=config.start_timeout,
        status_scan=config.status_scan,
        quickack=config.quickack,
        ca_file=config.ca_file,
        insecure=config.insecure,
    )
    with LoadGenerator(options, workers=config.workers, cpus=config.cpus) as gen:
        begin = time.monotonic() + 0.1
        ramp_end = begin + (config.players - 1) / config.rate
        window_start = ramp_end + config.warmup
        window_end = window_start + config.duration
        if config.hold is not None:
            window_end = max(window_end, ramp_end + config.hold + 0.5)
        gen.add(
            urls,
            config.rate,
            start_at=begin,
            hold=config.hold,
            reconnect=config.reconnect,
            reconnect_delay=config.reconnect_delay,
            until=window_end,
        )

        def progress() -> None:
            if report is None:
                return
            snap = gen.snapshot()
            report(
                f"t={snap.taken - begin:5.1f}s  playing {snap.count(State.COUNTING)}  "
                f"starting {snap.count(State.CONNECTING, State.COMMANDS, State.STARTED)}  "
                f"of {config.players}"
            )

        _sleep_until(window_start, progress, report_every)
        before = gen.snapshot()
        _sleep_until(window_end, progress, report_every)
        after = gen.snapshot()
        records = gen.stop()
    rates = window_rates(before, after)
    window = after.taken - before.taken
    summary = summarize(
        records,
        rates,
        source_bps=config.source_kbps * 1000.0 if config.source_kbps else None,
        window=window,
        window_bytes=delivered_bytes(before, after),
    )
    return LoadResult(config, records, rates, before, after, summary)
