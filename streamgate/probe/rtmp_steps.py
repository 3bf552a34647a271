"""The probe's RTMP steps, over the one asyncio client.

``handshake`` -> ``connect`` -> ``play`` -> ``media`` -> ``keyframe`` ->
``codecs``. Each ``step_<name>`` returns a :class:`~streamgate.probe.report.Done`
or raises :class:`~streamgate.probe.report.StepFailed`. What a status means
(``PlayStarted``, ``PlayRefused``, ``PlayEnded``) comes from the core; the
steps only word the diagnosis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streamgate.errors import ProtocolError
from streamgate.probe.report import Done, PeerClosed, StepFailed
from streamgate.probe.session import ProbeRun
from streamgate.probe.watch import MediaWatch
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    Event,
    PlayEnded,
    PlayRefused,
    PlayStarted,
    StatusReceived,
    StreamCreated,
    StreamCreateFailed,
)
from streamgate.rtmp.messages import Status

__all__ = [
    "step_codecs",
    "step_connect",
    "step_handshake",
    "step_keyframe",
    "step_media",
    "step_play",
]


def _sniff(data: bytes) -> str:
    """What non-RTMP bytes from the server look like, if we can tell."""
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "the server answered with TLS: use rtmps://"
    if data.startswith(b"HTTP/"):
        return "the server answered with HTTP: not an RTMP port"
    if data.startswith((b"SSH-", b"220 ")):
        return "the server is not an RTMP server (it sent a text banner)"
    return ""


async def step_handshake(run: ProbeRun) -> Done:
    """RTMP handshake: C0+C1 out, S0+S1+S2 back, C2 out."""
    timeout = run.options.timeout
    if run.sock is not None:  # plain rtmp: nothing runs over the socket yet
        await run.attach()  # C0 + C1 go out at once
    try:
        async with asyncio.timeout(timeout):
            await run.handshake()
    except TimeoutError:
        got = len(run.received)
        hint = _sniff(run.received)
        if hint:
            raise StepFailed(hint) from None
        if not got:
            raise StepFailed(
                f"TCP accepted but no RTMP handshake answer in {timeout:g} s: not an RTMP "
                "server, or it is overloaded"
            ) from None
        raise StepFailed(f"RTMP handshake incomplete after {timeout:g} s") from None
    except PeerClosed:
        hint = _sniff(run.received)
        raise StepFailed(
            hint
            or "the server closed the connection during the RTMP handshake (not an RTMP "
            "port, or a TLS port: try rtmps://)"
        ) from None
    except ProtocolError as exc:
        hint = _sniff(run.received)
        raise StepFailed(hint or f"RTMP handshake failed: {exc.description}") from None
    return Done("RTMP version 3: S0+S1+S2 received, C2 sent")


# --------------------------------------------------------------------- step: connect


async def step_connect(run: ProbeRun) -> Done:
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
    except PeerClosed:
        raise StepFailed(
            f"the server closed the connection in answer to connect (app {app!r} unknown, "
            "or access denied)"
        ) from None
    fms = connected.properties.get("fmsVer")
    code = connected.info.get("code") or "connected"
    detail = f"{code}; server {fms}" if isinstance(fms, str) and fms else str(code)
    return Done(detail, {"code": code, "fmsVer": fms if isinstance(fms, str) else None})


# --------------------------------------------------------------------- step: play


def _status_text(event: PlayRefused | PlayEnded | StreamCreateFailed) -> str:
    return f"{event.code} ({event.description})" if event.description else event.code


async def step_play(run: ProbeRun) -> Done:
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
                elif isinstance(event, StreamCreateFailed):
                    raise StepFailed(f"createStream refused: {_status_text(event)}")
    except TimeoutError:
        raise StepFailed(f"no answer to createStream in {timeout:g} s") from None
    except PeerClosed:
        raise StepFailed("the server closed the connection in answer to createStream") from None

    watch = run.client.watch = MediaWatch(run.loop.time())
    run.conn.play(run.stream_id, name)
    run.flush()
    try:
        async with asyncio.timeout(timeout):
            while True:
                if not run.client.pending() and watch.media_arrived:  # no Play.Start, but media
                    run.statuses.append("(media before any Play.Start)")
                    run.conn.note_media(run.stream_id)
                    break
                event = await run.next_event()
                if isinstance(event, StatusReceived):
                    run.statuses.append(event.code)  # every code, for the report
                elif isinstance(event, PlayStarted):
                    watch.start = run.event_at
                    break
                elif isinstance(event, PlayRefused):
                    if event.code == Status.PLAY_STREAM_NOT_FOUND:
                        raise StepFailed(
                            "stream not found: the server answered play with "
                            f"{_status_text(event)}",
                            info={"codes": run.statuses},
                        )
                    raise StepFailed(
                        f"play refused: {_status_text(event)}", info={"codes": run.statuses}
                    )
                elif isinstance(event, PlayEnded):
                    raise StepFailed(
                        f"play refused: {_status_text(event)}", info={"codes": run.statuses}
                    )
    except TimeoutError:
        raise StepFailed(
            f"no answer to play in {timeout:g} s (the server may hold plays of a stream that "
            "is not published yet)",
            info={"codes": run.statuses},
        ) from None
    except PeerClosed:
        raise StepFailed(
            f"the server closed the connection in answer to play of {name!r}",
            info={"codes": run.statuses},
        ) from None
    return Done(
        f"stream id {run.stream_id}; {', '.join(run.statuses)}",
        {"stream_id": run.stream_id, "codes": list(run.statuses)},
    )


# --------------------------------------------------------------------- steps: media, keyframe


def _ended(event: Event) -> str | None:
    """Why the played stream is over, if this event says it is (the core decides)."""
    if isinstance(event, PlayEnded | PlayRefused):
        return _status_text(event)
    return None


async def _wait_media(run: ProbeRun, until: Callable[[MediaWatch], bool], deadline: float) -> None:
    """Read until ``until(watch)`` holds; TimeoutError at ``deadline`` (loop time)."""
    watch = run.watch
    assert watch is not None
    async with asyncio.timeout_at(deadline):
        while not until(watch):
            event = await run.next_event()
            reason = _ended(event)
            if reason is not None and not until(watch):
                raise StepFailed(f"the stream ended ({reason}) before {_waiting_for(watch)}")


def _waiting_for(watch: MediaWatch) -> str:
    return "the first keyframe" if watch.media_arrived else "any media"


async def step_media(run: ProbeRun) -> Done:
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
    except PeerClosed:
        raise StepFailed(
            "the server closed the connection after accepting play, without sending media"
        ) from None
    ms = watch.ms_since_start(watch.first_media_at)
    parts = [f"first {watch.first_media_kind} {ms} ms after Play.Start"]
    summary = watch.metadata_summary()
    if summary:
        parts.append(summary)
    return Done("; ".join(parts), {"kind": watch.first_media_kind, "metadata": watch.metadata})


async def step_keyframe(run: ProbeRun) -> Done:
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
    except PeerClosed:
        raise StepFailed("the server closed the connection before the first keyframe") from None
    if not watch.keyframe_arrived:
        return Done("audio-only stream (onMetaData announces no video)", {"audio_only": True})
    ms = watch.ms_since_start(watch.first_keyframe_at)
    return Done(f"first keyframe {ms} ms after Play.Start", {"ms_after_play_start": ms})


# --------------------------------------------------------------------- step: codecs


async def step_codecs(run: ProbeRun) -> Done:
    """Codecs, resolution and sample rate from the sequence headers seen so far."""
    watch = run.watch
    assert watch is not None
    parts = [watch.codecs(), *(f"warning: {w}" for w in watch.warnings())]
    return Done("; ".join(parts), watch.info())
