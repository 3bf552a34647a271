"""Running the gateway: build the server from settings, serve until told to stop."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal

import anyio

from streamgate.api import ApiServer, start_api
from streamgate.config import Settings, listen_addresses, load_settings
from streamgate.demo import DemoSource, encode_clip
from streamgate.errors import ConfigError
from streamgate.flv.server import FlvServer
from streamgate.log import flush_floods
from streamgate.server.context import ServerContext
from streamgate.server.listener import RtmpServer
from streamgate.workers.worker import WorkerRole, api_socket

__all__ = ["reload", "run", "serve"]

log = logging.getLogger("streamgate")


def _hints(
    settings: Settings, port: int, api_port: int | None = None, flv_port: int | None = None
) -> str:
    host = listen_addresses(settings.rtmp.listen)[0][0]
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only for the printed hint
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 address in a URL
    base = f"rtmp://{host}:{port}/live"
    api = ""
    if api_port is not None:
        http_host = listen_addresses(settings.http.listen)[0][0]
        if ":" in http_host:
            http_host = f"[{http_host}]"
        http = f"http://{http_host}:{api_port}"
        api = f"\n  api:     curl {http}/api/v1/streams   metrics: curl {http}/metrics"
        api += f"\n  page:    {http}/   (streams, thumbnails, players; the API token if set)"
    if flv_port is not None:
        flv_host = listen_addresses(settings.flv.listen)[0][0]
        if flv_host in ("0.0.0.0", "::", ""):  # noqa: S104 - only for the printed hint
            flv_host = "127.0.0.1"
        elif ":" in flv_host:
            flv_host = f"[{flv_host}]"
        api += f"\n  browser: http://{flv_host}:{flv_port}/live/<stream>.flv (or ws://)"
    if settings.rtmp.tls_listen is not None:
        tls_host, tls_port = listen_addresses(settings.rtmp.tls_listen)[0]
        api += f"\n  rtmps:   port {tls_port} on {tls_host or '*'} (see docs/tls.md)"
    if settings.mode == "edge":
        return (
            f"streamgate edge ready on {host}:{port}, pulling from "
            f"{', '.join(settings.edge.origins)}\n"
            f"  play:    ffplay {base}/<stream published on the origin>\n"
            f"  probe:   ffprobe {base}/<stream>{api}"
        )
    demo = ""
    if settings.demo.enabled:
        url = f"rtmp://{host}:{port}/{settings.demo.app}/{settings.demo.name}"
        demo = f"  demo:    ffplay {url}   (a test pattern with a tone)\n"
    return (
        f"streamgate {settings.mode} ready on {host}:{port}\n"
        f"{demo}"
        f"  publish: ffmpeg -re -f lavfi -i testsrc2=size=640x360:rate=30 "
        f"-f lavfi -i sine=frequency=440 -c:v libx264 -preset veryfast -tune zerolatency "
        f"-g 60 -c:a aac -f flv {base}/mystream\n"
        f"  play:    ffplay {base}/mystream\n"
        f"  probe:   ffprobe {base}/mystream{api}"
    )


def reload(ctx: ServerContext) -> list[str]:
    """Re-read the configuration file and apply it in place (SIGHUP, the API).

    Returns the changed settings that need a restart. An invalid file is
    reported and changes nothing.
    """
    path = ctx.config_path
    if path is None:
        raise ConfigError("no configuration file to reload")
    settings = load_settings(path)
    restart = ctx.apply(settings)
    log.info("configuration reloaded from %s", path)
    for item in restart:
        log.warning("reload: %s changed; it takes effect after a restart", item)
    return restart


async def _start_demo(ctx: ServerContext) -> DemoSource | None:
    """Encode the demo clip off the loop, then loop it into the hub."""
    demo = ctx.settings.demo
    try:
        clip = await asyncio.to_thread(
            encode_clip, demo.seconds, demo.size, demo.rate, demo.bitrate
        )
    except Exception as exc:  # a missing encoder must not stop the gateway
        log.warning("demo source disabled: could not encode the clip: %s", exc)
        return None
    source = DemoSource(ctx.hub, ctx.hub.clock, clip)
    source.start(demo.app, demo.name)
    return source


async def serve(
    settings: Settings,
    *,
    config_path: str | None = None,
    ready: anyio.Event | None = None,
    worker: WorkerRole | None = None,
) -> None:
    """Serve until cancelled or SIGINT/SIGTERM; SIGHUP reloads the configuration.

    ``worker``: this process is one worker of several (see :mod:`streamgate.workers`).
    """
    loop = asyncio.get_running_loop()
    if worker is None:
        for warning in settings.warnings():
            log.warning("configuration: %s", warning)
    ctx = ServerContext.build(settings, loop)
    ctx.config_path = config_path
    if worker is not None:
        worker.attach(ctx)
        await worker.join(ctx)  # the machine's bans before the first player
    server = RtmpServer(ctx, reuse_port=worker is not None)
    await server.start()
    flv: FlvServer | None = None
    if settings.flv.enabled:
        flv = FlvServer(ctx, reuse_port=worker is not None)
        try:
            await flv.start()
        except BaseException:
            await server.close()
            raise
    if ctx.cluster is not None:
        ctx.cluster.start()  # in the background: a play never waits on Redis
    if worker is not None:
        await worker.start(ctx)  # after the cluster: the bus goes first to its listeners

    def reload_all() -> list[str]:
        restart = reload(ctx)
        if worker is not None:
            worker.configure(ctx)
        return restart

    api: ApiServer | None = None
    demo: DemoSource | None = None
    try:
        api = await start_api(  # None when [http] enabled = false
            ctx,
            listening=lambda: server.serving,
            reload=reload_all,
            unix_path=api_socket(worker.run_dir, worker.id) if worker is not None else None,
        )
        if settings.demo.enabled and settings.mode == "origin":
            demo = await _start_demo(ctx)
        if worker is None:
            api_port = api.port if api is not None else None
            flv_port = flv.port if flv is not None else None
            print(_hints(settings, server.port, api_port, flv_port), flush=True)
        if ready is not None:
            ready.set()
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        reload_all()
                    except ConfigError as exc:
                        log.error(
                            "reload failed, keeping the running configuration:\n%s", exc.description
                        )
                    continue
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
    finally:
        if demo is not None:
            demo.close()
        with anyio.CancelScope(shield=True):
            if api is not None:
                await api.close()  # before the RTMP listener closes
            if flv is not None:
                flv.stop_accepting()
            if worker is not None:
                await worker.close()  # its relayed streams end (their players told)
            await server.close()  # every client, HTTP viewers too, told and drained
            if flv is not None:
                await flv.close()
            if ctx.cluster is not None:
                await ctx.cluster.close()
        # Counts still held back (a flood that just ended, the connections
        # closed above) are written before the process goes.
        flush_floods()


def run(
    settings: Settings, config_path: str | None = None, worker: WorkerRole | None = None
) -> None:
    """Run the gateway: one process, or (``[rtmp] workers`` > 1) a supervisor of workers."""
    if worker is None and settings.rtmp.worker_count > 1:
        from streamgate.workers.supervisor import supervise

        if config_path is None:
            raise ConfigError("[rtmp] workers > 1 needs a configuration file (-c)")
        supervise(settings, config_path)
        return
    anyio.run(
        functools.partial(serve, settings, config_path=config_path, worker=worker),
        backend="asyncio",
        backend_options={"use_uvloop": True},
    )
