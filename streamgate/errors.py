"""The one error hierarchy of streamgate.

An error that ends an RTMP conversation carries what the peer should be told:
the status ``code`` (``NetStream.Play.StreamNotFound``, ...) and a human
``description``. The protocol core queues that goodbye before it raises, so
the I/O adapter only has to flush and close.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamgateError",
    "UpstreamError",
]


class StreamgateError(Exception):
    """Base of every error streamgate raises on purpose."""

    code: str = "NetConnection.Call.Failed"

    def __init__(self, description: str, *, code: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if code is not None:
            self.code = code


class ProtocolError(StreamgateError):
    """The RTMP conversation cannot go on.

    Its ``code`` and ``description`` are what the core sends the peer before
    raising (an ``onStatus`` at level error once connect was received; a
    refused connect while it is unanswered; nothing during the handshake).
    """

    code = "NetConnection.Connect.Closed"


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept (malformed, too large, out of order)."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol state does not allow."""


class AuthError(StreamgateError):
    """A publish or play was not authorised."""

    code = "NetStream.Play.Failed"


class UpstreamError(StreamgateError):
    """The origin could not be reached or refused us."""

    code = "NetStream.Play.Failed"


class ConfigError(StreamgateError):
    """The configuration is invalid."""
