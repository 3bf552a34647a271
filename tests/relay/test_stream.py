"""Fan-out and GOP cache of one stream, on a fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.relay.clock import FakeClock
from streamgate.relay.stream import AUDIO, BOTH, VIDEO, FanoutSettings, Stream
from streamgate.rtmp import amf0
from streamgate.rtmp.messages import MsgType
from tests.relay.sinks import (
    AAC_CONFIG,
    AAC_RAW,
    AVC_CONFIG,
    AVC_INTER,
    AVC_KEY,
    RecordingPlayer,
)

V, A = MsgType.VIDEO, MsgType.AUDIO


def make(merge_ms: int = 50, **kw: object) -> tuple[FakeClock, Stream]:
    clock = FakeClock()
    return clock, Stream("live", "x", clock, FanoutSettings(merge_ms=merge_ms, **kw))  # type: ignore[arg-type]


def publish_gop(stream: Stream, start: int, inters: int = 3) -> None:
    stream.on_media(V, start, AVC_KEY)
    for i in range(inters):
        stream.on_media(A, start + 10 * i, AAC_RAW)
        stream.on_media(V, start + 40 * (i + 1), AVC_INTER + bytes([i]))


def test_new_player_starts_at_last_keyframe_with_headers_first() -> None:
    clock, stream = make()
    values = ("@setDataFrame", "onMetaData", {"width": 320.0})
    stream.on_metadata(0, values, amf0.encode(*values))
    stream.on_media(V, 0, AVC_CONFIG)
    stream.on_media(A, 0, AAC_CONFIG)
    publish_gop(stream, 0)
    publish_gop(stream, 1000)
    clock.advance(1)
    player = RecordingPlayer()
    stream.add_player(player, 1)
    kinds = [(m.type_id, m.payload[:2]) for m in player.messages]
    assert kinds[0][0] == MsgType.DATA_AMF0
    assert player.messages[0].timestamp == 0
    assert player.payloads[1:3] == [AVC_CONFIG, AAC_CONFIG]
    assert player.payloads[3] == AVC_KEY
    assert player.messages[3].timestamp == 1000
    # headers carry the GOP's first timestamp so the player sees no jump back
    assert player.messages[1].timestamp == 1000
    assert len(player.messages) == 3 + 1 + 6
    assert all(m.stream_id == 1 for m in player.messages)


def test_one_write_per_flush_with_shared_bytes() -> None:
    clock, stream = make(merge_ms=50)
    stream.on_media(V, 0, AVC_KEY)  # steady state: players join a running stream
    p1, p2 = RecordingPlayer(), RecordingPlayer()
    stream.add_player(p1, 1)
    stream.add_player(p2, 1)
    p1.writes.clear()
    p2.writes.clear()
    publish_gop(stream, 1000, inters=5)  # 11 messages
    assert p1.writes == [] and p2.writes == []
    clock.advance(0.05)
    assert len(p1.writes) == 1 and len(p2.writes) == 1
    assert p1.writes[0] is p2.writes[0]  # the same bytes object, encoded once
    assert len(p1.messages) == 1 + 11


def test_flush_now_writes_the_batch_once_and_cancels_the_timer() -> None:
    """A merged read (edge) is written out at once, not a merge interval later."""
    clock, stream = make(merge_ms=350)
    stream.on_media(V, 0, AVC_KEY)
    player = RecordingPlayer()
    stream.add_player(player, 1)
    player.writes.clear()
    publish_gop(stream, 1000, inters=2)
    assert player.writes == []
    stream.flush_now()
    assert len(player.writes) == 1
    clock.advance(1.0)
    assert len(player.writes) == 1  # the merge timer was cancelled, nothing twice


def test_merge_zero_writes_each_message() -> None:
    _, stream = make(merge_ms=0)
    player = RecordingPlayer()
    stream.add_player(player, 1)
    publish_gop(stream, 0, inters=1)
    assert len(player.writes) == 3


def test_player_joining_mid_batch_gets_no_duplicates() -> None:
    clock, stream = make(merge_ms=50)
    early = RecordingPlayer()
    stream.add_player(early, 1)
    publish_gop(stream, 0, inters=1)
    clock.advance(0.05)
    stream.on_media(V, 80, AVC_INTER)  # pending, not yet flushed, already in the GOP
    late = RecordingPlayer()
    stream.add_player(late, 1)
    clock.advance(0.05)
    assert [m.timestamp for m in late.messages] == [0, 0, 40, 80]
    assert [m.timestamp for m in early.messages] == [0, 0, 40, 80]


def test_keyframe_in_pending_batch_resets_gop_for_late_joiner() -> None:
    clock, stream = make(merge_ms=50)
    early = RecordingPlayer()
    stream.add_player(early, 1)
    publish_gop(stream, 0, inters=1)
    clock.advance(0.05)
    stream.on_media(V, 1000, AVC_KEY)  # new GOP, pending for the existing group
    late = RecordingPlayer()
    stream.add_player(late, 1)
    assert late.messages == []  # the only GOP message is still pending
    clock.advance(0.05)
    assert [m.timestamp for m in late.messages] == [1000]


def test_first_player_of_an_idle_group_gets_gop_once() -> None:
    clock, stream = make(merge_ms=50)
    publish_gop(stream, 0, inters=1)
    stream.on_media(V, 1000, AVC_KEY)  # nobody is attached: nothing is pending
    late = RecordingPlayer()
    stream.add_player(late, 1)
    clock.advance(0.05)
    assert [m.timestamp for m in late.messages] == [1000]


def test_players_with_another_stream_id_get_their_own_encoding() -> None:
    clock, stream = make()
    publish_gop(stream, 0, inters=1)
    one, two = RecordingPlayer(), RecordingPlayer()
    stream.add_player(one, 1)
    stream.add_player(two, 2)
    stream.on_media(V, 80, AVC_INTER)
    clock.advance(0.05)
    assert {m.stream_id for m in one.messages} == {1}
    assert {m.stream_id for m in two.messages} == {2}
    assert one.payloads == two.payloads


def test_congested_player_skips_to_next_keyframe_then_resumes() -> None:
    clock, stream = make()
    fast, slow = RecordingPlayer(), RecordingPlayer()
    stream.add_player(fast, 1)
    handle = stream.add_player(slow, 1)
    publish_gop(stream, 0, inters=1)
    clock.advance(0.05)
    stream.player_paused(handle)
    stream.on_media(V, 80, AVC_INTER)
    clock.advance(0.05)
    stream.player_resumed(handle)
    stream.on_media(V, 120, AVC_INTER)  # still no keyframe: keep skipping
    clock.advance(0.05)
    before = len(slow.messages)
    assert [m.timestamp for m in slow.messages] == [0, 0, 40]
    stream.on_media(V, 160, AVC_INTER)
    stream.on_media(V, 200, AVC_KEY)
    stream.on_media(A, 210, AAC_RAW)
    clock.advance(0.05)
    resumed = slow.messages[before:]
    assert resumed[0].payload == AVC_KEY and resumed[0].timestamp == 200
    assert [m.timestamp for m in resumed] == [200, 210]
    assert [m.timestamp for m in fast.messages] == [0, 0, 40, 80, 120, 160, 200, 210]
    assert slow.dropped is None


def test_player_congested_too_long_is_dropped_others_unaffected() -> None:
    clock, stream = make(slow_player_timeout=2.0)
    fast, slow = RecordingPlayer(), RecordingPlayer()
    stream.add_player(fast, 1)
    handle = stream.add_player(slow, 1)
    stream.player_paused(handle)
    for second in range(4):
        publish_gop(stream, second * 1000, inters=1)
        clock.advance(1.0)
    assert slow.dropped is not None
    assert stream.player_count == 1
    assert stream.dropped_players == 1
    assert len(fast.messages) == 4 * 3


def test_gop_cache_is_bounded() -> None:
    _clock, stream = make(max_gop_bytes=1000)
    stream.on_media(V, 0, AVC_KEY)
    for i in range(100):
        stream.on_media(V, 40 * i, AVC_INTER)
    assert stream.gop == []
    player = RecordingPlayer()
    stream.add_player(player, 1)
    assert player.messages == []


def test_end_tells_every_player_after_flushing() -> None:
    clock, stream = make()
    player = RecordingPlayer()
    stream.add_player(player, 1)
    publish_gop(stream, 0, inters=1)
    stream.end("NetStream.Play.UnpublishNotify", "gone")
    assert len(player.messages) == 3
    assert player.ended is not None and player.ended[0] == "NetStream.Play.UnpublishNotify"
    assert stream.player_count == 0
    assert clock.pending == 0


def test_stream_records_codecs_and_keyframe_time() -> None:
    clock, stream = make()
    stream.on_media(V, 0, AVC_CONFIG)
    stream.on_media(A, 0, AAC_CONFIG)
    clock.advance(3)
    stream.on_media(V, 0, AVC_KEY)
    assert stream.video is not None and stream.video.codec == "h264"
    assert stream.audio is not None and stream.audio.codec == "aac"
    assert stream.last_keyframe == clock.now()


def test_metadata_is_relayed_as_sent_never_re_encoded() -> None:
    """AMF references share objects when decoded; re-encoding would expand them
    exponentially (a few hundred bytes into gigabytes)."""
    body = bytearray(amf0.encode("onMetaData"))
    body += b"\x03" + b"\x00\x01k" + amf0.encode(1.0) + b"\x00\x00\x09"  # object 0
    for i in range(1, 40):  # object i = {a: ref(i-1), b: ref(i-1)}
        ref = b"\x07" + (i - 1).to_bytes(2, "big")
        body += b"\x03\x00\x01a" + ref + b"\x00\x01b" + ref + b"\x00\x00\x09"
    values = tuple(amf0.decode_all(bytes(body)))
    _clock, stream = make()
    stream.on_metadata(0, values, bytes(body))
    assert stream.metadata == bytes(body)
    player = RecordingPlayer()
    stream.add_player(player, 1)
    assert player.payloads[0] == bytes(body)


def test_set_data_frame_is_stripped_byte_exact() -> None:
    _clock, stream = make()
    inner = amf0.encode("onMetaData", amf0.ECMAArray(width=320.0))
    values = ("@setDataFrame", "onMetaData", amf0.ECMAArray(width=320.0))
    stream.on_metadata(0, values, amf0.encode("@setDataFrame") + inner)
    assert stream.metadata == inner


class BrokenPlayer(RecordingPlayer):
    def write(self, data: bytes) -> None:
        if self.writes:
            raise RuntimeError("transport is closed")
        super().write(data)


def test_a_failing_write_drops_only_that_player() -> None:
    clock, stream = make()
    good, broken = RecordingPlayer(), BrokenPlayer()
    stream.add_player(broken, 1)
    stream.add_player(good, 1)
    publish_gop(stream, 0, inters=1)
    clock.advance(0.05)
    publish_gop(stream, 1000, inters=1)
    clock.advance(0.05)
    assert broken.dropped is not None
    assert [m.timestamp for m in good.messages] == [0, 0, 40, 1000, 1000, 1040]
    assert stream.player_count == 1


def test_audio_only_stream_resumes_a_drained_player() -> None:
    clock, stream = make()
    player = RecordingPlayer()
    handle = stream.add_player(player, 1)
    stream.on_media(A, 0, AAC_CONFIG)
    stream.player_paused(handle)
    stream.on_media(A, 20, AAC_RAW)
    clock.advance(0.05)
    stream.player_resumed(handle)
    stream.on_media(A, 40, AAC_RAW)
    clock.advance(0.05)
    got = [(m.timestamp, m.payload[:2]) for m in player.messages]
    assert got[-2:] == [(40, AAC_CONFIG[:2]), (40, AAC_RAW[:2])]  # headers again, then live


def test_resume_headers_carry_the_resuming_keyframes_timestamp() -> None:
    clock, stream = make()
    stream.on_media(V, 0, AVC_CONFIG)
    player = RecordingPlayer()
    handle = stream.add_player(player, 1)
    stream.player_paused(handle)
    clock.advance(0.05)
    stream.player_resumed(handle)
    for ts in (1000, 1020, 1040):  # an all-intra batch
        stream.on_media(V, ts, AVC_KEY)
    clock.advance(0.05)
    stamps = [m.timestamp for m in player.messages]
    assert stamps == sorted(stamps), stamps
    assert stamps[-4:] == [1000, 1000, 1020, 1040]


def test_a_player_waiting_for_the_first_keyframe_gets_it_without_the_merge_delay() -> None:
    clock, stream = make(merge_ms=350)
    stream.on_media(V, 0, AVC_CONFIG)
    player = RecordingPlayer()
    stream.add_player(player, 1)  # nothing to start from yet
    stream.on_media(A, 10, AAC_RAW)
    assert [m.payload for m in player.messages] == [AVC_CONFIG]
    stream.on_media(V, 40, AVC_KEY)  # flushed now, not 350 ms later
    assert player.payloads[-1] == AVC_KEY
    stream.on_media(V, 80, AVC_INTER)  # later ones merge again
    stream.on_media(V, 120, AVC_KEY)
    assert player.payloads[-1] == AVC_KEY and len(player.messages) == 3
    clock.advance(0.35)
    assert [m.timestamp for m in player.messages] == [0, 10, 40, 80, 120]


# ---------------------------------------------------------------- receiveAudio / receiveVideo


def forget(player: RecordingPlayer) -> None:
    player.writes.clear()
    player.messages.clear()


def headed_stream(merge_ms: int = 50) -> tuple[FakeClock, Stream]:
    clock, stream = make(merge_ms=merge_ms)
    stream.on_media(V, 0, AVC_CONFIG)
    stream.on_media(A, 0, AAC_CONFIG)
    publish_gop(stream, 0)
    clock.advance(0.05)
    return clock, stream


def test_a_player_without_video_gets_audio_only_from_its_start() -> None:
    clock, stream = headed_stream()
    full, audio = RecordingPlayer(), RecordingPlayer()
    stream.add_player(full, 1)
    stream.add_player(audio, 1, kinds=AUDIO)
    assert [m.type_id for m in audio.messages] == [A, A, A, A]  # config + the GOP's audio
    assert audio.payloads[0] == AAC_CONFIG
    publish_gop(stream, 1000)
    clock.advance(0.05)
    assert {m.type_id for m in audio.messages} == {A}
    assert [m.type_id for m in full.messages].count(V) == 1 + 4 + 4
    assert len(stream.groups) == 2 and stream.player_count == 2


def test_video_off_moves_at_the_flush_and_misses_no_audio() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    p = stream.add_player(player, 1)
    forget(player)
    stream.on_media(A, 1000, AAC_RAW)  # pending when the player turns video off
    stream.on_media(V, 1000, AVC_INTER)
    stream.set_kinds(p, AUDIO)
    stream.on_media(A, 1010, AAC_RAW)
    clock.advance(0.05)
    assert [(m.type_id, m.timestamp) for m in player.messages] == [
        (A, 1000), (V, 1000), (A, 1010)  # the batch it asked within: unchanged
    ]
    forget(player)
    publish_gop(stream, 2000)
    clock.advance(0.05)
    assert [m.type_id for m in player.messages] == [A, A, A]
    assert len(stream.groups) == 1  # the old group left with its only player


def test_video_back_on_resumes_at_the_next_keyframe_with_its_header() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    p = stream.add_player(player, 1, kinds=AUDIO)
    stream.set_kinds(p, BOTH)
    stream.on_media(V, 1000, AVC_INTER)
    stream.on_media(A, 1000, AAC_RAW)
    clock.advance(0.05)  # moved at this flush's end: waits for a keyframe now
    forget(player)
    stream.on_media(A, 1010, AAC_RAW)
    stream.on_media(V, 1040, AVC_INTER)
    clock.advance(0.05)
    assert player.writes == []
    publish_gop(stream, 2000, inters=1)
    clock.advance(0.05)
    assert player.payloads[:3] == [AVC_CONFIG, AAC_CONFIG, AVC_KEY]
    assert [m.timestamp for m in player.messages][:3] == [2000, 2000, 2000]


def test_audio_back_on_starts_with_the_audio_header_in_order() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    p = stream.add_player(player, 1, kinds=VIDEO)
    assert A not in {m.type_id for m in player.messages}
    forget(player)
    stream.set_kinds(p, BOTH)
    stream.on_media(V, 1000, AVC_INTER)
    clock.advance(0.05)
    stream.on_media(A, 1010, AAC_RAW)
    clock.advance(0.05)
    assert [(m.type_id, m.timestamp) for m in player.messages] == [
        (V, 1000), (A, 1000), (A, 1010)
    ]
    assert player.payloads[1] == AAC_CONFIG


def test_toggling_back_before_the_flush_changes_nothing() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    p = stream.add_player(player, 1)
    group = p.group
    stream.set_kinds(p, AUDIO)
    stream.set_kinds(p, BOTH)
    stream.on_media(V, 1000, AVC_INTER)
    clock.advance(0.05)
    assert p.group is group and player.messages[-1].type_id == V


def test_toggling_does_not_encode_a_gop_and_a_leaver_is_forgotten() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    p = stream.add_player(player, 1)
    for _ in range(1000):  # a client hammering receiveVideo
        stream.set_kinds(p, AUDIO)
        stream.on_media(A, 1000, AAC_RAW)
        clock.advance(0.05)
        stream.set_kinds(p, BOTH)
        stream.on_media(A, 1000, AAC_RAW)
        clock.advance(0.05)
    assert all(g.gop_bytes is None or len(g.gop_bytes) <= 1 for g in stream.groups.values())
    stream.set_kinds(p, AUDIO)
    stream.remove_player(p)
    stream.on_media(A, 1010, AAC_RAW)
    clock.advance(0.05)
    assert stream.groups == {} and stream.player_count == 0


def test_a_joiner_of_a_toggled_group_gets_the_gop_of_its_kinds() -> None:
    clock, stream = headed_stream()
    first = RecordingPlayer()
    stream.set_kinds(stream.add_player(first, 1), AUDIO)
    stream.on_media(A, 200, AAC_RAW)
    clock.advance(0.05)
    joiner = RecordingPlayer()
    stream.add_player(joiner, 1, kinds=AUDIO)
    assert [m.type_id for m in joiner.messages] == [A] * 5  # config, 3 in the GOP, 1 since
    assert joiner.messages[-1].timestamp == 200


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["media", "key", "flush", "kinds", "join", "leave"]),
                  st.integers(0, 3), st.integers(0, 3)),
        max_size=80,
    )
)
def test_any_mix_of_toggles_joins_and_leaves_keeps_each_player_in_order(
    ops: list[tuple[str, int, int]],
) -> None:
    """Whatever players do, each gets media in order, nothing twice, and after its
    last change has taken effect only the kinds it asked for."""
    clock, stream = make(merge_ms=50)
    stream.on_media(V, 0, AVC_CONFIG)
    stream.on_media(A, 0, AAC_CONFIG)
    players: dict[int, tuple[RecordingPlayer, object, list[int]]] = {}
    ts = 0
    for op, who, arg in ops:
        if op in ("media", "key"):
            ts += 10
            if op == "key":
                stream.on_media(V, ts, AVC_KEY)
            else:
                stream.on_media(A if arg % 2 else V, ts, AAC_RAW if arg % 2 else AVC_INTER)
        elif op == "flush":
            clock.advance(0.05)
        elif op == "join" and who not in players:
            rec = RecordingPlayer()
            kinds = arg or BOTH
            players[who] = (rec, stream.add_player(rec, 1, kinds=kinds), [kinds])
        elif op == "kinds" and who in players:
            stream.set_kinds(players[who][1], arg)  # type: ignore[arg-type]
            players[who][2].append(arg & BOTH)
        elif op == "leave" and who in players:
            stream.remove_player(players.pop(who)[1])  # type: ignore[arg-type]
    stream.on_media(A, ts + 10, AAC_RAW)
    clock.advance(0.05)  # every change has taken effect at this flush's end
    cuts = {who: len(rec.messages) for who, (rec, _, _) in players.items()}
    stream.on_media(V, ts + 20, AVC_KEY)
    stream.on_media(A, ts + 30, AAC_RAW)
    clock.advance(0.05)
    headers = (AVC_CONFIG, AAC_CONFIG)
    for who, (rec, player, asked) in players.items():
        for kind in (A, V):
            stamps = [
                m.timestamp for m in rec.messages if m.type_id == kind and m.payload not in headers
            ]
            assert stamps == sorted(set(stamps)), (kind, stamps)
        assert player.group.kinds == asked[-1]  # type: ignore[attr-defined]
        wanted = {t for t, bit in ((A, AUDIO), (V, VIDEO)) if asked[-1] & bit}
        assert {m.type_id for m in rec.messages[cuts[who] :]} == wanted
    assert stream.player_count == len(players)
    assert all(len(g) for g in stream.groups.values())


def test_metadata_reaches_a_player_that_turned_both_kinds_off() -> None:
    clock, stream = headed_stream()
    player = RecordingPlayer()
    stream.add_player(player, 1, kinds=0)
    assert player.messages == []  # no headers of kinds it does not get
    stream.on_media(A, 1000, AAC_RAW)
    values = ("@setDataFrame", "onMetaData", {"width": 640.0})
    stream.on_metadata(1000, values, amf0.encode(*values))
    clock.advance(0.05)
    assert [m.type_id for m in player.messages] == [MsgType.DATA_AMF0]
