"""NetStream state: one small machine per message stream, for both roles.

A message stream is what ``createStream`` hands out; ``play`` and ``publish``
run on it. :class:`NetStreams` holds the streams of one connection and is the
only place their state changes. The server feeds it the commands it receives
and the answers it sends; the client the commands it sends and the statuses
it receives, classified once by :func:`classify_status`.

Invariants:

* Every state change is a row of ``_TRANSITIONS[(state, input)]`` (h2's
  shape). A pair that is not in the table is a protocol error: a
  :class:`LocalProtocolError` for our own calls, a :class:`RemoteProtocolError`
  for what the peer sent. Statuses from a server are advisory: every
  (state, status) pair has a row, most of them "ignored".
* A row may name the event the client hears (``PlayStarted``, ``PlayRefused``,
  ...): each is produced once, on the transition, never from a status alone.
* Stream id 0 is the NetConnection and never a NetStream. A stream exists from
  ``createStream`` until ``deleteStream``; ``closeStream``, a refusal or an end
  leave it CLOSED, and a CLOSED stream may be played or published again.
* The core does not look at media per message (that is the hot path): a client
  adapter that sees media before Play.Start says so once (``MEDIA_SEEN``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Final

from streamgate.errors import LocalProtocolError, RemoteProtocolError
from streamgate.rtmp.events import (
    Event,
    PlayEnded,
    PlayRefused,
    PlayStarted,
    PublishRefused,
    PublishStarted,
)
from streamgate.rtmp.messages import Status

__all__ = [
    "STREAM_DRY",
    "STREAM_EOF",
    "NetStreamInput",
    "NetStreamState",
    "NetStreams",
    "classify_status",
]

STREAM_EOF: Final = "StreamEOF"
"""The code of a :class:`PlayEnded` caused by the user control StreamEOF."""
STREAM_DRY: Final = "StreamDry"
"""The code of a :class:`PlayEnded` caused by the user control StreamDry."""


class NetStreamState(Enum):
    CREATED = "created"
    PLAY_REQUESTED = "play requested"
    PLAYING = "playing"
    PUBLISH_REQUESTED = "publish requested"
    PUBLISHING = "publishing"
    CLOSED = "closed"


class NetStreamInput(Enum):
    # server role
    PLAY_RECEIVED = "play received"
    PUBLISH_RECEIVED = "publish received"
    CLOSE_RECEIVED = "closeStream received"
    ACCEPT_PLAY = "accept play"
    ACCEPT_PUBLISH = "accept publish"
    REFUSE = "refuse"
    END = "end"
    # client role
    PLAY_SENT = "play sent"
    PUBLISH_SENT = "publish sent"
    PLAY_START_RECEIVED = "Play.Start received"
    PUBLISH_START_RECEIVED = "Publish.Start received"
    REFUSAL_RECEIVED = "refusal received"
    END_RECEIVED = "end of stream received"
    EOF_RECEIVED = "StreamEOF received"
    MEDIA_SEEN = "media seen"


S = NetStreamState
I = NetStreamInput  # noqa: E741

_LOCAL: Final = frozenset(
    {I.ACCEPT_PLAY, I.ACCEPT_PUBLISH, I.REFUSE, I.END, I.PLAY_SENT, I.PUBLISH_SENT, I.MEDIA_SEEN}
)

# What the client hears about a transition, built from (stream id, code, description).
_Tell = Callable[[int, str, str], Event]
_Row = tuple[NetStreamState, _Tell | None]


def _play_started(stream_id: int, code: str, description: str) -> Event:
    return PlayStarted(stream_id)


def _publish_started(stream_id: int, code: str, description: str) -> Event:
    return PublishStarted(stream_id)


_BUSY: Final = (S.PLAY_REQUESTED, S.PLAYING, S.PUBLISH_REQUESTED, S.PUBLISHING)

_TRANSITIONS: Final[dict[tuple[NetStreamState, NetStreamInput], _Row]] = {
    # ---- server: commands received. A play or publish on a busy stream is
    # reported unchanged, so the layer above refuses it with a status.
    **{(s, I.PLAY_RECEIVED): (S.PLAY_REQUESTED, None) for s in (S.CREATED, S.CLOSED)},
    **{(s, I.PLAY_RECEIVED): (s, None) for s in _BUSY},
    **{(s, I.PUBLISH_RECEIVED): (S.PUBLISH_REQUESTED, None) for s in (S.CREATED, S.CLOSED)},
    **{(s, I.PUBLISH_RECEIVED): (s, None) for s in _BUSY},
    **{(s, I.CLOSE_RECEIVED): (S.CLOSED, None) for s in S},
    # ---- server: our answers. Answers are asynchronous (auth hooks, play_wait):
    # one that comes after the peer closed the stream is dropped (CLOSED stays).
    (S.PLAY_REQUESTED, I.ACCEPT_PLAY): (S.PLAYING, None),
    (S.CLOSED, I.ACCEPT_PLAY): (S.CLOSED, None),
    (S.PUBLISH_REQUESTED, I.ACCEPT_PUBLISH): (S.PUBLISHING, None),
    (S.CLOSED, I.ACCEPT_PUBLISH): (S.CLOSED, None),
    **{(s, I.REFUSE): (S.CLOSED, None) for s in (*_BUSY, S.CLOSED)},
    **{(s, I.END): (S.CLOSED, None) for s in (S.PLAY_REQUESTED, S.PLAYING, S.CLOSED)},
    # ---- client: our requests
    **{(s, I.PLAY_SENT): (S.PLAY_REQUESTED, None) for s in (S.CREATED, S.CLOSED)},
    **{(s, I.PUBLISH_SENT): (S.PUBLISH_REQUESTED, None) for s in (S.CREATED, S.CLOSED)},
    # ---- client: what the server said (every pair listed: statuses are advisory)
    **{(s, I.PLAY_START_RECEIVED): (s, None) for s in S},
    (S.PLAY_REQUESTED, I.PLAY_START_RECEIVED): (S.PLAYING, _play_started),
    **{(s, I.PUBLISH_START_RECEIVED): (s, None) for s in S},
    (S.PUBLISH_REQUESTED, I.PUBLISH_START_RECEIVED): (S.PUBLISHING, _publish_started),
    **{(s, I.REFUSAL_RECEIVED): (s, None) for s in (S.CREATED, S.CLOSED)},
    # A refusal while playing (Play.Failed mid-stream) is still a refusal: an
    # edge treats it as a missing stream either way.
    **{(s, I.REFUSAL_RECEIVED): (S.CLOSED, PlayRefused) for s in (S.PLAY_REQUESTED, S.PLAYING)},
    **{
        (s, I.REFUSAL_RECEIVED): (S.CLOSED, PublishRefused)
        for s in (S.PUBLISH_REQUESTED, S.PUBLISHING)
    },
    **{(s, I.END_RECEIVED): (s, None) for s in S},
    **{(s, I.END_RECEIVED): (S.CLOSED, PlayEnded) for s in (S.PLAY_REQUESTED, S.PLAYING)},
    # StreamEOF counts once the play is under way: some servers send one for
    # a stream id before they reuse it.
    **{(s, I.EOF_RECEIVED): (s, None) for s in S},
    (S.PLAYING, I.EOF_RECEIVED): (S.CLOSED, PlayEnded),
    **{(s, I.MEDIA_SEEN): (s, None) for s in S},
    (S.PLAY_REQUESTED, I.MEDIA_SEEN): (S.PLAYING, None),
}

# The one classification of onStatus codes a client receives.
_STATUS_INPUTS: Final[dict[str, NetStreamInput | None]] = {
    Status.PLAY_START: I.PLAY_START_RECEIVED,
    Status.PUBLISH_START: I.PUBLISH_START_RECEIVED,
    Status.PLAY_STREAM_NOT_FOUND: I.REFUSAL_RECEIVED,
    Status.PLAY_FAILED: I.REFUSAL_RECEIVED,
    "NetStream.Play.BadName": I.REFUSAL_RECEIVED,
    "NetStream.Play.Denied": I.REFUSAL_RECEIVED,
    Status.PUBLISH_BAD_NAME: I.REFUSAL_RECEIVED,
    Status.PUBLISH_DENIED: I.REFUSAL_RECEIVED,
    Status.PLAY_UNPUBLISH_NOTIFY: I.END_RECEIVED,
    Status.PLAY_STOP: I.END_RECEIVED,
    "NetStream.Play.Complete": I.END_RECEIVED,
    # Informational: Reset precedes Start, PublishNotify follows a wait.
    Status.PLAY_RESET: None,
    Status.PLAY_PUBLISH_NOTIFY: None,
}


def classify_status(code: str, level: str) -> NetStreamInput | None:
    """What an onStatus means for its stream, or None if it is informational.

    A code of the table decides; an unknown code at level ``error`` is a refusal.
    """
    if code in _STATUS_INPUTS:
        return _STATUS_INPUTS[code]
    return I.REFUSAL_RECEIVED if level == "error" else None


class NetStreams:
    """The message streams of one connection and their states."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[int, NetStreamState] = {}

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._states

    def __len__(self) -> int:
        return len(self._states)

    def state(self, stream_id: int) -> NetStreamState | None:
        return self._states.get(stream_id)

    def ids(self) -> set[int]:
        return set(self._states)

    def active(self) -> set[int]:
        """Ids playing or publishing."""
        return {
            sid for sid, state in self._states.items() if state in (S.PLAYING, S.PUBLISHING)
        }

    def lowest_free_id(self) -> int:
        new_id = 1
        while new_id in self._states:
            new_id += 1
        return new_id

    def create(self, stream_id: int) -> None:
        self._states[stream_id] = S.CREATED

    def delete(self, stream_id: int) -> bool:
        """deleteStream: forget the stream in whatever state; False if unknown."""
        return self._states.pop(stream_id, None) is not None

    def apply(
        self, stream_id: int, event: NetStreamInput, code: str = "", description: str = ""
    ) -> Event | None:
        """Move ``stream_id`` on ``event``; returns the event the client hears, if any.

        Raises :class:`LocalProtocolError` or :class:`RemoteProtocolError` (for
        input from the peer) when the stream does not exist or the pair is not
        in the table.
        """
        state = self._states.get(stream_id)
        error = LocalProtocolError if event in _LOCAL else RemoteProtocolError
        if state is None:
            raise error(f"{event.value} on stream id {stream_id} that was not created")
        row = _TRANSITIONS.get((state, event))
        if row is None:
            raise error(f"{event.value} on stream id {stream_id} while {state.value}")
        self._states[stream_id], tell = row
        return None if tell is None else tell(stream_id, code, description)
