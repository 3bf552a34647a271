"""``[rtmp] workers = 2`` in front of nginx-rtmp: one origin link per stream per
machine, protection state for the whole machine, and the process tree's lifecycle.

The machine has two cores, so these show correctness; the scaling is measured by
the benchmark."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamgate.client import RtmpClient
from streamgate.rtmp.events import StatusReceived
from streamgate.rtmp.messages import Status
from streamgate.workers.ownership import owner_of
from tests.api.test_http_flood import SlowHeaderFlood, probe
from tests.flv.viewer import ViewerResult, view
from tests.peers import NginxRtmp, free_port, publisher, wait_until
from tests.processes import ConnectCounter
from tests.workers.machine import Audience, Machine, PlayerRun

pytestmark = pytest.mark.interop

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]  # 8 viewer addresses


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    with NginxRtmp(tmp_path / "nginx", "application live { live on; }") as server:
        yield server


def edge_plays(nginx: NginxRtmp, name: str) -> int:
    """Play connections (not the publisher) nginx holds for live/``name``."""
    return sum(1 for c in nginx.clients("live", name) if "publishing" not in c)


async def play_all(
    urls: list[tuple[str, str]], until: float, want_media: int = 3, hold: float = 0.0
) -> list[PlayerRun]:
    """Players (url, source) at once, until each got ``want_media`` (and played at
    least ``hold`` s) or ``until`` s passed."""
    audience = Audience(urls)
    start = time.monotonic()
    deadline = start + until
    while time.monotonic() < deadline and not (
        all(r.media >= want_media or r.closed or r.error for r in audience.runs)
        and time.monotonic() - start >= hold
    ):
        await asyncio.sleep(0.1)
    return await audience.end()


def test_400_players_over_two_workers_cost_one_origin_link(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    with publisher(nginx.url("live", "x")):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="ffmpeg publishing")
        edge = Machine(tmp_path, nginx.rtmp_port).start()
        try:
            seen: dict[int, int] = {}
            links: list[int] = []

            async def watch() -> list[PlayerRun]:
                task = asyncio.ensure_future(
                    play_all([(edge.url("x"), SOURCES[i % 8]) for i in range(400)], 60, hold=4)
                )
                while not task.done():
                    links.append(await asyncio.to_thread(edge_plays, nginx, "x"))
                    seen.update(await asyncio.to_thread(edge.players_by_worker))
                    await asyncio.sleep(0.5)
                return await task

            runs = asyncio.run(watch())
            failed = [r for r in runs if r.media < 3]
            assert not failed, f"{len(failed)} players got no media: {failed[:3]}"
            assert max(links) == 1, f"origin play connections seen: {sorted(set(links))}"
            assert sorted(seen) == [0, 1] and all(seen.values()), seen
            print(f"players per worker (peak seen): {seen}")
        finally:
            assert edge.stop() == 0, edge.log()


def test_http_flv_and_websocket_viewers_over_two_workers_share_the_one_origin_link(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    with publisher(nginx.url("live", "x")):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="ffmpeg publishing")
        edge = Machine(tmp_path, nginx.rtmp_port, flv={"enabled": True}).start()
        try:
            links: list[int] = []
            by_worker: dict[tuple[int, str], int] = {}

            async def watch() -> tuple[list[ViewerResult], list[PlayerRun]]:
                views = [ViewerResult() for _ in range(60)]
                tasks = [
                    asyncio.ensure_future(
                        view("127.0.0.1", edge.flv_port, "/live/x.flv", websocket=i % 2 == 1,
                             source=SOURCES[i % 8], timeout=60, result=result)
                    )
                    for i, result in enumerate(views)
                ]  # fmt: skip
                rtmp = Audience([(edge.url("x"), SOURCES[i % 8]) for i in range(20)])
                start = time.monotonic()
                deadline = start + 45
                while time.monotonic() < deadline and not (
                    all(len(v.flv.tags) >= 30 for v in views)
                    and all(r.media >= 3 for r in rtmp.runs)
                    and time.monotonic() - start >= 4  # the origin sampled while they play
                ):
                    links.append(await asyncio.to_thread(edge_plays, nginx, "x"))
                    clients = await asyncio.to_thread(edge.get, "/api/v1/clients")
                    for client in clients["clients"]:
                        if client["role"] == "player":
                            key = (client["worker"], client["protocol"])
                            count = sum(
                                1 for c in clients["clients"]
                                if (c["worker"], c["protocol"]) == key and c["role"] == "player"
                            )  # fmt: skip
                            by_worker[key] = max(by_worker.get(key, 0), count)
                    await asyncio.sleep(0.5)
                runs = await rtmp.end()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return views, runs

            views, runs = asyncio.run(watch())
            short = [len(v.flv.tags) for v in views if len(v.flv.tags) < 30]
            assert not short, f"{len(short)} HTTP viewers got too little: {short[:5]}"
            assert all(v.flv.flags == 0x05 for v in views)
            assert all(r.media >= 3 for r in runs), [r for r in runs if r.media < 3][:3]
            assert max(links) == 1, f"origin play connections seen: {sorted(set(links))}"
            for worker in (0, 1):  # both workers served HTTP viewers, over both transports
                served = by_worker.get((worker, "flv")), by_worker.get((worker, "ws-flv"))
                assert all(served), by_worker
            print(f"players per worker and protocol (peak seen): {by_worker}")
        finally:
            assert edge.stop() == 0, edge.log()


def test_a_cold_stream_raced_by_100_first_players_and_50_streams_cost_one_link_each(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    names = [f"s{i}" for i in range(50)]
    with publisher(nginx.url("live", "cold")):
        wait_until(lambda: nginx.publishing("live", "cold"), timeout=15, what="publishing")
        edge = Machine(tmp_path, nginx.rtmp_port).start()
        try:
            peak = 0

            async def race() -> list[PlayerRun]:
                nonlocal peak
                task = asyncio.ensure_future(
                    play_all([(edge.url("cold"), SOURCES[i % 8]) for i in range(100)], 40, hold=3)
                )
                while not task.done():
                    peak = max(peak, await asyncio.to_thread(edge_plays, nginx, "cold"))
                    await asyncio.sleep(0.2)
                return await task

            runs = asyncio.run(race())
            assert all(r.media >= 3 for r in runs), [r for r in runs if r.media < 3][:3]
            assert peak == 1
        finally:
            assert edge.stop() == 0, edge.log()
    # 50 distinct live streams at once: 50 links, never more.
    pubs = [publisher(nginx.url("live", n), size="160x120", rate=10) for n in names]
    for pub in pubs:
        pub.__enter__()
    try:
        wait_until(
            lambda: all(nginx.publishing("live", n) for n in names), timeout=60, what="50 live"
        )
        (tmp_path / "again").mkdir()
        edge = Machine(tmp_path / "again", nginx.rtmp_port, edge={"max_connects_per_second": 100})
        edge.start()
        try:
            counts: list[int] = []

            async def many() -> list[PlayerRun]:
                urls = [(edge.url(n), SOURCES[i % 8]) for n in names for i in range(4)]
                task = asyncio.ensure_future(play_all(urls, 60, want_media=2, hold=3))
                while not task.done():
                    stat = await asyncio.to_thread(nginx.stat)
                    counts.append(
                        sum(
                            1
                            for s in stat.iter("stream")
                            for c in s.findall("client")
                            if c.find("publishing") is None
                        )
                    )
                    await asyncio.sleep(0.5)
                return await task

            runs = asyncio.run(many())
            assert all(r.media >= 2 for r in runs), [r for r in runs if r.media < 2][:3]
            assert max(counts) <= 50, max(counts)
        finally:
            assert edge.stop() == 0, edge.log()
    finally:
        for pub in pubs:
            pub.__exit__(None, None, None)


def test_a_ban_on_one_worker_resets_the_address_on_every_worker_and_after_sighup(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    edge = Machine(
        tmp_path,
        nginx.rtmp_port,
        auth={"play": "signed", "keys": {"k1": "s" * 32}},
        limits={
            "ban_after_failures": 3,
            "connections_per_second_per_ip": 1000,
            "max_connections_per_ip": 1000,
        },
    ).start()
    attacker = "127.0.0.2"
    try:

        async def knock() -> list[PlayerRun]:
            return await play_all([(edge.url("x?token=bad"), attacker)] * 1, 5)

        while not edge.get("/api/v1/bans")["bans"]:
            asyncio.run(knock())
        # Many connections: the kernel spreads them over both workers; each resets them.
        asyncio.run(play_all([(edge.url("x"), attacker) for _ in range(40)], 10))
        for w in (0, 1):
            assert edge.metric("streamgate_rejected_total", worker=str(w), reason="banned") > 0
        edge.signal(signal.SIGHUP)
        wait_until(lambda: "reloading 2 workers" in edge.log(), timeout=10, what="reload")
        before = edge.metric("streamgate_rejected_total", reason="banned")
        asyncio.run(play_all([(edge.url("x"), attacker) for _ in range(10)], 10))
        assert edge.metric("streamgate_rejected_total", reason="banned") >= before + 10
    finally:
        assert edge.stop() == 0, edge.log()


def _names_owned_by_each() -> tuple[str, str]:
    """A stream name owned by worker 0 and one owned by worker 1."""
    names = [f"k{i}" for i in range(20)]
    return (
        next(n for n in names if owner_of("live", n, 2) == 0),
        next(n for n in names if owner_of("live", n, 2) == 1),
    )


def test_a_killed_worker_is_restarted_and_the_other_workers_players_play_on(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    lost_owner, kept_owner = _names_owned_by_each()
    with publisher(nginx.url("live", lost_owner)), publisher(nginx.url("live", kept_owner)):
        wait_until(
            lambda: nginx.publishing("live", lost_owner) and nginx.publishing("live", kept_owner),
            timeout=15,
            what="publishing",
        )
        edge = Machine(tmp_path, nginx.rtmp_port).start()
        try:
            pids = edge.worker_pids()

            async def scenario() -> tuple[list[PlayerRun], list[PlayerRun]]:
                urls = [
                    (edge.url(n), SOURCES[i % 8])
                    for n in (lost_owner, kept_owner)
                    for i in range(20)
                ]
                audience = Audience(urls)
                runs = audience.runs
                names = [u.rsplit("/", 1)[1] for u, _ in urls]
                await audience.playing()
                clients = (await asyncio.to_thread(edge.get, "/api/v1/clients"))["clients"]
                worker_of = {c["peer"]: c["worker"] for c in clients}
                on_one = [
                    r
                    for r, n in zip(runs, names, strict=True)
                    if worker_of.get(r.peer) == 1 and n == kept_owner
                ]
                assert on_one, "no player of worker 1's own stream on worker 1"
                os.kill(pids[0], signal.SIGKILL)
                for r in runs:
                    r.max_gap = 0.0
                restarted = time.monotonic() + 30
                while time.monotonic() < restarted:
                    view = await asyncio.to_thread(edge.get, "/api/v1/workers")
                    w0 = view["workers"][0]
                    if w0["restarts"] >= 1 and w0["on_bus"] and w0["pid"] != pids[0]:
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"worker 0 not restarted:\n{edge.log()}")
                marks = [r.media for r in runs]
                await asyncio.sleep(2)  # watched: media must keep coming meanwhile
                await audience.end()
                still = [r for r, m in zip(runs, marks, strict=True) if r.media > m]
                return on_one, still

            on_one, still = asyncio.run(scenario())
            stalled = [r for r in on_one if r.closed or r.error or r.max_gap > 1.5]
            assert not stalled, f"players on the surviving worker stalled: {stalled[:3]}"
            assert all(r in still for r in on_one)
            logs = edge.log()
            assert "worker 0 (pid" in logs and "restarting in" in logs, logs
            # The killed worker's stream is owned again, by the restarted worker: one link.
            probe_runs = asyncio.run(
                play_all([(edge.url(lost_owner), SOURCES[i % 8]) for i in range(10)], 30, hold=2)
            )
            assert all(r.media >= 3 for r in probe_runs)
            assert edge_plays(nginx, lost_owner) <= 1 and edge_plays(nginx, kept_owner) <= 1
        finally:
            assert edge.stop() == 0, edge.log()


def test_sigterm_tells_every_player_on_every_worker_and_exits_zero(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    with publisher(nginx.url("live", "x")):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="publishing")
        edge = Machine(tmp_path, nginx.rtmp_port).start()

        async def scenario() -> list[PlayerRun]:
            audience = Audience([(edge.url("x"), SOURCES[i % 8]) for i in range(40)])
            runs = audience.runs
            await audience.playing()
            assert sorted(await asyncio.to_thread(edge.players_by_worker)) == [0, 1]
            edge.signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*audience.tasks), timeout=15)
            return runs

        runs = asyncio.run(scenario())
        assert all(Status.PLAY_UNPUBLISH_NOTIFY in r.statuses for r in runs), [
            r.statuses for r in runs if Status.PLAY_UNPUBLISH_NOTIFY not in r.statuses
        ][:3]
        assert edge.proc is not None
        assert edge.proc.wait(timeout=20) == 0, edge.log()


def test_a_flood_of_missing_names_over_both_workers_costs_the_origin_what_one_process_would(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    """30 made-up names, re-played as soon as refused, for 6 s from 8 addresses:
    origin connects per name at most ceil(T / missing_ttl) + 1, and never more than
    max_connects_per_second in any second for the machine."""
    names = [f"made-up-{i}" for i in range(30)]
    seconds, ttl, rate = 6.0, 2.0, 10
    with ConnectCounter(nginx.rtmp_port) as proxy:
        edge = Machine(
            tmp_path,
            proxy.port,
            edge={
                "origins": [f"rtmp://127.0.0.1:{proxy.port}"],
                "missing_ttl": ttl,
                "start_timeout": 1.0,
                "max_connects_per_second": rate,
            },
            limits={
                "ban_after_failures": 100_000,
                "connections_per_second_per_ip": 10_000,
                "max_connections_per_ip": 10_000,
            },
        ).start()
        try:

            async def flood() -> int:
                end = time.monotonic() + seconds
                plays = 0

                async def one(i: int) -> None:
                    nonlocal plays
                    while time.monotonic() < end:
                        run = PlayerRun(SOURCES[i % 8])
                        await play_all_one(run, edge.url(names[i % len(names)]))
                        plays += 1

                await asyncio.gather(*(one(i) for i in range(60)))
                return plays

            plays = asyncio.run(flood())
        finally:
            assert edge.stop() == 0, edge.log()
    per_name = math.ceil(seconds / ttl) + 1
    connects = proxy.count()
    # nginx-rtmp logs each play session it ends, with its name.
    log = (nginx.workdir / "rtmp_access.log").read_text()
    played = Counter(re.findall(r'PLAY "live" "([^"]+)"', log))
    print(
        f"{plays} plays of {len(names)} missing names: {connects} origin connects "
        f"(bound {len(names) * per_name}), at most {max(played.values())} per name ({per_name})"
    )
    assert plays > 10 * len(names)  # the flood really re-opened
    assert connects <= len(names) * per_name
    assert set(played) <= set(names) and max(played.values()) <= per_name, played
    assert proxy.most_within(1.0 - 0.05) <= rate


async def play_all_one(run: PlayerRun, url: str) -> None:
    """One player until it is refused (or 10 s)."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(run.run(url, stop))
    try:
        await asyncio.wait_for(asyncio.shield(task), 10)
    except TimeoutError:
        stop.set()
        await task


def test_the_supervisors_api_answers_its_probes_through_a_slow_header_flood(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    """The machine's one API listener (the supervisor's, over the workers') keeps its
    bounds: 160 slow-header connections from eight other addresses churn only
    themselves, and health probes and the aggregated API from 127.0.0.1 are served."""
    edge = Machine(tmp_path, nginx.rtmp_port).start()
    try:
        flood_sources = [f"127.0.0.{i}" for i in range(20, 28)]
        with SlowHeaderFlood(edge.http_port, flood_sources, 20, tick=0.5) as flood:
            assert flood.started.wait(30)
            answers = [probe(edge.http_port, path) for path in ("/healthz", "/readyz") * 10]
            answers.append(probe(edge.http_port, "/api/v1/workers"))
        assert answers == [200] * len(answers), answers
        assert flood.opened > 0
        counters = edge.metric("streamgate_http_connections_rejected_total")
        counters += edge.metric("streamgate_http_connections_evicted_total")
        assert counters > 0  # the flood met the caps (not the probes)
    finally:
        assert edge.stop() == 0, edge.log()


def test_the_api_answers_for_the_machine(tmp_path: Path, nginx: NginxRtmp) -> None:
    with publisher(nginx.url("live", "x")):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="publishing")
        edge = Machine(tmp_path, nginx.rtmp_port).start()
        try:

            async def scenario() -> None:
                audience = Audience([(edge.url("x"), SOURCES[i % 8]) for i in range(16)])
                runs = audience.runs
                await audience.playing()
                clients = (await asyncio.to_thread(edge.get, "/api/v1/clients"))["clients"]
                mine = {r.peer for r in runs}
                ours = [c for c in clients if c["peer"] in mine]
                assert len(ours) == 16 and {c["worker"] for c in ours} == {0, 1}
                # A kick goes to the worker that holds the client, whichever it is.
                for worker in (0, 1):
                    victim = next(c for c in ours if c["worker"] == worker)
                    status, _ = await asyncio.to_thread(
                        edge.request, "DELETE", f"/api/v1/clients/{victim['id']}"
                    )
                    assert status == 200
                    kicked = next(r for r in runs if r.peer == victim["peer"])
                    end = time.monotonic() + 10
                    while not kicked.closed and time.monotonic() < end:
                        await asyncio.sleep(0.05)
                    assert kicked.closed
                status, _ = await asyncio.to_thread(
                    edge.request, "DELETE", "/api/v1/clients/999999"
                )
                assert status == 404
                # One exposition for the machine: every family once, every sample labelled.
                text = await asyncio.to_thread(edge.text, "/metrics")
                families = {f.name: f for f in text_string_to_metric_families(text)}
                up = families["streamgate_worker_up"].samples
                assert sorted(s.labels["worker"] for s in up) == ["0", "1"]
                assert all(s.value == 1 for s in up)
                streams = (await asyncio.to_thread(edge.get, "/api/v1/streams"))["streams"]
                assert {s["worker"] for s in streams if s.get("name") == "x"} == {0, 1}
                await audience.end()

            asyncio.run(scenario())
        finally:
            assert edge.stop() == 0, edge.log()


def test_an_origin_with_two_workers_serves_every_player_and_holds_one_publisher_per_name(
    tmp_path: Path,
) -> None:
    """ffmpeg publishes to whichever worker the kernel picks; players on both workers
    get it (the other one relays it); a second publisher of the name is refused,
    whichever worker it lands on, and the first one plays on."""
    machine = Machine(tmp_path, None, mode="origin").start()
    try:
        with publisher(machine.url("p")):

            def published() -> bool:
                streams = machine.get("/api/v1/streams")["streams"]
                return any(s["name"] == "p" and s["role"] == "published" for s in streams)

            wait_until(published, timeout=20, what="ffmpeg publishing to the machine")

            async def scenario() -> tuple[list[PlayerRun], list[str]]:
                audience = Audience([(machine.url("p"), SOURCES[i % 8]) for i in range(40)])
                runs = audience.runs
                await audience.playing()
                by_worker = await asyncio.to_thread(machine.players_by_worker)
                assert sorted(by_worker) == [0, 1], by_worker
                # Second publishers of the name, from several addresses: both workers.
                answers = []
                for i in range(8):
                    client = await RtmpClient.open(machine.url("p"), source=SOURCES[i])
                    await client.publish()
                    code = ""
                    try:
                        async with asyncio.timeout(10):
                            while code != Status.PUBLISH_BAD_NAME:
                                event = await client.next_event()
                                if isinstance(event, StatusReceived):
                                    code = event.code
                    except (ConnectionError, TimeoutError):
                        pass
                    answers.append(code)
                    client.close()
                marks = [r.media for r in runs]
                await asyncio.sleep(1.5)  # the first publisher's players keep getting media
                await audience.end()
                assert all(r.media > m for r, m in zip(runs, marks, strict=True))
                return runs, answers

            runs, answers = asyncio.run(scenario())
            assert all(r.media >= 3 for r in runs)
            assert answers == [Status.PUBLISH_BAD_NAME] * 8, answers
    finally:
        assert machine.stop() == 0, machine.log()


def test_a_taken_port_stops_the_machine_with_one_clear_error(tmp_path: Path) -> None:
    machine = Machine(tmp_path, None, mode="origin")
    taken = socket.socket()
    taken.bind(("127.0.0.1", machine.port))
    taken.listen()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "streamgate", "run", "-c", str(machine.config)],
            capture_output=True,
            timeout=60,
            text=True,
        )
    finally:
        taken.close()
    assert result.returncode == 2, result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_machine_on_the_same_port_is_refused_not_merged(
    tmp_path: Path, nginx: NginxRtmp
) -> None:
    """The workers share their port (SO_REUSEPORT); a second machine started on it
    by mistake must fail as one process would, not join the first one's group."""
    first = Machine(tmp_path, nginx.rtmp_port).start()
    try:
        (tmp_path / "second").mkdir()
        second = Machine(tmp_path / "second", nginx.rtmp_port)
        text = second.config.read_text().replace(str(second.port), str(first.port))
        second.config.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "streamgate", "run", "-c", str(second.config)],
            capture_output=True,
            timeout=60,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        assert "already in use" in result.stderr
        assert first.get("/readyz")["ready"] is True
    finally:
        assert first.stop() == 0, first.log()


def test_players_waiting_for_a_publisher_get_it_whatever_worker_it_lands_on(
    tmp_path: Path,
) -> None:
    """On-demand publishing (play_wait): players wait on both workers, then the
    publisher lands on one; the others' waiting players are handed to its relay."""
    machine = Machine(tmp_path, None, mode="origin", origin={"play_wait": 15.0}).start()
    try:

        async def scenario() -> list[PlayerRun]:
            audience = Audience([(machine.url("later"), SOURCES[i % 8]) for i in range(20)])

            def waiting_on_both() -> bool:
                clients = machine.get("/api/v1/clients")["clients"]
                return {c["worker"] for c in clients if c["waiting"]} == {0, 1}

            deadline = time.monotonic() + 20
            while not await asyncio.to_thread(waiting_on_both):
                assert time.monotonic() < deadline, "players not waiting on both workers"
                await asyncio.sleep(0.1)
            with publisher(machine.url("later")):
                await audience.playing(timeout=15)
                return await audience.end()

        runs = asyncio.run(scenario())
        assert all(r.media >= 3 and Status.PLAY_STREAM_NOT_FOUND not in r.statuses for r in runs)
    finally:
        assert machine.stop() == 0, machine.log()


def test_the_page_thumbnails_and_play_urls_of_a_machine(tmp_path: Path) -> None:
    """The supervisor serves the page and signs play URLs itself, and takes a stream's
    thumbnail from the worker holding the publisher, even while the other worker
    relays the stream to its own players."""
    token = "machine-token"
    machine = Machine(
        tmp_path,
        None,
        mode="origin",
        http={"token": token},
        auth={"play": "signed", "keys": {"k1": "machine-play-secret"}},
        flv={"enabled": True, "listen": f"127.0.0.1:{free_port()}"},
    ).start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(path: str, bearer: str | None = token) -> tuple[int, str, bytes]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        request = urllib.request.Request(
            f"http://127.0.0.1:{machine.http_port}{path}", headers=headers
        )
        try:
            with opener.open(request, timeout=10) as reply:
                return reply.status, reply.headers["content-type"], reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["content-type"], exc.read()

    def made() -> dict[str, float]:
        text = fetch("/metrics")[2].decode()
        return {
            s.labels["worker"]: s.value
            for f in text_string_to_metric_families(text)
            if f.name == "streamgate_thumbnails_made"
            for s in f.samples
            if s.name.endswith("_total")
        }

    try:
        assert fetch("/")[0] == 200
        assert fetch("/", bearer=None)[0] == 401  # the token form
        assert fetch("/api/v1/streams/live/p/thumbnail.jpg", bearer=None)[0] == 401
        assert fetch("/static/page.js", bearer=None)[0] == 200
        with publisher(machine.url("p")):

            def holder() -> int | None:
                status, _, body = fetch("/api/v1/streams")
                streams = json.loads(body)["streams"] if status == 200 else []
                for s in streams:
                    if (s["name"], s["role"]) == ("p", "published") and s[
                        "last_keyframe_age_seconds"
                    ] is not None:
                        return int(s["worker"])
                return None

            wait_until(lambda: holder() is not None, timeout=20, what="ffmpeg's keyframe")
            owner = holder()
            assert owner is not None

            async def scenario() -> None:
                signed = json.loads(fetch("/api/v1/streams/live/p/play-urls")[2])["rtmp"]
                audience = Audience([(signed, SOURCES[i % 8]) for i in range(16)])
                await audience.playing()
                clients = json.loads((await asyncio.to_thread(fetch, "/api/v1/clients"))[2])
                by_worker = Counter(
                    c["worker"] for c in clients["clients"] if c.get("role") == "player"
                )
                assert sorted(by_worker) == [0, 1], by_worker  # the other worker relays
                status, kind, jpeg = await asyncio.to_thread(
                    fetch, "/api/v1/streams/live/p/thumbnail.jpg"
                )
                assert (status, kind) == (200, "image/jpeg"), jpeg[:200]
                assert jpeg[:3] == b"\xff\xd8\xff"
                counts = await asyncio.to_thread(made)
                assert counts == {str(owner): 1, str(1 - owner): 0}, counts
                await audience.end()

            asyncio.run(scenario())
            missing = fetch("/api/v1/streams/live/nothing/thumbnail.jpg")
            assert missing[0] == 404 and missing[1] == "application/json"
    finally:
        assert machine.stop() == 0, machine.log()
