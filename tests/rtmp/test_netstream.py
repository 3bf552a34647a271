"""The NetStream transition table and the one classification of status codes.

Pure logic: no event loop, no connection. Every (state, input) pair is
either a row of the table or a protocol error of the right side, and the
client events a ConnectionPair sees come from those rows.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from streamgate.rtmp import amf0
from streamgate.rtmp.events import (
    PlayEnded,
    PlayRefused,
    PlayRequested,
    PlayStarted,
    PublishRefused,
    PublishStarted,
    StatusReceived,
    StreamCreated,
)
from streamgate.rtmp.messages import MsgType, Status
from streamgate.rtmp.netstream import (
    _LOCAL,
    _TRANSITIONS,
    NetStreamInput,
    NetStreams,
    NetStreamState,
    classify_status,
)
from tests.rtmp.pair import ConnectionPair, events_of

S, I = NetStreamState, NetStreamInput  # noqa: E741

CLIENT_STATUS_INPUTS = {
    I.PLAY_START_RECEIVED,
    I.PUBLISH_START_RECEIVED,
    I.REFUSAL_RECEIVED,
    I.END_RECEIVED,
    I.EOF_RECEIVED,
    I.MEDIA_SEEN,
}


def at(state: NetStreamState) -> NetStreams:
    streams = NetStreams()
    streams.create(1)
    streams._states[1] = state  # the table is what is under test, not how to get here
    return streams


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, I)))
def test_every_pair_is_a_row_or_a_protocol_error_of_the_right_side(
    state: NetStreamState, event: NetStreamInput
) -> None:
    streams = at(state)
    row = _TRANSITIONS.get((state, event))
    if row is None:
        error = LocalProtocolError if event in _LOCAL else RemoteProtocolError
        with pytest.raises(error):
            streams.apply(1, event)
        assert streams.state(1) is state  # a refused input changes nothing
    else:
        streams.apply(1, event, "code", "why")
        assert streams.state(1) is row[0]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, CLIENT_STATUS_INPUTS)))
def test_what_a_server_says_is_never_an_error(state: NetStreamState, event: NetStreamInput) -> None:
    assert (state, event) in _TRANSITIONS


@pytest.mark.parametrize("event", list(I))
def test_an_input_on_a_stream_never_created_is_an_error(event: NetStreamInput) -> None:
    error = LocalProtocolError if event in _LOCAL else RemoteProtocolError
    with pytest.raises(error, match="not created"):
        NetStreams().apply(3, event)


def test_events_come_once_on_the_transition() -> None:
    streams = NetStreams()
    streams.create(1)
    streams.apply(1, I.PLAY_SENT)
    assert streams.apply(1, I.PLAY_START_RECEIVED) == PlayStarted(1)
    assert streams.apply(1, I.PLAY_START_RECEIVED) is None  # a second Start says nothing new
    assert streams.apply(1, I.END_RECEIVED, "c", "d") == PlayEnded(1, "c", "d")
    assert streams.apply(1, I.REFUSAL_RECEIVED, "c", "d") is None  # over already
    streams.create(2)
    streams.apply(2, I.PUBLISH_SENT)
    assert streams.apply(2, I.REFUSAL_RECEIVED, "c", "d") == PublishRefused(2, "c", "d")
    streams.create(3)
    streams.apply(3, I.PUBLISH_SENT)
    assert streams.apply(3, I.PUBLISH_START_RECEIVED) == PublishStarted(3)


@pytest.mark.parametrize(
    ("code", "level", "meaning"),
    [
        (Status.PLAY_START, "status", I.PLAY_START_RECEIVED),
        (Status.PUBLISH_START, "status", I.PUBLISH_START_RECEIVED),
        (Status.PLAY_STREAM_NOT_FOUND, "error", I.REFUSAL_RECEIVED),
        (Status.PLAY_FAILED, "error", I.REFUSAL_RECEIVED),
        (Status.PLAY_FAILED, "status", I.REFUSAL_RECEIVED),  # whatever level it came with
        ("NetStream.Play.BadName", "error", I.REFUSAL_RECEIVED),
        ("NetStream.Play.Denied", "status", I.REFUSAL_RECEIVED),
        (Status.PUBLISH_BAD_NAME, "error", I.REFUSAL_RECEIVED),
        (Status.PUBLISH_DENIED, "error", I.REFUSAL_RECEIVED),
        (Status.PLAY_UNPUBLISH_NOTIFY, "status", I.END_RECEIVED),
        (Status.PLAY_STOP, "status", I.END_RECEIVED),
        ("NetStream.Play.Complete", "status", I.END_RECEIVED),
        (Status.PLAY_RESET, "status", None),
        (Status.PLAY_PUBLISH_NOTIFY, "status", None),
        ("Vendor.Custom.Failure", "error", I.REFUSAL_RECEIVED),
        ("NetStream.Play.InsufficientBW", "warning", None),
    ],
)
def test_status_codes_are_classified_once(
    code: str, level: str, meaning: NetStreamInput | None
) -> None:
    assert classify_status(code, level) is meaning


# ---------------------------------------------------------------- through a connection pair


def test_the_client_hears_a_refused_play_once() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.play(sid, "missing")
    pair.pump()
    pair.server.refuse(sid, Status.PLAY_STREAM_NOT_FOUND, "No such stream")
    _, client_events = pair.pump()
    assert events_of(client_events, PlayRefused) == [
        PlayRefused(sid, Status.PLAY_STREAM_NOT_FOUND, "No such stream")
    ]
    assert pair.client.stream_state(sid) is S.CLOSED
    assert pair.server.stream_state(sid) is S.CLOSED


def test_a_status_on_stream_zero_is_about_the_latest_play() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.play(sid, "x")
    pair.pump()
    pair.server.send_status(0, Status.PLAY_START, "started")
    _, client_events = pair.pump()
    assert events_of(client_events, StatusReceived)[0].stream_id == 0
    assert events_of(client_events, PlayStarted) == [PlayStarted(sid)]


def test_a_second_play_on_a_playing_stream_is_reported_for_the_server_to_refuse() -> None:
    pair = ConnectionPair()
    sid = pair.playing()
    pair.client.send_command(sid, "play", 0.0, None, "again")
    pair.pump()
    assert pair.server.stream_state(sid) is S.PLAYING
    pair.server.refuse(sid, Status.PLAY_FAILED, "play on a busy stream id")
    assert pair.server.stream_state(sid) is S.CLOSED


def test_an_answer_after_the_peer_closed_the_stream_is_dropped() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.play(sid, "x")
    pair.pump()
    pair.client.send_command(sid, "closeStream", 0.0, None)
    pair.pump()
    pair.server.accept_play(sid, "x")  # an auth hook answered late
    assert pair.server.data_to_send() == b""
    assert pair.server.active == set()


def test_accepting_a_play_nobody_requested_is_a_local_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    with pytest.raises(LocalProtocolError):
        pair.server.accept_play(sid, "x")
    with pytest.raises(LocalProtocolError):
        pair.server.accept_publish(sid, "x")


@settings(deadline=None, max_examples=200)
@given(st.lists(st.sampled_from(list(I)), max_size=30))
def test_any_sequence_of_inputs_moves_by_the_table_or_raises(steps: list[NetStreamInput]) -> None:
    streams = at(S.CREATED)
    for event in steps:
        before = streams.state(1)
        assert before is not None
        try:
            streams.apply(1, event)
        except ProtocolError:
            assert (before, event) not in _TRANSITIONS
            assert streams.state(1) is before
        else:
            assert streams.state(1) is _TRANSITIONS[(before, event)][0]


def test_a_play_pipelined_behind_create_stream_is_accepted_when_the_id_arrives() -> None:
    # Load tools and floods send connect, createStream and play in one write,
    # counting on the lowest free id (1): the answer naming it is no clash.
    pair = ConnectionPair()
    pair.client.connect()
    pair.client.create_stream()
    pair.client.play(1, "x")
    pair.handshake()
    pair.server.accept_connect()
    server_events, client_events = pair.pump()
    assert [e.stream_id for e in events_of(client_events, StreamCreated)] == [1]
    assert [e.stream_id for e in events_of(server_events, PlayRequested)] == [1]
    pair.server.accept_play(1, "x")
    _, client_events = pair.pump()
    assert [e.stream_id for e in events_of(client_events, PlayStarted)] == [1]


def test_a_create_stream_answer_naming_a_stream_in_use_is_still_an_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    tid = pair.client.create_stream()
    pair.client.data_to_send()  # the server never sees it: the answer below is forged
    forged = amf0.encode("_result", tid, None, float(sid))
    with pytest.raises(RemoteProtocolError, match="in use"):
        pair.send_raw_to_client(MsgType.COMMAND_AMF0, 0, forged)
