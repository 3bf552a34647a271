"""One live stream: its GOP cache and the fan-out to its players.

The hot path is built so that per player there is only a write:

* every media message is encoded once per *group* of players that decode
  the same bytes (``relay/encoding.py``): RTMP players sharing a message
  stream id, the kinds of media they receive and the chunk size their
  connection announced (almost always all of them, since ids are allocated
  lowest-first, few players turn audio or video off and the chunk size
  changes only with a reload), chunk-encoded with a type-0 header on chunk
  streams no connection core writes (``CSID_RELAY_*``), so the bytes depend
  on nothing player-specific and never disturb a connection's own header
  compression; and FLV viewers sharing a framing and a timeline, as FLV tags;
* encoded messages accumulate in the group's ``pending`` list and are
  joined (and, for a framed encoding, wrapped in one HTTP chunk or
  WebSocket frame) once per flush (every ``merge_ms``); each live player then gets
  exactly one ``write`` of that shared ``bytes`` object, or, for a large
  flush, one ``sendfile`` of the same pages (``relay/shared.py``: the
  kernel does not copy the bytes per player);
* per-player state is a small slotted object; live players sit in a dict
  of bound ``write`` methods that the flush loop calls directly.

Invariants:

* ``gop`` holds the raw messages since the last video keyframe (empty when
  there is none yet, or when it outgrew ``max_gop_bytes``); each group's
  ``gop_bytes`` is the same list encoded (the kinds the group receives;
  ``None`` until a player joins the group: a group made by a player turning
  a kind on or off is not worth encoding a GOP for), and the last
  ``gop_pending`` of those are also in ``pending``, so a joining player is
  written the GOP without them and receives them with the next flush,
  never twice.
* A player is either live (in ``live``) or skipping (in ``skipping``);
  a skipping player gets nothing until a flush that contains a keyframe
  finds its socket writable again, then it resumes at that keyframe.
  One that stays congested past ``slow_player_timeout`` is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamgate.errors import ProtocolError
from streamgate.relay.bitrate import BitrateMeter
from streamgate.relay.clock import Clock, TimerHandle, notify
from streamgate.relay.delivery import Delivery, WriteOnly
from streamgate.relay.encoding import Encoding, RtmpChunks
from streamgate.relay.shared import SENDFILE_MIN, SharedFile, sendfile_available
from streamgate.rtmp import amf0
from streamgate.rtmp.codecs import (
    AudioDescription,
    VideoDescription,
    describe_audio,
    describe_video,
)
from streamgate.rtmp.flv import (
    AUDIO_CONFIG,
    VIDEO_CONFIG,
    VIDEO_KEYFRAME,
    classify_audio,
    classify_video,
)
from streamgate.rtmp.messages import MsgType

__all__ = ["AUDIO", "BOTH", "VIDEO", "FanoutSettings", "Player", "PlayerSink", "Stream"]

_SET_DATA_FRAME = amf0.encode("@setDataFrame")
_VIDEO = int(MsgType.VIDEO)
_AUDIO = int(MsgType.AUDIO)
_DATA = int(MsgType.DATA_AMF0)
# FLV timelines kept per framing and kinds: a viewer arriving when they are all
# in use joins the newest one (its timestamps then start a little above 0).
MAX_TIMELINES = 8

# The kinds of media a player receives (receiveAudio / receiveVideo), as bits.
# Data messages (onMetaData) go to every player.
AUDIO = 1
VIDEO = 2
BOTH = AUDIO | VIDEO
_KIND_OF = {MsgType.AUDIO: AUDIO, MsgType.VIDEO: VIDEO}


class PlayerSink(Protocol):
    """What a stream needs from a player's connection."""

    def write(self, data: bytes) -> None: ...

    def stream_ended(self, code: str, description: str) -> None:
        """Tell the player the stream is over and close it."""

    def drop(self, reason: str) -> None:
        """Close a player that cannot keep up."""


@dataclass(frozen=True, slots=True)
class FanoutSettings:
    chunk_size: int = 4096  # for players added without their connection's own
    merge_ms: int = 50
    gop_cache: bool = True
    max_gop_bytes: int = 16 << 20
    slow_player_timeout: float = 10.0
    sendfile: bool = True  # large flushes by sendfile(2) where the platform has it


class Player:
    """A player attached to a stream (per-player state: keep it small)."""

    __slots__ = ("fd", "group", "paused_since", "ready", "sink", "stream_id", "write")

    def __init__(
        self, sink: PlayerSink, stream_id: int, group: _Group, delivery: Delivery
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.group = group
        self.write = delivery.write
        self.paused_since: float | None = None
        # The socket large flushes go to by sendfile, when ``ready()`` (-1: writes only).
        self.fd = -1
        self.ready = delivery.sendfile_ready


class _Group:
    """Players that share one encoding (``relay/encoding.py``) and kinds of media."""

    __slots__ = (
        "awaiting_keyframe",
        "encode",
        "encoding",
        "frame",
        "gop_bytes",
        "gop_pending",
        "kf_index",
        "kf_timestamp",
        "kinds",
        "live",
        "pending",
        "skipping",
        "start_cache",
    )

    def __init__(self, encoding: Encoding, kinds: int) -> None:
        self.encoding = encoding
        self.encode = encoding.encode
        # Wraps a flush's parts for the wire (HTTP chunk, WebSocket frame); None: joined.
        self.frame = encoding.frame if encoding.framed else None
        self.kinds = kinds
        self.live: dict[Player, Callable[[bytes], None]] = {}
        self.skipping: set[Player] = set()
        self.pending: list[bytes] = []
        self.kf_index = -1  # index in pending of the first keyframe, -1 if none
        self.kf_timestamp = 0
        # A player joined before any keyframe: the first one is flushed at once,
        # not a merge interval later (it is what the player waits to start).
        self.awaiting_keyframe = False
        self.gop_bytes: list[bytes] | None = None
        self.gop_pending = 0
        self.start_cache: bytes | None = None

    @property
    def key(self) -> tuple[object, int]:
        return self.encoding.key, self.kinds

    def __len__(self) -> int:
        return len(self.live) + len(self.skipping)


class Stream:
    """A published stream and its players."""

    def __init__(self, app: str, name: str, clock: Clock, settings: FanoutSettings) -> None:
        self.app = app
        self.name = name
        self.clock = clock
        self.settings = settings
        self.groups: dict[tuple[object, int], _Group] = {}
        self.gop: list[tuple[int, int, bytes]] = []
        self.gop_size = 0
        self.metadata: bytes | None = None  # "onMetaData" body, re-encoded
        self.video_config: tuple[int, bytes] | None = None
        self.audio_config: tuple[int, bytes] | None = None
        self.last_timestamp = 0
        self.created = clock.now()
        self.last_media = self.created
        self.last_keyframe: float | None = None
        self.video: VideoDescription | None = None
        self.audio: AudioDescription | None = None
        self.bitrate_in = BitrateMeter()
        self.bytes_in = 0
        self.messages_in = 0
        self.dropped_players = 0
        self.bytes_sendfile = 0  # of what players were sent, handed over by sendfile
        self._flush_timer: TimerHandle | None = None
        self._sendfile = settings.sendfile and sendfile_available()
        self._shared: SharedFile | None = None
        self._regroup: dict[Player, int] = {}  # players changing kinds at the next flush
        self.ended = False
        # Called when the last player leaves (the edge lingers, then closes its link).
        self.on_empty: Callable[[], None] | None = None
        # Called once when the stream becomes ``described`` (FLV viewers that
        # arrived first wait for it: their file header states the tracks).
        self.describe_waiters: list[Callable[[], None]] = []

    # ------------------------------------------------------------ inbound

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        """One audio or video message from the publisher or the ingest."""
        self.on_media_batch(((type_id, timestamp, payload),))

    def on_media_batch(
        self, items: Sequence[tuple[int, int, bytes]], offset: int = 0
    ) -> int:
        """Audio and video messages in order (an edge's merged read), their
        timestamps shifted by ``offset``; returns the last timestamp."""
        now = self.clock.now()
        self.last_media = now
        append = self._append
        total = 0
        timestamp = self.last_timestamp
        for type_id, timestamp, payload in items:
            if offset:
                timestamp = (timestamp + offset) & 0xFFFFFFFF
            self.last_timestamp = timestamp
            total += len(payload)
            keyframe = False
            if type_id == _VIDEO:
                kind = classify_video(payload)
                if kind == VIDEO_KEYFRAME:
                    keyframe = True
                    self.last_keyframe = now
                    if self.describe_waiters:
                        self._described()
                elif kind == VIDEO_CONFIG:
                    self.video_config = (timestamp, payload)
                    self.video = describe_video(payload)
                    self._invalidate_start()
            elif classify_audio(payload) == AUDIO_CONFIG:
                self.audio_config = (timestamp, payload)
                self.audio = describe_audio(payload)
                self._invalidate_start()
            append(type_id, timestamp, payload, keyframe)
        self.bytes_in += total
        self.messages_in += len(items)
        self.bitrate_in.add(total, now)
        return timestamp

    def on_metadata(self, timestamp: int, values: tuple[object, ...], payload: bytes) -> None:
        """A data message; ``@setDataFrame`` is stripped as players expect plain onMetaData.

        The peer's own bytes are relayed: re-encoding decoded values would
        expand AMF references exponentially (a 300-byte message into GBs).
        """
        if values and values[0] == "@setDataFrame":
            if not payload.startswith(_SET_DATA_FRAME):
                return  # an odd encoding of the name: not worth guessing at
            values = values[1:]
            payload = payload[len(_SET_DATA_FRAME) :]
        if not values or values[0] != "onMetaData":
            return
        self.metadata = payload
        self._invalidate_start()
        if self.describe_waiters:
            self._described()
        self._append(MsgType.DATA_AMF0, timestamp, self.metadata, False)

    def _append(self, type_id: int, timestamp: int, payload: bytes, keyframe: bool) -> None:
        settings = self.settings
        in_gop = False
        if settings.gop_cache:
            if keyframe:
                self.gop = [(type_id, timestamp, payload)]
                self.gop_size = len(payload)
                in_gop = True
            elif self.gop:
                self.gop_size += len(payload)
                if self.gop_size > settings.max_gop_bytes:
                    self.gop = []  # no keyframe for too long: start players live instead
                    self.gop_size = 0
                    for group in self.groups.values():
                        group.gop_bytes = None
                        group.gop_pending = 0
                else:
                    self.gop.append((type_id, timestamp, payload))
                    in_gop = True
        kind = _KIND_OF.get(type_id, 0)  # 0: data, for everyone
        for group in self.groups.values():
            if kind and not group.kinds & kind:
                continue
            data = group.encode(type_id, timestamp, payload)
            if keyframe and group.kf_index < 0:
                group.kf_index = len(group.pending)
                group.kf_timestamp = timestamp
            group.pending.append(data)
            if in_gop:
                if keyframe:
                    group.gop_bytes = [data]
                    group.gop_pending = 1
                    group.start_cache = None
                else:
                    if group.gop_bytes is not None:
                        group.gop_bytes.append(data)
                    group.gop_pending += 1
        if settings.merge_ms <= 0 or (keyframe and self._anyone_awaiting_keyframe()):
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            self.flush()
        elif self._flush_timer is None and self.groups:
            self._flush_timer = self.clock.call_later(settings.merge_ms / 1000.0, self.flush)

    def _anyone_awaiting_keyframe(self) -> bool:
        waiting = False
        for group in self.groups.values():
            waiting |= group.awaiting_keyframe
            group.awaiting_keyframe = False
        return waiting

    # ------------------------------------------------------------ outbound

    def flush_now(self) -> None:
        """Flush ahead of the merge timer (the source already batched its input)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.flush()

    def flush(self) -> None:
        """Write what accumulated since the last flush: one write per player."""
        self._flush_timer = None
        for group in tuple(self.groups.values()):  # a dropped slow player may empty a group
            pending = group.pending
            if not pending:
                continue
            if group.frame is not None:
                data = group.frame(pending)
            else:
                data = pending[0] if len(pending) == 1 else b"".join(pending)
            kf_index, kf_timestamp = group.kf_index, group.kf_timestamp
            # Reset before writing: nothing a write triggers can see a stale batch.
            group.pending = []
            group.gop_pending = 0
            group.kf_index = -1
            size = len(data)
            shared = self._shared_file() if size >= SENDFILE_MIN else None
            if shared is not None:
                shared.put(data)
            try:
                self._write_all(group, data, shared)
            finally:  # always: the next flush must get fresh pages, not these
                if shared is not None:
                    shared.clear()
            if group.skipping:
                self._serve_skipping(group, pending, kf_index, kf_timestamp)
        if self._regroup:
            self._apply_regroup()

    def _write_all(self, group: _Group, data: bytes, shared: SharedFile | None) -> None:
        """One write (or sendfile of ``shared``, holding ``data``) per live player."""
        size = len(data)
        sendfile = os.sendfile
        # A snapshot: the transport may call pause_writing() from inside
        # write(), which moves that player out of ``live``.
        for player, write in tuple(group.live.items()):
            try:
                # shared.size: 0 once the file was let go (a failure emptied the
                # stream); ready(): nothing queued ahead, so the wire order holds.
                if shared is not None and shared.size and player.fd >= 0 and player.ready():
                    try:
                        sent = sendfile(player.fd, shared.fd, 0, size)
                    except OSError:  # full, or the peer is gone: the transport's
                        sent = 0  # own write queues it or finds out and reports it
                    self.bytes_sendfile += sent
                    if sent < size:  # a view: congested players share one copy
                        rest: Any = memoryview(data)[sent:] if sent else data
                        write(rest)
                    continue
                write(data)
            except Exception:  # a transport that is already gone: lose only it
                self._write_failed(player)

    def _shared_file(self) -> SharedFile | None:
        if self._shared is None and self._sendfile:
            try:
                self._shared = SharedFile()
            except OSError:
                self._sendfile = False  # no memfd here (e.g. out of descriptors): writes
        return self._shared

    def _release_shared(self) -> None:
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _serve_skipping(
        self, group: _Group, pending: list[bytes], kf_index: int, kf_timestamp: int
    ) -> None:
        """Resume skipping players that drained, at this batch's first keyframe
        (at once for a stream without video); drop those congested too long."""
        now = self.clock.now()
        audio_only = not group.kinds & VIDEO or (
            self.video_config is None and self.last_keyframe is None
        )
        resume: bytes | None = None
        for player in list(group.skipping):
            if player.paused_since is None:
                if kf_index < 0 and not audio_only:
                    continue
                if resume is None:
                    if kf_index < 0:
                        parts = [self._header_bytes(group, self.last_timestamp), *pending]
                    else:
                        parts = [self._header_bytes(group, kf_timestamp), *pending[kf_index:]]
                    resume = b"".join(parts) if group.frame is None else group.frame(parts)
                group.skipping.discard(player)
                group.live[player] = player.write
                try:
                    player.write(resume)
                except Exception:
                    self._write_failed(player)
            elif now - player.paused_since > self.settings.slow_player_timeout:
                self.remove_player(player)
                self.dropped_players += 1
                player.sink.drop("could not keep up with the stream")

    def _write_failed(self, player: Player) -> None:
        self.remove_player(player)
        player.sink.drop("its connection is gone")

    def _invalidate_start(self) -> None:
        for group in self.groups.values():
            group.start_cache = None

    def _start_bytes(self, group: _Group) -> bytes:
        """Metadata and sequence headers, then the cached GOP (for a new player).

        Headers are stamped with the GOP's first timestamp so a new player
        sees monotonic timestamps from its first message.
        """
        if group.start_cache is None:
            ts = self.gop[0][1] if self.gop else self.last_timestamp
            group.start_cache = self._header_bytes(group, ts)
        gop = self._gop_bytes(group)
        upto = len(gop) - group.gop_pending
        return group.start_cache + b"".join(gop[:upto])

    def _gop_bytes(self, group: _Group) -> list[bytes]:
        if group.gop_bytes is None:
            encode, kinds = group.encode, group.kinds
            group.gop_bytes = [
                encode(t, ts, payload)
                for t, ts, payload in self.gop
                if t not in _KIND_OF or kinds & _KIND_OF[t]
            ]
        return group.gop_bytes

    def _header_bytes(
        self, group: _Group, ts: int, kinds: int | None = None, metadata: bool = True
    ) -> bytes:
        """Metadata and the sequence headers of ``kinds`` (the group's), the
        media ones stamped ``ts``."""
        encode = group.encode
        if kinds is None:
            kinds = group.kinds
        parts = []
        if metadata and self.metadata is not None:
            # Timestamp 0: FFmpeg's FLV demuxer turns onMetaData at any other
            # time into a spurious data stream (an FLV timeline's 0 is its base).
            parts.append(encode(_DATA, 0, self.metadata))
        if self.video_config is not None and kinds & VIDEO:
            parts.append(encode(_VIDEO, ts, self.video_config[1]))
        if self.audio_config is not None and kinds & AUDIO:
            parts.append(encode(_AUDIO, ts, self.audio_config[1]))
        return b"".join(parts)

    # ------------------------------------------------------------ players

    @property
    def player_count(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def viewers(self) -> dict[str, int]:
        """Players by protocol ("rtmp", "flv", "ws-flv")."""
        counts = dict.fromkeys(("rtmp", "flv", "ws-flv"), 0)
        for group in self.groups.values():
            protocol = group.encoding.protocol
            counts[protocol] = counts.get(protocol, 0) + len(group)
        return counts

    def add_player(
        self,
        sink: PlayerSink,
        stream_id: int,
        delivery: Delivery | None = None,
        kinds: int = BOTH,
        chunk_size: int | None = None,
        encoding: Encoding | None = None,
    ) -> Player:
        """Attach a player; ``delivery`` is how its bytes reach it (the
        server's; by default the sink's ``write``), ``kinds`` what it receives
        (AUDIO, VIDEO or BOTH), ``chunk_size`` the one its connection
        announced (what it decodes with; the settings' when not given).

        ``encoding``: how its bytes are made, when not RTMP chunks of
        ``stream_id`` and ``chunk_size`` (an FLV viewer's ``FlvTags``: it is
        put on the timeline that starts at what it is sent first, shared with
        the viewers who started there; at most ``MAX_TIMELINES`` of them are
        kept per framing, then it joins the newest)."""
        if encoding is None:
            if chunk_size is None:
                chunk_size = self.settings.chunk_size
            wire: Encoding = RtmpChunks(stream_id, chunk_size)
        else:
            wire = self._timeline(encoding, kinds) if encoding.timeline else encoding
        group = self._group(wire, kinds)
        if delivery is None:
            delivery = WriteOnly(sink.write)
        player = Player(sink, stream_id, group, delivery)
        if self._sendfile:
            player.fd = delivery.sendfile_fd
        start = self._start_bytes(group)
        preamble = wire.preamble(self.tracks)  # an RTMP player's is empty, unasked
        if preamble:
            start = preamble + start
        if start:
            player.write(start if group.frame is None else group.frame((start,)))
        gop = group.gop_bytes or ()
        if kinds & VIDEO and len(gop) <= group.gop_pending:  # no keyframe reached it yet
            group.awaiting_keyframe = True
        group.live[player] = player.write
        return player

    def _group(self, encoding: Encoding, kinds: int) -> _Group:
        group = self.groups.get((encoding.key, kinds))
        if group is None:
            group = self.groups[encoding.key, kinds] = _Group(encoding, kinds)
        return group

    def _timeline(self, encoding: Encoding, kinds: int) -> Encoding:
        """The timeline a new FLV viewer joins: the one that starts at the first
        timestamp it is sent (the GOP's earliest), or the newest when the
        stream already keeps ``MAX_TIMELINES`` of its framing."""
        start = min(ts for _, ts, _ in self.gop) if self.gop else self.last_timestamp
        wanted = encoding.at(start)
        if (wanted.key, kinds) in self.groups:
            return wanted
        family = [
            g.encoding
            for g in self.groups.values()
            if g.kinds == kinds and g.encoding.family == wanted.family
        ]
        if len(family) >= MAX_TIMELINES:
            return family[-1]  # dicts keep insertion order: the newest
        return wanted

    def tracks(self) -> tuple[bool, bool]:
        """(audio, video): the kinds of media this stream carries, as far as
        known (sequence headers, the GOP, or the metadata's codec ids)."""
        audio = self.audio_config is not None or self.audio is not None
        video = self.video_config is not None or self.video is not None
        if not (audio and video):
            for type_id, _, _ in self.gop:
                audio |= type_id == _AUDIO
                video |= type_id == _VIDEO
        if not (audio and video) and self.metadata is not None:
            keys = _metadata_keys(self.metadata)
            audio |= "audiocodecid" in keys
            video |= "videocodecid" in keys
        return audio, video

    def _described(self) -> None:
        waiters, self.describe_waiters = self.describe_waiters, []
        for waiter in waiters:
            notify(waiter)

    @property
    def described(self) -> bool:
        """Whether :meth:`tracks` is settled: the metadata or a keyframe came."""
        return self.metadata is not None or bool(self.gop) or self.last_keyframe is not None

    def set_kinds(self, player: Player, kinds: int) -> None:
        """The player turned audio or video on or off (receiveAudio / receiveVideo).

        It moves to the group of its new kinds at the end of the next flush,
        when no group holds anything unwritten: it misses nothing and gets
        nothing twice. Video turned on resumes at the next keyframe (as after
        congestion); audio turned on starts with the audio sequence header.
        Cheap however often a client toggles: a GOP is only encoded for a group
        when a player joins the stream in it.
        """
        kinds &= BOTH
        if kinds == player.group.kinds:
            self._regroup.pop(player, None)
        else:
            self._regroup[player] = kinds

    def _apply_regroup(self) -> None:
        moves, self._regroup = self._regroup, {}
        for player, kinds in moves.items():
            old = player.group
            live = old.live.pop(player, None) is not None
            old.skipping.discard(player)
            if not old:
                del self.groups[old.key]
            group = player.group = self._group(old.encoding, kinds)
            video_on = kinds & ~old.kinds & VIDEO and self.video_config is not None
            if not live or video_on:
                group.skipping.add(player)
                continue
            group.live[player] = player.write  # before a write that may pause it
            if kinds & ~old.kinds & AUDIO:
                # Stamped with the last one written: this is a flush's end.
                header = self._header_bytes(group, self.last_timestamp, AUDIO, metadata=False)
                try:
                    if header:
                        player.write(header)
                except Exception:
                    self._write_failed(player)

    def remove_player(self, player: Player) -> None:
        self._regroup.pop(player, None)
        group = player.group
        group.live.pop(player, None)
        group.skipping.discard(player)
        if not group and self.groups.get(group.key) is group:
            del self.groups[group.key]
            if not self.groups:
                self._release_shared()  # nobody to send to: no descriptor held meanwhile
                if self.on_empty is not None and not self.ended:
                    self.on_empty()

    def player_paused(self, player: Player) -> None:
        """The player's socket stopped taking data: skip to a later keyframe."""
        group = player.group
        if group.live.pop(player, None) is not None:
            group.skipping.add(player)
        if player.paused_since is None:
            player.paused_since = self.clock.now()

    def player_resumed(self, player: Player) -> None:
        player.paused_since = None

    # ------------------------------------------------------------ ending

    def end(self, code: str, description: str) -> None:
        """The stream is over: flush, tell every player, forget them."""
        if self.ended:
            return
        self.ended = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.flush()
        players = [p for g in self.groups.values() for p in (*g.live, *g.skipping)]
        self.groups.clear()
        self._regroup.clear()
        self._release_shared()
        self._sendfile = False
        for player in players:
            notify(player.sink.stream_ended, code, description)


def _metadata_keys(payload: bytes) -> set[str]:
    """The keys of an onMetaData body ("onMetaData" then an object or ECMA array)."""
    try:
        values = amf0.decode_all(payload)
    except (ProtocolError, ValueError):  # a peer's bytes: unreadable means unknown
        return set()
    for value in values[1:2]:
        if isinstance(value, dict):
            return {str(k) for k in value}
    return set()
