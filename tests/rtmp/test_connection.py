"""Tests for streamgate.rtmp.connection, driving a client core against a server core.

Everything runs in memory through :class:`tests.rtmp.pair.ConnectionPair`; no
event loop, no socket, no clock (time is passed in).
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgate.errors import ProtocolError, RemoteProtocolError
from streamgate.rtmp import amf0
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.connection import ConnectionLimits, ConnState, ServerConnection
from streamgate.rtmp.events import (
    CommandIgnored,
    Connected,
    ConnectRejected,
    ConnectRequested,
    DataReceived,
    Event,
    MediaReceived,
    PlayEnded,
    PlayRequested,
    PlayStarted,
    PublishRequested,
    ReceiveToggled,
    StatusReceived,
    StreamBegan,
    StreamClosed,
    StreamCreated,
    StreamEnded,
)
from streamgate.rtmp.messages import MsgType, Status, UserControl, user_control
from tests.rtmp.pair import RAW_CSID, ConnectionPair, command_values, events_of

PROPERTIES = settings(
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

AUDIO, VIDEO = MsgType.AUDIO, MsgType.VIDEO


def statuses(events: list[Event]) -> list[tuple[int, str, str]]:
    return [(e.stream_id, e.level, e.code) for e in events_of(events, StatusReceived)]


def results_for(pair: ConnectionPair, tid: float) -> list[list[Any]]:
    """The ``_result``/``_error`` commands the server sent for one transaction."""
    return [
        values
        for values in pair.server_wire.commands()
        if values[0] in ("_result", "_error") and values[1] == tid
    ]


# ---------------------------------------------------------------- connect


def test_connect_and_accept() -> None:
    pair = ConnectionPair()
    connected = pair.connect(extra={"custom": "x"})
    (requested,) = events_of(pair.server_events, ConnectRequested)
    assert requested.app == "live"
    assert requested.query == ""
    assert requested.tc_url == "rtmp://localhost/live"
    assert requested.properties["flashVer"] == "LNX 9,0,124,2"
    assert requested.properties["custom"] == "x"
    assert connected.info["code"] == Status.CONNECT_SUCCESS
    assert connected.info["level"] == "status"
    assert "fmsVer" in connected.properties
    assert pair.server.state is ConnState.CONNECTED
    assert pair.client.state is ConnState.CONNECTED
    assert pair.server.app == "live"


def test_accept_connect_announces_window_bandwidth_and_chunk_size() -> None:
    limits = ConnectionLimits(window_ack_size=123456, chunk_size=60000)
    pair = ConnectionPair(server_limits=limits)
    pair.connect()
    (window,) = pair.server_wire.of_type(MsgType.WINDOW_ACK_SIZE)
    assert window.payload == struct.pack(">I", 123456)
    (bandwidth,) = pair.server_wire.of_type(MsgType.SET_PEER_BANDWIDTH)
    assert bandwidth.payload == struct.pack(">IB", 123456, 2)
    (chunk,) = pair.server_wire.of_type(MsgType.SET_CHUNK_SIZE)
    assert chunk.payload == struct.pack(">I", 60000)
    assert pair.client.peer_chunk_size == 60000
    assert pair.server.chunk_size == 60000
    # The client answers Set Peer Bandwidth with its own window announcement.
    (echo,) = pair.client_wire.of_type(MsgType.WINDOW_ACK_SIZE)
    assert echo.payload == struct.pack(">I", 123456)


@pytest.mark.parametrize(
    ("tc_url", "app", "want_app", "want_query"),
    [
        ("rtmp://h/live", "live", "live", ""),
        ("rtmp://h/live?token=abc", "live", "live", "token=abc"),
        ("rtmp://h/live", "live?key=1", "live", "key=1"),
        ("rtmp://h/live", "/live/", "live", ""),
    ],
)
def test_connect_app_and_query(tc_url: str, app: str, want_app: str, want_query: str) -> None:
    pair = ConnectionPair(tc_url=tc_url, app=app)
    pair.connect()
    (requested,) = events_of(pair.server_events, ConnectRequested)
    assert (requested.app, requested.query, requested.tc_url) == (want_app, want_query, tc_url)


def test_reject_connect() -> None:
    pair = ConnectionPair()
    pair.client.connect()
    pair.pump()
    pair.server.reject_connect("go away")
    _, client_events = pair.pump()
    assert events_of(client_events, ConnectRejected) == [
        ConnectRejected(Status.CONNECT_REJECTED, "go away", None)
    ]
    assert pair.server.state is ConnState.CLOSED
    assert pair.client.state is ConnState.CLOSED
    assert pair.server.receive_data(b"anything at all") == []


@pytest.mark.parametrize("where", ["ex", "info"])
def test_connect_rejection_carries_a_redirect(where: str) -> None:
    pair = ConnectionPair()
    pair.client.connect()
    pair.pump()
    info: dict[str, Any] = {
        "level": "error",
        "code": Status.CONNECT_REJECTED,
        "description": "Connection failed: moved",
    }
    if where == "ex":
        info["ex"] = {"code": 302.0, "redirect": "rtmp://other.example/live"}
    else:
        info["redirect"] = "rtmp://other.example/live"
    # The connect transaction id of our client is 1.
    pair.server.send_command(0, "_error", 1.0, None, info)
    _, client_events = pair.pump()
    (rejected,) = events_of(client_events, ConnectRejected)
    assert rejected.redirect == "rtmp://other.example/live"
    assert rejected.code == Status.CONNECT_REJECTED
    assert rejected.description == "Connection failed: moved"
    assert pair.client.state is ConnState.CLOSED


def test_connect_twice_is_a_protocol_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.send_command(0, "connect", 9.0, {"app": "live"})
    with pytest.raises(RemoteProtocolError, match="twice"):
        pair.pump()
    assert pair.server.state is ConnState.CLOSED


def test_accept_connect_without_a_connect_is_a_local_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    with pytest.raises(ProtocolError):
        pair.server.accept_connect()


# A CORE BUG shows up here for deleteStream, closeStream, getStreamLength,
# receiveAudio and receiveVideo: they never check that connect came first
# (connection.py: _cmd_delete_stream, _cmd_close_stream,
# _cmd_get_stream_length, _cmd_receive, _cmd_receive_video), although the
# module promises that before connect only connect is accepted.
@pytest.mark.parametrize(
    "name",
    [
        "createStream",
        "play",
        "publish",
        "releaseStream",
        "FCPublish",
        "FCUnpublish",
        "FCSubscribe",
        "play2",
        "someUnknownCommand",
        "deleteStream",
        "closeStream",
        "getStreamLength",
        "receiveAudio",
        "receiveVideo",
    ],
)
def test_commands_before_connect_are_a_protocol_error(name: str) -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client.send_command(1, name, 2.0, None, 1.0, True)
    with pytest.raises(RemoteProtocolError):
        pair.pump()
    assert pair.server.state is ConnState.CLOSED


# CORE BUG: createStream pipelined behind connect is answered at once, before
# the application has accepted the connect, so the client sees its stream
# created before it is connected (and would even if the connect is rejected).
def test_commands_pipelined_behind_connect_are_answered_after_it() -> None:
    pair = ConnectionPair()
    pair.client.connect()
    create_tid = pair.client.create_stream()
    server_events, client_events = pair.pump()
    assert events_of(server_events, ConnectRequested)
    assert not events_of(client_events, StreamCreated)  # nothing before connect is accepted
    pair.server.accept_connect()
    _, client_events = pair.pump()
    answered = [v[1] for v in pair.server_wire.commands() if v[0] == "_result"]
    assert answered == [1.0, create_tid]
    assert [type(e) for e in client_events if isinstance(e, Connected | StreamCreated)] == [
        Connected,
        StreamCreated,
    ]


# ---------------------------------------------------------------- streams


def test_create_stream_hands_out_the_lowest_free_id() -> None:
    pair = ConnectionPair()
    pair.connect()
    assert [pair.create_stream() for _ in range(3)] == [1, 2, 3]
    pair.client.delete_stream(2)
    server_events, _ = pair.pump()
    assert events_of(server_events, StreamClosed) == [StreamClosed(2, "deleteStream")]
    assert pair.create_stream() == 2
    assert pair.create_stream() == 4
    assert pair.server.streams == {1, 2, 3, 4}


def test_too_many_streams_are_refused_with_an_error() -> None:
    pair = ConnectionPair(server_limits=ConnectionLimits(max_streams=2))
    pair.connect()
    assert [pair.create_stream(), pair.create_stream()] == [1, 2]
    tid = pair.client.create_stream()
    _, client_events = pair.pump()
    assert statuses(client_events) == [(0, "error", "NetConnection.Call.Failed")]
    assert results_for(pair, tid)[0][0] == "_error"
    assert pair.server.state is ConnState.CONNECTED


def test_close_stream_keeps_the_id_and_delete_stream_frees_it() -> None:
    pair = ConnectionPair()
    stream_id = pair.playing()
    assert pair.server.active == {stream_id}
    pair.client.send_command(stream_id, "closeStream", 0.0, None)
    server_events, _ = pair.pump()
    assert events_of(server_events, StreamClosed) == [StreamClosed(stream_id, "closeStream")]
    assert pair.server.active == set()
    assert pair.server.streams == {stream_id}
    pair.client.delete_stream(stream_id)
    server_events, _ = pair.pump()
    assert events_of(server_events, StreamClosed) == [StreamClosed(stream_id, "deleteStream")]
    assert pair.server.streams == set()


def test_delete_stream_of_an_unknown_id_is_quiet() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.delete_stream(7)
    server_events, _ = pair.pump()
    assert server_events == []


# CORE BUG: connection.py _cmd_delete_stream does int(_num(args[1], 0.0)),
# which raises ValueError for NaN and OverflowError for +-inf: a peer can
# crash the connection with something other than a ProtocolError.
@pytest.mark.parametrize("stream_id", [float("nan"), float("inf"), float("-inf")])
def test_delete_stream_with_a_non_finite_id_is_not_a_crash(stream_id: float) -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.send_command(0, "deleteStream", 0.0, None, stream_id)
    try:
        server_events, _ = pair.pump()
    except ProtocolError:
        return
    assert not events_of(server_events, StreamClosed)


def test_get_stream_length_is_answered() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.send_command(stream_id, "getStreamLength", 5.0, None, "stream")
    server_events, _ = pair.pump()
    assert server_events == []
    assert results_for(pair, 5.0) == [["_result", 5.0, None, 0.0]]


@pytest.mark.parametrize("name", ["play2", "pause", "seek", "FCUnknown", "setDataFrame"])
def test_commands_we_do_not_act_on_are_reported_as_ignored(name: str) -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.send_command(stream_id, name, 0.0, None, {"streamName": "x"})
    server_events, _ = pair.pump()
    assert server_events == [CommandIgnored(stream_id, name)]
    assert pair.server.state is ConnState.CONNECTED


@pytest.mark.parametrize(("name", "kind"), [("receiveAudio", "audio"), ("receiveVideo", "video")])
@pytest.mark.parametrize("flag", [True, False])
def test_receive_audio_and_video_toggles(name: str, kind: str, flag: bool) -> None:
    pair = ConnectionPair()
    stream_id = pair.playing()
    pair.client.send_command(stream_id, name, 0.0, None, flag)
    server_events, _ = pair.pump()
    assert server_events == [ReceiveToggled(stream_id, kind, flag)]


def test_command_without_a_transaction_id_is_a_protocol_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    with pytest.raises(RemoteProtocolError, match="transaction"):
        pair.send_raw_to_server(MsgType.COMMAND_AMF0, 0, amf0.encode("createStream"))


# ---------------------------------------------------------------- play


def test_play_request_is_parsed_with_defaults() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.play(stream_id, "cam1?token=secret&x=1")
    server_events, _ = pair.pump()
    assert events_of(server_events, PlayRequested) == [
        PlayRequested(stream_id, "cam1", "token=secret&x=1", -2.0, -1.0, True)
    ]
    # The client follows play with a Set Buffer Length for that stream.
    (buffer,) = pair.client_wire.of_type(MsgType.USER_CONTROL)
    assert buffer.payload == struct.pack(">HII", UserControl.SET_BUFFER_LENGTH, stream_id, 3000)


@pytest.mark.parametrize(
    ("args", "start", "duration", "reset"),
    [
        (("cam", 5.0, 10.0, False), 5.0, 10.0, False),
        (("cam", -1.0), -1.0, -1.0, True),
        (("cam", 0.0, -1.0, True), 0.0, -1.0, True),
        (("cam", "bad", None, 1.0), -2.0, -1.0, True),  # wrong types fall back to defaults
        (("cam", True), -2.0, -1.0, True),  # a boolean is not a start time
    ],
)
def test_play_start_duration_and_reset(
    args: tuple[Any, ...], start: float, duration: float, reset: bool
) -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.send_command(stream_id, "play", 0.0, None, *args)
    server_events, _ = pair.pump()
    assert events_of(server_events, PlayRequested) == [
        PlayRequested(stream_id, "cam", "", start, duration, reset)
    ]


def test_play_on_a_stream_that_was_not_created_is_a_protocol_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.play(5, "cam")
    with pytest.raises(RemoteProtocolError, match="not created"):
        pair.pump()


def test_accept_play_sends_what_players_expect() -> None:
    pair = ConnectionPair()
    stream_id = pair.playing("cam")
    after_start = pair.client_events[pair.client_events.index(StreamBegan(stream_id)) :]
    assert [type(e) for e in after_start] == [
        StreamBegan,
        StatusReceived,
        StatusReceived,
        PlayStarted,  # what the Play.Start means, right after it
        DataReceived,
    ]
    assert statuses(after_start) == [
        (stream_id, "status", Status.PLAY_RESET),
        (stream_id, "status", Status.PLAY_START),
    ]
    assert after_start[-1] == DataReceived(stream_id, 0, ("|RtmpSampleAccess", True, True))
    assert pair.server.active == {stream_id}


def test_accept_play_on_an_unknown_stream_is_a_local_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    with pytest.raises(ProtocolError):
        pair.server.accept_play(3, "cam")


def test_refused_play_reaches_the_client_and_closes_the_server() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.play(stream_id, "missing")
    pair.pump()
    pair.server.refuse(stream_id, Status.PLAY_STREAM_NOT_FOUND, "No such stream")
    _, client_events = pair.pump()
    assert events_of(client_events, StatusReceived) == [
        StatusReceived(stream_id, "error", Status.PLAY_STREAM_NOT_FOUND, "No such stream")
    ]
    assert pair.server.state is ConnState.CLOSED
    assert pair.server.active == set()
    assert pair.server.get_timer() is None


def test_end_stream_tells_the_player() -> None:
    pair = ConnectionPair()
    stream_id = pair.playing()
    pair.server.end_stream(stream_id, Status.PLAY_STOP, "Stopped.")
    _, client_events = pair.pump()
    assert client_events == [
        StreamEnded(stream_id),
        PlayEnded(stream_id, "StreamEOF", ""),  # the first of the two ends the play
        StatusReceived(stream_id, "status", Status.PLAY_STOP, "Stopped."),
    ]
    assert pair.server.active == set()


# ---------------------------------------------------------------- publish


def test_publish_flow() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.publish(stream_id, "cam?key=k", "record")
    server_events, _ = pair.pump()
    assert events_of(server_events, PublishRequested) == [
        PublishRequested(stream_id, "cam", "key=k", "record")
    ]
    # releaseStream and FCPublish were answered with _result.
    sent = pair.client_wire.commands()
    release = next(v for v in sent if v[0] == "releaseStream")
    fcpublish = next(v for v in sent if v[0] == "FCPublish")
    assert release[3] == fcpublish[3] == "cam?key=k"
    assert results_for(pair, release[1]) == [["_result", release[1], None, amf0.UNDEFINED]]
    assert results_for(pair, fcpublish[1]) == [["_result", fcpublish[1], None, amf0.UNDEFINED]]

    pair.server.accept_publish(stream_id, "cam")
    _, client_events = pair.pump()
    assert statuses(client_events) == [(stream_id, "status", Status.PUBLISH_START)]
    assert pair.server.active == {stream_id}
    assert pair.server.get_timer() is None


def test_publish_type_defaults_to_live() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.send_command(stream_id, "publish", 0.0, None, "cam")
    server_events, _ = pair.pump()
    assert events_of(server_events, PublishRequested) == [
        PublishRequested(stream_id, "cam", "", "live")
    ]


def test_refused_publish() -> None:
    pair = ConnectionPair()
    pair.connect()
    stream_id = pair.create_stream()
    pair.client.publish(stream_id, "taken")
    pair.pump()
    pair.server.refuse(stream_id, Status.PUBLISH_BAD_NAME, "Stream already publishing")
    _, client_events = pair.pump()
    assert statuses(client_events) == [(stream_id, "error", Status.PUBLISH_BAD_NAME)]
    assert pair.server.state is ConnState.CLOSED


def test_publish_on_a_stream_that_was_not_created_is_a_protocol_error() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.send_command(3, "publish", 0.0, None, "cam", "live")
    with pytest.raises(RemoteProtocolError, match="not created"):
        pair.pump()


# ---------------------------------------------------------------- media and data


def test_media_goes_from_publisher_to_server() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    pair.client.send_media(stream_id, VIDEO, 0, b"\x17\x00key")
    pair.client.send_media(stream_id, AUDIO, 21, b"\xaf\x01aac")
    pair.client.send_media(stream_id, VIDEO, 40, b"\x27\x01inter" * 100)
    server_events, _ = pair.pump()
    assert server_events == [
        MediaReceived(stream_id, VIDEO, 0, b"\x17\x00key"),
        MediaReceived(stream_id, AUDIO, 21, b"\xaf\x01aac"),
        MediaReceived(stream_id, VIDEO, 40, b"\x27\x01inter" * 100),
    ]


@PROPERTIES
@given(
    st.lists(
        st.tuples(
            st.sampled_from([AUDIO, VIDEO]),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=3000),
        ),
        max_size=12,
    ),
    st.integers(128, 5000),  # the server refuses chunk sizes below 128
    st.integers(0, 2**16),
)
def test_media_round_trips_client_to_server(
    frames: list[tuple[int, int, bytes]], chunk_size: int, seed: int
) -> None:
    pair = ConnectionPair(seed=seed)
    stream_id = pair.publishing()
    pair.client.set_chunk_size(chunk_size)
    for type_id, timestamp, payload in frames:
        pair.client.send_media(stream_id, type_id, timestamp, payload)
    server_events, _ = pair.pump()
    assert server_events == [MediaReceived(stream_id, t, ts, p) for t, ts, p in frames]
    assert pair.server.peer_chunk_size == chunk_size


def test_data_messages_reach_the_other_side() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    meta = amf0.ECMAArray({"width": 1280.0, "height": 720.0})
    pair.client.send_data(stream_id, "@setDataFrame", "onMetaData", meta, timestamp=0)
    server_events, _ = pair.pump()
    assert server_events == [DataReceived(stream_id, 0, ("@setDataFrame", "onMetaData", meta))]


def test_amf3_data_messages_lose_their_leading_zero() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    body = b"\x00" + amf0.encode("onMetaData", {"duration": 0.0})
    server_events = pair.send_raw_to_server(MsgType.DATA_AMF3, stream_id, body, timestamp=7)
    assert server_events == [DataReceived(stream_id, 7, ("onMetaData", {"duration": 0.0}))]


def _flv_tag(type_id: int, timestamp: int, body: bytes) -> bytes:
    """One sub-message of an aggregate: an FLV tag with its previous-tag-size."""
    return (
        bytes([type_id])
        + len(body).to_bytes(3, "big")
        + (timestamp & 0xFFFFFF).to_bytes(3, "big")
        + bytes([timestamp >> 24 & 0xFF])
        + b"\x00\x00\x00"
        + body
        + (11 + len(body)).to_bytes(4, "big")
    )


def test_aggregate_messages_are_split_with_rebased_timestamps() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    meta = amf0.encode("onMetaData", {"framerate": 25.0})
    payload = (
        _flv_tag(VIDEO, 1000, b"\x17\x01v1")
        + _flv_tag(AUDIO, 1040, b"\xaf\x01a1")
        + _flv_tag(MsgType.DATA_AMF0, 1050, meta)
        + _flv_tag(VIDEO, 1080, b"\x27\x01v2")
        + _flv_tag(77, 1090, b"ignored type")
    )
    server_events = pair.send_raw_to_server(MsgType.AGGREGATE, stream_id, payload, timestamp=5000)
    assert server_events == [
        MediaReceived(stream_id, VIDEO, 5000, b"\x17\x01v1"),
        MediaReceived(stream_id, AUDIO, 5040, b"\xaf\x01a1"),
        DataReceived(stream_id, 5050, ("onMetaData", {"framerate": 25.0})),
        MediaReceived(stream_id, VIDEO, 5080, b"\x27\x01v2"),
    ]


def test_aggregate_sub_timestamps_use_the_extension_byte() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    base = 0x01FFFFF0
    payload = _flv_tag(AUDIO, base, b"a") + _flv_tag(AUDIO, base + 0x20, b"b")
    server_events = pair.send_raw_to_server(MsgType.AGGREGATE, stream_id, payload, timestamp=100)
    assert server_events == [
        MediaReceived(stream_id, AUDIO, 100, b"a"),
        MediaReceived(stream_id, AUDIO, 132, b"b"),
    ]


def test_aggregate_with_an_overrunning_sub_message_is_a_protocol_error() -> None:
    pair = ConnectionPair()
    stream_id = pair.publishing()
    bad = _flv_tag(VIDEO, 0, b"0123456789")[:-8]
    with pytest.raises(RemoteProtocolError, match="aggregate"):
        pair.send_raw_to_server(MsgType.AGGREGATE, stream_id, bad)


# ---------------------------------------------------------------- AMF3 commands


def test_amf3_command_messages_are_accepted() -> None:
    pair = ConnectionPair()
    pair.handshake()

    def amf3(*values: Any) -> bytes:
        return b"\x00" + amf0.encode(*values)

    server_events = pair.send_raw_to_server(
        MsgType.COMMAND_AMF3, 0, amf3("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"})
    )
    assert [type(e) for e in server_events] == [ConnectRequested]
    pair.server.accept_connect()
    pair.pump()
    pair.send_raw_to_server(MsgType.COMMAND_AMF3, 0, amf3("createStream", 2.0, None))
    assert results_for(pair, 2.0) == [["_result", 2.0, None, 1.0]]
    server_events = pair.send_raw_to_server(
        MsgType.COMMAND_AMF3, 1, amf3("play", 0.0, None, "cam", -1.0)
    )
    assert server_events == [PlayRequested(1, "cam", "", -1.0, -1.0, True)]


def test_client_accepts_amf3_status() -> None:
    pair = ConnectionPair()
    pair.connect()
    body = b"\x00" + amf0.encode(
        "onStatus", 0.0, None, {"level": "status", "code": "X.Y", "description": "d"}
    )
    assert pair.send_raw_to_client(MsgType.COMMAND_AMF3, 1, body) == [
        StatusReceived(1, "status", "X.Y", "d")
    ]


# ---------------------------------------------------------------- protocol control


def test_ping_request_is_answered_with_the_same_value() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.client.send_ping(0xDEADBEEF)
    pair.pump()
    responses = [
        m.payload
        for m in pair.server_wire.of_type(MsgType.USER_CONTROL)
        if m.payload[:2] == struct.pack(">H", UserControl.PING_RESPONSE)
    ]
    assert responses == [user_control(UserControl.PING_RESPONSE, 0xDEADBEEF)]


def test_server_ping_is_answered_by_the_client() -> None:
    pair = ConnectionPair()
    pair.playing()
    pair.server.send_ping(1234)
    pair.pump()
    responses = [
        m.payload
        for m in pair.client_wire.of_type(MsgType.USER_CONTROL)
        if m.payload[:2] == struct.pack(">H", UserControl.PING_RESPONSE)
    ]
    assert responses == [user_control(UserControl.PING_RESPONSE, 1234)]


def _acks(wire_messages: list[Any]) -> list[int]:
    return [
        struct.unpack(">I", m.payload)[0]
        for m in wire_messages
        if m.type_id == MsgType.ACKNOWLEDGEMENT
    ]


def test_client_acknowledges_each_window_of_bytes() -> None:
    window = 2000
    pair = ConnectionPair(server_limits=ConnectionLimits(window_ack_size=window))
    stream_id = pair.playing()
    last_ack = 0
    acks_seen = 0
    for i in range(40):
        pair.server.send_data(stream_id, "onCuePoint", "x" * 150, timestamp=i)
        pair.pump()
        received = pair.server_wire.after_handshake  # everything the client was given
        acks = _acks(pair.client_wire.messages)
        if received - last_ack >= window:
            # Crossing a window triggers exactly one ack, numbered with the byte count.
            assert acks[acks_seen:] == [received]
            last_ack = received
            acks_seen += 1
        else:
            assert len(acks) == acks_seen
    assert acks_seen >= 3


def test_server_acknowledges_the_publisher_once_the_window_is_crossed() -> None:
    window = 5000
    pair = ConnectionPair(server_limits=ConnectionLimits(window_ack_size=window))
    stream_id = pair.publishing()
    assert _acks(pair.server_wire.messages) == []
    before = pair.client_wire.after_handshake
    assert before < window
    pair.client.send_media(stream_id, VIDEO, 0, bytes(window - before - 100))
    pair.pump()
    assert _acks(pair.server_wire.messages) == []
    pair.client.send_media(stream_id, VIDEO, 40, bytes(200))
    pair.pump()
    assert _acks(pair.server_wire.messages) == [pair.client_wire.after_handshake]


def test_no_acknowledgements_without_an_announced_window() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client.connect()
    pair.pump()  # connect not accepted: no window was announced to the server
    pair.send_raw_to_server(MsgType.AUDIO, 0, bytes(10000))
    assert _acks(pair.server_wire.messages) == []


@pytest.mark.parametrize(
    ("type_id", "payload"),
    [
        (MsgType.WINDOW_ACK_SIZE, b"\x00\x01"),
        (MsgType.SET_PEER_BANDWIDTH, b"\x00\x01\x02\x03"),
        (MsgType.USER_CONTROL, b"\x00\x06\x00"),
    ],
)
def test_short_protocol_control_messages_are_protocol_errors(type_id: int, payload: bytes) -> None:
    pair = ConnectionPair()
    pair.connect()
    with pytest.raises(RemoteProtocolError, match="shorter"):
        pair.send_raw_to_server(type_id, 0, payload)
    assert pair.server.state is ConnState.CLOSED


def test_unknown_message_types_are_skipped() -> None:
    pair = ConnectionPair()
    pair.connect()
    assert pair.send_raw_to_server(99, 0, b"whatever") == []
    assert pair.server.state is ConnState.CONNECTED


# ---------------------------------------------------------------- timers


def test_timers_follow_the_connection_through_its_stages() -> None:
    limits = ConnectionLimits(handshake_timeout=5.0, command_timeout=10.0)
    pair = ConnectionPair(now=100.0, server_limits=limits, client_limits=limits)
    server, client = pair.server, pair.client
    assert server.get_timer() == 105.0
    assert client.get_timer() == 105.0
    server.handle_timer(104.999)
    client.handle_timer(104.999)

    pair.handshake()
    assert server.get_timer() == 110.0
    assert client.get_timer() == 110.0
    server.handle_timer(109.999)
    client.handle_timer(109.999)

    pair.connect()
    assert client.get_timer() is None  # connected: nothing more to wait for
    assert server.get_timer() == 110.0  # no stream yet
    stream_id = pair.create_stream()
    pair.client.play(stream_id, "x")
    pair.pump()
    assert server.get_timer() == 110.0  # asked to play, not playing yet
    server.accept_play(stream_id, "x")
    pair.pump()
    assert server.get_timer() is None
    server.handle_timer(10_000.0)  # nothing is due
    assert server.state is ConnState.CONNECTED


@pytest.mark.parametrize("late", [105.0, 1e9])
def test_handshake_timeout(late: float) -> None:
    pair = ConnectionPair(now=100.0, server_limits=ConnectionLimits(handshake_timeout=5.0))
    with pytest.raises(RemoteProtocolError, match="handshake"):
        pair.server.handle_timer(late)
    assert pair.server.state is ConnState.CLOSED
    assert pair.server.receive_data(pair.client.data_to_send()) == []


def test_command_timeout() -> None:
    limits = ConnectionLimits(handshake_timeout=5.0, command_timeout=10.0)
    pair = ConnectionPair(now=0.0, server_limits=limits, client_limits=limits)
    pair.handshake()
    with pytest.raises(RemoteProtocolError, match="commands"):
        pair.server.handle_timer(10.0)
    assert pair.server.state is ConnState.CLOSED
    with pytest.raises(RemoteProtocolError, match="commands"):
        pair.client.handle_timer(10.5)
    assert pair.client.state is ConnState.CLOSED


# ---------------------------------------------------------------- handshake at this level


def test_bad_handshake_version_closes_the_connection() -> None:
    pair = ConnectionPair()
    c0c1 = bytearray(pair.client.data_to_send())
    c0c1[0] = 6  # RTMPE
    with pytest.raises(RemoteProtocolError, match="version"):
        pair.server.receive_data(bytes(c0c1))
    assert pair.server.state is ConnState.CLOSED


def test_commands_queued_before_the_handshake_follow_it() -> None:
    pair = ConnectionPair()
    pair.client.connect()
    tid = pair.client.create_stream()
    c0c1 = pair.client.data_to_send()
    assert len(c0c1) == 1537  # only C0C1 until the server answers
    server_events = pair.deliver_to_server(c0c1)
    more, _ = pair.pump()
    server_events += more
    assert [type(e) for e in server_events] == [ConnectRequested]
    assert [v[:2] for v in pair.client_wire.commands()] == [["connect", 1.0], ["createStream", tid]]


@pytest.mark.parametrize("seed", range(8))
def test_delivery_in_random_pieces_gives_the_same_events(seed: int) -> None:
    def session(pair: ConnectionPair) -> tuple[list[Event], list[Event]]:
        stream_id = pair.publishing("cam")
        for i in range(20):
            pair.client.send_media(stream_id, VIDEO if i % 3 else AUDIO, i * 33, bytes([i]) * 900)
        pair.client.send_data(stream_id, "@setDataFrame", "onMetaData", {"w": 1.0})
        pair.server.send_ping(99)
        pair.client.delete_stream(stream_id)
        pair.pump()
        return pair.server_events, pair.client_events

    whole = session(ConnectionPair())
    pieces = session(ConnectionPair(seed=seed, max_piece=1 + seed * 50))
    assert pieces == whole


# ---------------------------------------------------------------- fuzzing


_amf_scalars = st.one_of(
    st.floats(), st.booleans(), st.text(max_size=20), st.none(), st.just(amf0.UNDEFINED)
)
_amf_values = st.recursive(
    _amf_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# Values that number conversions in command handlers trip over.
_awkward_numbers = st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, -1.0, 0.5, 2.0**31, 2.0**64, 1e308]
)
_COMMAND_NAMES = [
    "connect", "createStream", "play", "play2", "publish", "deleteStream", "closeStream",
    "getStreamLength", "receiveAudio", "receiveVideo", "releaseStream", "FCPublish",
    "FCUnpublish", "_result", "_error", "onStatus", "onBWDone", "_onbwcheck", "close", "x",
]  # fmt: skip
_command_bodies = st.builds(
    lambda name, tid, args: amf0.encode(name, tid, *args),
    st.sampled_from(_COMMAND_NAMES),
    st.one_of(st.floats(), st.integers(0, 10).map(float), st.none(), st.text(max_size=3)),
    # Numbers are what the handlers convert, so they come often.
    st.lists(st.one_of(st.floats(), _amf_values), max_size=5),
)
_messages = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22, 99]),
    st.sampled_from([0, 1, 2, 3]),
    st.one_of(st.binary(max_size=64), _command_bodies),
)


def _prepared(stage: str, seed: int) -> ConnectionPair:
    pair = ConnectionPair(seed=seed)
    if stage == "handshake":
        pair.handshake()
    elif stage == "connected":
        pair.connect()
        pair.create_stream()
    else:
        pair.playing()
    return pair


def _feed(feed: Any, pieces: list[bytes]) -> None:
    try:
        for piece in pieces:
            events = feed(piece)
            assert all(isinstance(e, Event) for e in events)
    except ProtocolError:
        pass


@PROPERTIES
@given(
    st.sampled_from(["handshake", "connected", "playing"]),
    st.sampled_from(["server", "client"]),
    st.lists(st.binary(max_size=200), max_size=6),
)
def test_arbitrary_bytes_after_the_handshake_give_events_or_protocol_error(
    stage: str, side: str, pieces: list[bytes]
) -> None:
    pair = _prepared(stage, seed=1)
    receiver = pair.server if side == "server" else pair.client
    _feed(receiver.receive_data, pieces)


@PROPERTIES
@given(
    st.sampled_from(["handshake", "connected", "playing"]),
    st.sampled_from(["server", "client"]),
    st.lists(_messages, min_size=1, max_size=6),
)
def test_well_framed_hostile_messages_give_events_or_protocol_error(
    stage: str, side: str, messages: list[tuple[int, int, bytes]]
) -> None:
    pair = _prepared(stage, seed=2)
    receiver = pair.server if side == "server" else pair.client
    chunk_size = pair.client.chunk_size if side == "server" else pair.server.chunk_size
    pieces = []
    for type_id, stream_id, payload in messages:
        if type_id == MsgType.COMMAND_AMF3 or type_id == MsgType.DATA_AMF3:
            payload = b"\x00" + payload
        pieces.append(encode_message(RAW_CSID, 0, type_id, stream_id, payload, chunk_size))
    _feed(receiver.receive_data, pieces)
    if receiver.state is not ConnState.CLOSED:
        # Whatever it made of the input, the connection still speaks RTMP.
        assert isinstance(receiver.data_to_send(), bytes)


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("name", _COMMAND_NAMES)
@settings(deadline=None, max_examples=15, derandomize=True)
@given(
    st.one_of(_awkward_numbers, st.floats(), st.none(), st.text(max_size=2)),
    st.lists(st.one_of(_awkward_numbers, _amf_values), min_size=1, max_size=4),
)
def test_any_arguments_to_any_command_give_events_or_protocol_error(
    name: str, side: str, tid: Any, args: list[Any]
) -> None:
    # One command at a time, so every handler meets odd arguments in a live connection.
    pair = _prepared("connected", seed=3)
    if side == "server":
        pair.client.send_command(1, name, tid, *args)
    else:
        pair.server.send_command(1, name, tid, *args)
    with contextlib.suppress(ProtocolError):
        pair.pump()


def test_closed_server_ignores_input() -> None:
    server = ServerConnection()
    server.close()
    assert server.receive_data(b"\x03" + bytes(1536)) == []
    assert server.data_to_send() == b""


def test_command_values_helper_strips_the_amf3_marker() -> None:
    pair = ConnectionPair()
    pair.connect()
    pair.send_raw_to_server(MsgType.COMMAND_AMF3, 0, b"\x00" + amf0.encode("x", 3.0, None))
    last = pair.client_wire.messages[-1]
    assert command_values(last) == ["x", 3.0, None]


def test_huge_names_are_refused_and_not_echoed() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.send_command(sid, "play", 0.0, None, "x" * 5000)
    with pytest.raises(RemoteProtocolError) as err:
        pair.pump()
    assert "longer than 1024" in err.value.description
    assert "xxxx" not in err.value.description


def test_media_sink_sees_media_and_events_in_wire_order() -> None:
    """The fast path for media keeps wire order with the events around it."""
    pair = ConnectionPair()
    sid = pair.playing()
    seen: list[object] = []
    pair.client.media_sink = lambda s, t, ts, p: seen.append(("media", ts))
    size = pair.server.chunk_size

    def media(type_id: int, ts: int, payload: bytes) -> bytes:
        return encode_message(RAW_CSID, ts, type_id, sid, payload, size)

    pair.server.send_status(sid, Status.PLAY_UNPUBLISH_NOTIFY, "gone")
    status = pair.server.data_to_send()
    wire = (
        media(MsgType.VIDEO, 1, b"\x17\x01a")
        + status
        + media(MsgType.AUDIO, 2, b"\xaf\x01b")
        + media(MsgType.VIDEO, 3, b"\x27\x01c")
    )
    events = pair.deliver_to_client(wire)  # one read holding all four
    for event in events:
        if isinstance(event, StatusReceived):
            seen.append(("status", event.code))
        elif isinstance(event, MediaReceived):
            seen.append(("media", event.timestamp))
    assert seen == [
        ("media", 1),
        ("status", Status.PLAY_UNPUBLISH_NOTIFY),
        ("media", 2),
        ("media", 3),
    ]
    assert not any(isinstance(e, MediaReceived) and e.timestamp == 1 for e in events)
