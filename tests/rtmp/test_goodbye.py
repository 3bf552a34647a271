"""A fatal error's goodbye: queued by the core before it raises, with the error's words.

The error hierarchy promises that whatever the peer should hear of a fatal
protocol error is queued before the error is raised, so the adapter only
flushes and closes. Once connect was received the peer hears an
``onStatus`` at level error carrying the error's own code and description;
while connect is unanswered, connect is refused with the reason; before
connect nothing can be said.
"""

from __future__ import annotations

import pytest

from streamgate.errors import RemoteProtocolError
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.connection import ConnectionLimits, ConnState
from streamgate.rtmp.events import StatusReceived
from streamgate.rtmp.messages import MsgType, Status
from tests.rtmp.pair import RAW_CSID, ConnectionPair, command_values, events_of


def _goodbyes(pair: ConnectionPair) -> list[StatusReceived]:
    """The error statuses the client decoded from what the server queued."""
    out = pair.server.data_to_send()
    pair.server_wire.feed(out)
    events = []
    for piece in [out] if out else []:
        events.extend(pair.client.receive_data(piece))
    return [e for e in events_of(events, StatusReceived) if e.level == "error"]


def test_a_malformed_command_after_connect_is_answered_with_its_reason() -> None:
    pair = ConnectionPair()
    pair.connect()
    with pytest.raises(RemoteProtocolError) as err:
        # a command message whose name is not a string
        pair.send_raw_to_server(MsgType.COMMAND_AMF0, 0, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert pair.server.state is ConnState.CLOSED
    (goodbye,) = _goodbyes(pair)
    assert goodbye.code == err.value.code == Status.CONNECT_CLOSED
    assert goodbye.description == err.value.description


def test_a_broken_chunk_stream_after_connect_is_answered_with_its_reason() -> None:
    pair = ConnectionPair()
    pair.connect()
    # Set Chunk Size 0: refused by the decoder (straight to the server: the
    # pair's own wire tap would refuse it first).
    raw = encode_message(RAW_CSID, 0, MsgType.SET_CHUNK_SIZE, 0, b"\x00\x00\x00\x00", 128)
    with pytest.raises(RemoteProtocolError, match="chunk size") as err:
        pair.server.receive_data(raw)
    (goodbye,) = _goodbyes(pair)
    assert goodbye.description == err.value.description


def test_the_command_deadline_after_connect_says_why() -> None:
    limits = ConnectionLimits(handshake_timeout=5.0, command_timeout=10.0)
    pair = ConnectionPair(now=0.0, server_limits=limits)
    pair.connect()
    with pytest.raises(RemoteProtocolError, match="commands") as err:
        pair.server.handle_timer(10.0)
    (goodbye,) = _goodbyes(pair)
    assert goodbye.description == err.value.description == "timed out waiting for the commands"


def test_an_error_while_connect_is_unanswered_refuses_connect_with_the_reason() -> None:
    pair = ConnectionPair()
    pair.client.connect()
    for _ in range(20):  # more than the server defers behind an unanswered connect
        pair.client.create_stream()
    with pytest.raises(RemoteProtocolError, match="pipelined") as err:
        pair.pump()
    out = pair.server.data_to_send()
    pair.server_wire.feed(out)
    answers = [command_values(m) for m in pair.server_wire.of_type(MsgType.COMMAND_AMF0)]
    assert [a[0] for a in answers] == ["_error"]
    assert answers[0][3]["code"] == Status.CONNECT_REJECTED
    assert answers[0][3]["description"] == err.value.description


def test_before_connect_there_is_nobody_to_tell() -> None:
    limits = ConnectionLimits(handshake_timeout=5.0, command_timeout=10.0)
    pair = ConnectionPair(now=0.0, server_limits=limits)
    pair.handshake()
    with pytest.raises(RemoteProtocolError):
        pair.server.handle_timer(10.0)
    assert pair.server.data_to_send() == b""


def test_a_refusal_is_the_only_goodbye() -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.send_command(sid, "play", 0.0, None, "bad\nname")
    with pytest.raises(RemoteProtocolError, match="invalid stream name"):
        pair.pump()
    (goodbye,) = _goodbyes(pair)
    assert goodbye.code == Status.PLAY_FAILED  # the refusal, not a second status
