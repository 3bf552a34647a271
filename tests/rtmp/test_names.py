"""App and stream names a peer may not use: refused with a status, then the connection ends."""

from __future__ import annotations

import pytest

from streamgate.errors import RemoteProtocolError
from streamgate.rtmp.connection import ConnState
from streamgate.rtmp.events import ConnectRejected, PlayRequested, PublishRequested, StatusReceived
from streamgate.rtmp.messages import Status
from tests.rtmp.pair import ConnectionPair, events_of

BAD = [
    "x\nFAKE-INJECTED-LINE ERROR streamgate: forged",
    "nul\x00byte",
    "del\x7f",
    "c1\x85next-line",
    "evil\u202etxt.exe",
    "isolate\u2066x\u2069",
    "mark\u200e",
    "line\u2028separator",
    "not-utf8-\udcff",
    "x" * 65535,  # the largest AMF0 short string
]


def refused_status(pair: ConnectionPair, command: str, name: str) -> StatusReceived:
    pair.connect()
    sid = pair.create_stream()
    if command == "play":
        pair.client.play(sid, name)
    else:
        pair.client.publish(sid, name)
    with pytest.raises(RemoteProtocolError) as err:
        pair.pump()
    assert "invalid stream name" in err.value.description
    assert pair.server.state is ConnState.CLOSED
    # The goodbye was queued before the error: the session flushes it, then closes.
    pair.deliver_to_client(pair.server.data_to_send())
    assert not events_of(pair.server_events, PlayRequested)
    assert not events_of(pair.server_events, PublishRequested)
    (status,) = events_of(pair.client_events, StatusReceived)
    return status  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", BAD, ids=range(len(BAD)))
def test_a_play_of_an_unprintable_or_huge_name_is_refused(name: str) -> None:
    status = refused_status(ConnectionPair(), "play", name)
    assert (status.level, status.code) == ("error", Status.PLAY_FAILED)
    assert status.description.startswith("invalid stream name")


@pytest.mark.parametrize("name", BAD, ids=range(len(BAD)))
def test_a_publish_of_an_unprintable_or_huge_name_is_refused(name: str) -> None:
    status = refused_status(ConnectionPair(), "publish", name)
    assert (status.level, status.code) == ("error", Status.PUBLISH_BAD_NAME)
    assert status.description.startswith("invalid stream name")


def test_a_bad_character_in_the_query_is_refused_too() -> None:
    status = refused_status(ConnectionPair(), "play", "cam?token=a\r\nb")
    assert status.code == Status.PLAY_FAILED


@pytest.mark.parametrize("app", ["li\nve", "live\u202e", "a" * 2000])
def test_a_connect_to_an_unprintable_or_huge_app_is_rejected(app: str) -> None:
    pair = ConnectionPair(app=app)
    pair.client.connect()
    with pytest.raises(RemoteProtocolError) as err:
        pair.pump()
    assert "invalid app name" in err.value.description
    pair.deliver_to_client(pair.server.data_to_send())
    (rejected,) = events_of(pair.client_events, ConnectRejected)
    assert rejected.code == Status.CONNECT_REJECTED
    assert rejected.description.startswith("invalid app name")


@pytest.mark.parametrize("name", ["café", "стрим", "名前", "a b", "x" * 1024, "cam?k=v&x=%0A"])
def test_printable_names_are_played(name: str) -> None:
    pair = ConnectionPair()
    pair.connect()
    sid = pair.create_stream()
    pair.client.play(sid, name)
    server_events, _ = pair.pump()
    (requested,) = events_of(server_events, PlayRequested)
    assert f"{requested.name}?{requested.query}".rstrip("?") == name
