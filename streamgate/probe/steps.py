"""The probe's steps, in the order they run, each with its own timeout.

``dns`` -> ``tcp`` -> ``tls`` (rtmps only) -> ``handshake`` -> ``connect`` ->
``play`` -> ``media`` -> ``keyframe`` -> ``codecs``. Each step is one
``step_<name>`` function that returns a :class:`Done` or raises
:class:`StepFailed` carrying the one-line diagnosis; :func:`run_probe` runs
them in order, times them and stops at the first failure.

The RTMP conversation goes through the sans-IO
:class:`~streamgate.rtmp.connection.ClientConnection`; :class:`_Run` is the
thin adapter between it and an asyncio stream (plain or TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from streamgate.errors import ProtocolError
from streamgate.probe.tls import (
    client_context,
    describe_certificate,
    explain_ssl_error,
    explain_verify_error,
    unverified_context,
)
from streamgate.probe.watch import MediaWatch
from streamgate.probe.x509 import CertificateInfo, X509Error, parse_certificate
from streamgate.rtmp.connection import ClientConnection, ConnectionLimits, ConnState
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    DataReceived,
    Event,
    MediaReceived,
    StatusReceived,
    StreamCreated,
    StreamEnded,
)
from streamgate.rtmp.messages import Status

__all__ = [
    "STEP_NAMES",
    "Done",
    "ProbeOptions",
    "ProbeReport",
    "ProbeTarget",
    "StepFailed",
    "StepResult",
    "explain_dns_error",
    "parse_target",
    "run_probe",
]

DEFAULT_PORTS: Final = {"rtmp": 1935, "rtmps": 443}
_READ_SIZE: Final = 65536

# Statuses after which a played stream delivers nothing more.
_STREAM_OVER: Final = frozenset(
    {Status.PLAY_STOP, Status.PLAY_UNPUBLISH_NOTIFY, Status.PLAY_FAILED}
)


# --------------------------------------------------------------------- target and options


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """``rtmp[s]://host[:port]/app/stream[?query]``, the app being the first path segment."""

    scheme: str
    host: str
    port: int
    app: str
    name: str

    @property
    def tls(self) -> bool:
        return self.scheme == "rtmps"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tc_url(self) -> str:
        return f"{self.scheme}://{self._netloc}/{self.app}"

    def __str__(self) -> str:
        return f"{self.tc_url}/{self.name}"


def parse_target(url: str) -> ProbeTarget:
    """Parse a probe URL; raises ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r}: the URL must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    app, _, name = parts.path.lstrip("/").partition("/")
    if not app or not name:
        raise ValueError(f"{url!r}: expected /app/stream after the host")
    if parts.query:
        name = f"{name}?{parts.query}"
    return ProbeTarget(parts.scheme, parts.hostname, port, app, name)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    timeout: float = 5.0
    """Seconds each network step may take (per address for ``tcp``)."""
    media_timeout: float = 5.0
    """Seconds from Play.Start to the first media, and from it to the first keyframe."""
    insecure: bool = False
    """Skip certificate verification (rtmps)."""
    cafile: str | None = None
    """Trust only the CA certificates in this PEM file instead of the system store."""


# --------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    ok: bool
    ms: float
    detail: str
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "ms": round(self.ms, 1),
            "detail": self.detail,
            "info": self.info,
        }


@dataclass(slots=True)
class ProbeReport:
    target: str
    steps: list[StepResult] = field(default_factory=list)
    ok: bool = False
    diagnosis: str = ""
    insecure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.target,
            "ok": self.ok,
            "diagnosis": self.diagnosis,
            "tls_verified": not self.insecure,
            "steps": [step.as_dict() for step in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Done:
    """A step passed: what to print, and the same facts for ``--json``."""

    detail: str
    info: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """A step failed: ``diagnosis`` is the one line the operator reads."""

    def __init__(
        self, diagnosis: str, detail: str | None = None, info: dict[str, Any] | None = None
    ) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.detail = detail if detail is not None else diagnosis
        self.info = info or {}


class _PeerClosed(Exception):
    """The server closed (or reset) the connection."""


# --------------------------------------------------------------------- the adapter


class _Run:
    """State shared by the steps of one probe, and the I/O adapter of its connection."""

    def __init__(self, target: ProbeTarget, options: ProbeOptions) -> None:
        self.target = target
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.addresses: list[tuple[int, tuple[Any, ...]]] = []
        self.peer: tuple[int, tuple[Any, ...]] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn = ClientConnection(
            target.tc_url,
            target.app,
            # We keep our own step deadlines; the core's must not fire first.
            ConnectionLimits(handshake_timeout=3600.0, command_timeout=3600.0),
        )
        self.received = bytearray()  # the first bytes from the server, for sniffing
        self.pending: deque[tuple[float, Event]] = deque()
        self.event_at = 0.0  # loop time at which the last event from next_event() arrived
        self.stream_id = 0
        self.statuses: list[str] = []
        self.watch: MediaWatch | None = None

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.writer is not None and not self.writer.is_closing():
            self.writer.write(out)

    async def receive_once(self) -> None:
        """Read once, feed the core, queue its events; raises _PeerClosed at the end."""
        assert self.reader is not None
        try:
            data = await self.reader.read(_READ_SIZE)
        except (ConnectionError, ssl.SSLError) as exc:
            raise _PeerClosed(str(exc)) from None
        if not data:
            raise _PeerClosed("connection closed by the server")
        if len(self.received) < 16:
            self.received += data[:16]
        events = self.conn.receive_data(data)  # ProtocolError: handled by run_probe
        self.flush()
        now = self.loop.time()
        for event in events:
            if self.watch is not None and isinstance(event, MediaReceived | DataReceived):
                self.watch.feed(event, now)
            self.pending.append((now, event))

    async def next_event(self) -> Event:
        while not self.pending:
            await self.receive_once()
        self.event_at, event = self.pending.popleft()
        return event

    async def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        if writer.is_closing():  # e.g. a failed start_tls: nothing will report the close
            return
        writer.close()
        with contextlib.suppress(Exception):  # a TLS goodbye may hang or fail: we are done
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


def _where(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# --------------------------------------------------------------------- step: dns


def explain_dns_error(exc: socket.gaierror, host: str) -> str:
    """The diagnosis for a failed lookup."""
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return f"DNS: no such host {host!r}"
    if exc.errno == socket.EAI_AGAIN:
        return f"DNS: temporary failure resolving {host!r} (resolver unreachable or slow)"
    return f"DNS: cannot resolve {host!r}: {exc.strerror or exc}"


async def step_dns(run: _Run) -> Done:
    """Resolve the host name to the addresses ``tcp`` will try, in order."""
    host, port, timeout = run.target.host, run.target.port, run.options.timeout
    try:
        async with asyncio.timeout(timeout):
            infos = await run.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise StepFailed(f"DNS: no answer for {host!r} in {timeout:g} s") from None
    except socket.gaierror as exc:
        raise StepFailed(explain_dns_error(exc, host)) from None
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in run.addresses:
            run.addresses.append((family, sockaddr))
    shown = [str(sockaddr[0]) for _family, sockaddr in run.addresses]
    try:
        ipaddress.ip_address(host)
        detail = f"{host} is an address, no lookup"
    except ValueError:
        detail = f"{host} -> {', '.join(shown)}"
    return Done(detail, {"addresses": shown})


# --------------------------------------------------------------------- step: tcp


async def step_tcp(run: _Run) -> Done:
    """Connect to each resolved address in turn until one accepts."""
    timeout = run.options.timeout
    failures: list[str] = []
    kinds: set[str] = set()
    for family, sockaddr in run.addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        where = _where(sockaddr)
        try:
            async with asyncio.timeout(timeout):
                await run.loop.sock_connect(sock, sockaddr)
        except TimeoutError:
            sock.close()
            kinds.add("timeout")
            failures.append(f"{where} timed out after {timeout:g} s")
            continue
        except ConnectionRefusedError:
            sock.close()
            kinds.add("refused")
            failures.append(f"{where} refused")
            continue
        except OSError as exc:
            sock.close()
            kinds.add("other")
            failures.append(f"{where}: {exc.strerror or exc}")
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        run.reader, run.writer = await asyncio.open_connection(sock=sock)
        run.peer = (family, sockaddr)
        local = _where(sock.getsockname())
        detail = f"connected to {where} from {local}"
        if failures:
            detail += f" (after: {'; '.join(failures)})"
        return Done(detail, {"address": where, "local": local, "failed": failures})
    targets = ", ".join(_where(sockaddr) for _f, sockaddr in run.addresses)
    if kinds == {"refused"}:
        diagnosis = (
            f"connection refused by {targets}: nothing listens there (or a firewall rejects)"
        )
    elif kinds == {"timeout"}:
        diagnosis = (
            f"TCP connect to {targets} timed out after {timeout:g} s: host down or a "
            "firewall drops the packets"
        )
    else:
        diagnosis = f"cannot connect: {'; '.join(failures)}"
    raise StepFailed(diagnosis, info={"failed": failures})


# --------------------------------------------------------------------- step: tls


async def _fetch_certificate(run: _Run) -> CertificateInfo | None:
    """The server's certificate over a second, unverified connection (for the diagnosis)."""
    if run.peer is None:
        return None
    family, sockaddr = run.peer
    writer = None
    try:
        async with asyncio.timeout(run.options.timeout):
            _reader, writer = await asyncio.open_connection(
                str(sockaddr[0]),
                int(sockaddr[1]),
                family=family,
                ssl=unverified_context(),
                server_hostname=run.target.host,
            )
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return parse_certificate(der) if der else None
    except (OSError, TimeoutError, X509Error):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


async def step_tls(run: _Run) -> Done:
    """TLS handshake: chain, dates and host name verified unless --insecure."""
    assert run.writer is not None
    host, options = run.target.host, run.options
    try:
        context = client_context(insecure=options.insecure, cafile=options.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise StepFailed(f"TLS: cannot load --ca {options.cafile}: {exc}") from None
    try:
        async with asyncio.timeout(options.timeout):
            await run.writer.start_tls(context, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        cert = await _fetch_certificate(run)
        now = datetime.now(UTC)
        code, message = exc.verify_code, exc.verify_message
        diagnosis = explain_verify_error(code, message, cert, host, now)
        info: dict[str, Any] = {"verify_code": code, "verify_message": message}
        if cert is not None:
            info["certificate"] = _cert_info(cert)
        raise StepFailed(diagnosis, info=info) from None
    except ssl.SSLError as exc:
        info = {"reason": getattr(exc, "reason", None)}
        raise StepFailed(explain_ssl_error(exc), info=info) from None
    except TimeoutError:
        raise StepFailed(
            f"TLS: no answer to the TLS handshake in {options.timeout:g} s "
            "(is this a plain rtmp:// port?)"
        ) from None
    except ConnectionError:
        raise StepFailed(
            "TLS: the server closed the connection during the TLS handshake (a plain "
            "rtmp:// port, no TLS version or cipher in common, or it refused us)"
        ) from None
    ssl_object = run.writer.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "?"
    parts = [version]
    if cipher is not None:
        parts.append(f"{cipher[0]} ({cipher[2]} bits)")
    info = {"version": version, "cipher": cipher[0] if cipher else None}
    der = ssl_object.getpeercert(binary_form=True)
    peer: CertificateInfo | None = None
    with contextlib.suppress(X509Error):
        peer = parse_certificate(der) if der else None
    if peer is not None:
        parts.append(describe_certificate(peer, datetime.now(UTC)))
        parts.append(f"names {peer.names}")
        info["certificate"] = _cert_info(peer)
    if options.insecure:
        parts.insert(0, "WARNING: certificate NOT verified (--insecure)")
    else:
        trust = f"CA file {options.cafile}" if options.cafile else "system trust store"
        parts.append(f"chain and host name verified ({trust})")
    info["verified"] = not options.insecure
    return Done("; ".join(parts), info)


def _cert_info(cert: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "dns_names": list(cert.dns_names),
        "ip_addresses": list(cert.ip_addresses),
    }


# --------------------------------------------------------------------- step: handshake


def _sniff(data: bytes) -> str:
    """What non-RTMP bytes from the server look like, if we can tell."""
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "the server answered with TLS: use rtmps://"
    if data.startswith(b"HTTP/"):
        return "the server answered with HTTP: not an RTMP port"
    if data.startswith((b"SSH-", b"220 ")):
        return "the server is not an RTMP server (it sent a text banner)"
    return ""


async def step_handshake(run: _Run) -> Done:
    """RTMP handshake: C0+C1 out, S0+S1+S2 back, C2 out."""
    timeout = run.options.timeout
    run.flush()  # C0 + C1, queued by the core when it was made
    try:
        async with asyncio.timeout(timeout):
            while run.conn.state is ConnState.HANDSHAKE:
                await run.receive_once()
    except TimeoutError:
        got = len(run.received)
        hint = _sniff(bytes(run.received))
        if hint:
            raise StepFailed(hint) from None
        if not got:
            raise StepFailed(
                f"TCP accepted but no RTMP handshake answer in {timeout:g} s: not an RTMP "
                "server, or it is overloaded"
            ) from None
        raise StepFailed(f"RTMP handshake incomplete after {timeout:g} s") from None
    except _PeerClosed:
        hint = _sniff(bytes(run.received))
        raise StepFailed(
            hint
            or "the server closed the connection during the RTMP handshake (not an RTMP "
            "port, or a TLS port: try rtmps://)"
        ) from None
    except ProtocolError as exc:
        hint = _sniff(bytes(run.received))
        raise StepFailed(hint or f"RTMP handshake failed: {exc.description}") from None
    return Done("RTMP version 3: S0+S1+S2 received, C2 sent")


# --------------------------------------------------------------------- step: connect


async def step_connect(run: _Run) -> Done:
    """NetConnection ``connect`` to the app."""
    timeout, app = run.options.timeout, run.target.app
    run.conn.connect()
    run.flush()
    connected: Connected | None = None
    try:
        async with asyncio.timeout(timeout):
            while connected is None:
                event = await run.next_event()
                if isinstance(event, Connected):
                    connected = event
                elif isinstance(event, ConnectRejected):
                    text = f"{event.code}: {event.description}" if event.description else event.code
                    diagnosis = f"connect rejected by the server: {text}"
                    if event.redirect:
                        diagnosis += f"; redirect to {event.redirect}"
                    info = {"code": event.code, "description": event.description}
                    if event.redirect:
                        info["redirect"] = event.redirect
                    raise StepFailed(diagnosis, info=info)
    except TimeoutError:
        raise StepFailed(f"no answer to connect (app {app!r}) in {timeout:g} s") from None
    except _PeerClosed:
        raise StepFailed(
            f"the server closed the connection in answer to connect (app {app!r} unknown, "
            "or access denied)"
        ) from None
    fms = connected.properties.get("fmsVer")
    code = connected.info.get("code") or "connected"
    detail = f"{code}; server {fms}" if isinstance(fms, str) and fms else str(code)
    return Done(detail, {"code": code, "fmsVer": fms if isinstance(fms, str) else None})


# --------------------------------------------------------------------- step: play


def _status_text(event: StatusReceived) -> str:
    return f"{event.code} ({event.description})" if event.description else event.code


async def step_play(run: _Run) -> Done:
    """``createStream`` then ``play``; passes on NetStream.Play.Start (or early media)."""
    timeout, name = run.options.timeout, run.target.name
    run.conn.create_stream()
    run.flush()
    try:
        async with asyncio.timeout(timeout):
            while not run.stream_id:
                event = await run.next_event()
                if isinstance(event, StreamCreated):
                    run.stream_id = event.stream_id
                elif isinstance(event, StatusReceived) and event.level == "error":
                    raise StepFailed(f"createStream refused: {_status_text(event)}")
    except TimeoutError:
        raise StepFailed(f"no answer to createStream in {timeout:g} s") from None
    except _PeerClosed:
        raise StepFailed("the server closed the connection in answer to createStream") from None

    run.watch = MediaWatch(run.loop.time())
    run.conn.play(run.stream_id, name)
    run.flush()
    try:
        async with asyncio.timeout(timeout):
            while True:
                if not run.pending and run.watch.media_arrived:  # no Play.Start, but media
                    run.statuses.append("(media before any Play.Start)")
                    break
                event = await run.next_event()
                if not isinstance(event, StatusReceived):
                    continue
                run.statuses.append(event.code)
                if event.code == Status.PLAY_START:
                    run.watch.start = run.event_at
                    break
                if event.code == Status.PLAY_STREAM_NOT_FOUND:
                    raise StepFailed(
                        f"stream not found: the server answered play with {_status_text(event)}",
                        info={"codes": run.statuses},
                    )
                if event.level == "error" or event.code in _STREAM_OVER:
                    raise StepFailed(
                        f"play refused: {_status_text(event)}", info={"codes": run.statuses}
                    )
    except TimeoutError:
        raise StepFailed(
            f"no answer to play in {timeout:g} s (the server may hold plays of a stream that "
            "is not published yet)",
            info={"codes": run.statuses},
        ) from None
    except _PeerClosed:
        raise StepFailed(
            f"the server closed the connection in answer to play of {name!r}",
            info={"codes": run.statuses},
        ) from None
    return Done(
        f"stream id {run.stream_id}; {', '.join(run.statuses)}",
        {"stream_id": run.stream_id, "codes": list(run.statuses)},
    )


# --------------------------------------------------------------------- steps: media, keyframe


def _ended(event: Event, stream_id: int) -> str | None:
    """Why the played stream is over, if this event says it is."""
    if isinstance(event, StreamEnded) and event.stream_id == stream_id:
        return "StreamEOF"
    if isinstance(event, StatusReceived) and (event.code in _STREAM_OVER or event.level == "error"):
        return _status_text(event)
    return None


async def _wait_media(run: _Run, until: Callable[[MediaWatch], bool], deadline: float) -> None:
    """Read until ``until(watch)`` holds; TimeoutError at ``deadline`` (loop time)."""
    watch = run.watch
    assert watch is not None
    async with asyncio.timeout_at(deadline):
        while not until(watch):
            event = await run.next_event()
            reason = _ended(event, run.stream_id)
            if reason is not None and not until(watch):
                raise StepFailed(f"the stream ended ({reason}) before {_waiting_for(watch)}")


def _waiting_for(watch: MediaWatch) -> str:
    return "the first keyframe" if watch.media_arrived else "any media"


async def step_media(run: _Run) -> Done:
    """The first audio or video message after Play.Start."""
    watch = run.watch
    assert watch is not None
    media_timeout = run.options.media_timeout
    try:
        await _wait_media(run, lambda w: w.media_arrived, watch.start + media_timeout)
    except TimeoutError:
        raise StepFailed(
            f"origin accepted play but sent no media in {media_timeout:g} s: stream missing or idle"
        ) from None
    except _PeerClosed:
        raise StepFailed(
            "the server closed the connection after accepting play, without sending media"
        ) from None
    ms = watch.ms_since_start(watch.first_media_at)
    parts = [f"first {watch.first_media_kind} {ms} ms after Play.Start"]
    summary = watch.metadata_summary()
    if summary:
        parts.append(summary)
    return Done("; ".join(parts), {"kind": watch.first_media_kind, "metadata": watch.metadata})


async def step_keyframe(run: _Run) -> Done:
    """The first video keyframe (none is awaited for an audio-only stream)."""
    watch = run.watch
    assert watch is not None and watch.first_media_at is not None
    media_timeout = run.options.media_timeout
    if not watch.keyframe_arrived and watch.announced_audio_only:
        return Done("audio-only stream (onMetaData announces no video)", {"audio_only": True})
    try:
        await _wait_media(
            run,
            lambda w: w.keyframe_arrived or (w.announced_audio_only and not w.video_messages),
            watch.first_media_at + media_timeout,
        )
    except TimeoutError:
        video, audio = watch.video_messages, watch.audio_messages
        if not video and not watch.announced_video:
            return Done(f"no video in {media_timeout:g} s: audio-only stream", {"audio_only": True})
        if not video:
            raise StepFailed(
                f"audio arrived but no video in {media_timeout:g} s although onMetaData "
                "announces video"
            ) from None
        raise StepFailed(
            f"media arrived ({video} video, {audio} audio messages) but no keyframe in "
            f"{media_timeout:g} s: the keyframe interval is longer, or the encoder sends none"
        ) from None
    except _PeerClosed:
        raise StepFailed("the server closed the connection before the first keyframe") from None
    if not watch.keyframe_arrived:
        return Done("audio-only stream (onMetaData announces no video)", {"audio_only": True})
    ms = watch.ms_since_start(watch.first_keyframe_at)
    return Done(f"first keyframe {ms} ms after Play.Start", {"ms_after_play_start": ms})


# --------------------------------------------------------------------- step: codecs


async def step_codecs(run: _Run) -> Done:
    """Codecs, resolution and sample rate from the sequence headers seen so far."""
    watch = run.watch
    assert watch is not None
    parts = [watch.codecs(), *(f"warning: {w}" for w in watch.warnings())]
    return Done("; ".join(parts), watch.info())


# --------------------------------------------------------------------- the runner

Step = Callable[[_Run], Awaitable[Done]]

_STEPS: Final[tuple[tuple[str, Step], ...]] = (
    ("dns", step_dns),
    ("tcp", step_tcp),
    ("tls", step_tls),
    ("handshake", step_handshake),
    ("connect", step_connect),
    ("play", step_play),
    ("media", step_media),
    ("keyframe", step_keyframe),
    ("codecs", step_codecs),
)
STEP_NAMES: Final = tuple(name for name, _step in _STEPS)


def _success_line(run: _Run) -> str:
    watch = run.watch
    assert watch is not None
    line = f"media arrived: {watch.codecs()}"
    if watch.keyframe_arrived:
        ms = watch.ms_since_start(watch.first_keyframe_at)
        line += f"; first keyframe {ms} ms after Play.Start"
    if run.target.tls and run.options.insecure:
        line += " (WARNING: TLS certificate NOT verified, --insecure)"
    return line


async def run_probe(
    target: ProbeTarget,
    options: ProbeOptions | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> ProbeReport:
    """Run the steps in order; the report's ``ok`` is true only if media arrived."""
    options = options or ProbeOptions()
    run = _Run(target, options)
    report = ProbeReport(str(target), insecure=target.tls and options.insecure)
    try:
        for name, step in _STEPS:
            if name == "tls" and not target.tls:
                continue
            started = time.perf_counter()
            try:
                done = await step(run)
            except StepFailed as failure:
                result = StepResult(name, False, _elapsed(started), failure.detail, failure.info)
                report.diagnosis = failure.diagnosis
            except ProtocolError as exc:
                detail = f"protocol error from the server during {name}: {exc.description}"
                result = StepResult(name, False, _elapsed(started), detail)
                report.diagnosis = detail
            except _PeerClosed as exc:
                detail = f"the server closed the connection during {name} ({exc})"
                result = StepResult(name, False, _elapsed(started), detail)
                report.diagnosis = detail
            else:
                result = StepResult(name, True, _elapsed(started), done.detail, done.info)
            report.steps.append(result)
            if on_step is not None:
                on_step(result)
            if not result.ok:
                return report
        report.ok = True
        report.diagnosis = _success_line(run)
        return report
    finally:
        await run.close()


def _elapsed(started: float) -> float:
    return (time.perf_counter() - started) * 1000
