"""The only things the HTTP API changes: ending streams, kicking clients, forgetting
cached misses, lifting bans. Each runs on the event loop, through the same calls the gateway
itself uses, so players are told exactly what they would be told otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamgate.api.views import StreamRef, missing_keys
from streamgate.relay.hub import PublisherSink
from streamgate.relay.stream import Stream
from streamgate.rtmp.messages import Status

if TYPE_CHECKING:
    from streamgate.server.clients import Client
    from streamgate.server.context import ServerContext

__all__ = ["END_DESCRIPTION", "end_stream", "forget_missing", "kick_client", "lift_bans"]

END_DESCRIPTION = "ended by an operator"


def end_stream(ctx: ServerContext, ref: StreamRef) -> str:
    """End one stream for its players (``NetStream.Play.UnpublishNotify``).

    Origin: the stream is unpublished and its publisher is kicked (an RTMP
    publisher is told ``NetStream.Publish.Denied`` and disconnected; it may
    publish again, which a ban stops). Edge: the ingest ends and closes its upstream link; a
    later play pulls the stream afresh. Returns what was done.
    """
    description = f"{ref.app}/{ref.name}: {END_DESCRIPTION}"
    if ref.ingest is not None:
        ref.ingest.end(Status.PLAY_UNPUBLISH_NOTIFY, description)
        return "ingest-ended"
    publisher = _publisher_of(ctx, ref.stream)
    # Players first (UnpublishNotify, with why), then the hub forgets the stream;
    # ending is idempotent, so unpublish does not tell them twice.
    ref.stream.end(Status.PLAY_UNPUBLISH_NOTIFY, description)
    ctx.hub.unpublish(ref.stream)
    if publisher is not None:
        publisher.kick(Status.PUBLISH_DENIED, description)
    return "unpublished"


def _publisher_of(ctx: ServerContext, stream: Stream) -> PublisherSink | None:
    """Whoever publishes ``stream``: an RTMP session or an in-process source (the demo)."""
    return ctx.hub.publisher(stream)


def forget_missing(ctx: ServerContext, app: str, name: str, now: float) -> int:
    """Drop ``app``/``name`` from the edge's negative cache; returns the entries dropped."""
    if ctx.edge is None:
        return 0
    keys = missing_keys(ctx, app, name, now)
    for key in keys:
        ctx.edge.negative.discard(key)
    return len(keys)


def lift_bans(ctx: ServerContext, now: float) -> int:
    """Lift every ban in force; returns how many were lifted."""
    return sum(1 for ban in ctx.bans.bans(now) if ctx.bans.unban(ban.ip))


def kick_client(session: Client) -> None:
    """Disconnect one RTMP client; a publisher's players get UnpublishNotify."""
    session.close()
