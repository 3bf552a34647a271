"""The access gate: the decisions every protocol's plays and publishes pass through.

Admission at accept, authorisation of a play or publish, and the
bookkeeping of a refusal (the counter, the failure that may ban the address,
the words the client is told and the reason its log line is grouped by)
are taken here, once, for RTMP now and for every later protocol. The gate
does no I/O: the one decision that may take time (an auth hook) is handed
back as an awaitable for the adapter to wait on.

Invariants:

* Nothing upstream or stream-related happens before :meth:`authorize`
  allowed it; a refused play never reaches the play source.
* Every refusal is counted under exactly one reason, and an auth failure
  or a play of a missing stream is recorded against the address (which may
  ban it) unless the address is allow-listed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamgate.auth import AuthDecision, TokenRequest
from streamgate.relay.hub import StreamBusy
from streamgate.relay.source import PlaySource
from streamgate.rtmp.messages import Status

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["AccessGate", "Refusal", "TrustedGate"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused play or publish: what the client is told and what the log says."""

    code: str  # the status sent (NetStream.Play.Failed, ...)
    description: str  # sent with it
    detail: str  # the log line's words (may name the stream)
    reason: str  # what log lines are grouped by: no peer-chosen names


class AccessGate:
    """One server's admission, auth and refusal decisions (see the module docstring)."""

    # What the API shows as the peer of a connection without an address (None: "?").
    peer_label: str | None = None

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx  # read at each decision: a reload replaces auth, limits and rules

    @property
    def source(self) -> PlaySource:
        """Where this connection's plays are served from."""
        return self.ctx.source

    def admit(self, ip: str, now: float) -> str | None:
        """At accept: ``None`` admits (and counts) the connection, else the reason to reset it."""
        ctx = self.ctx
        reason = ctx.admission.admit(ip, now, ctx.trusted(ip))
        if reason is not None:
            ctx.counters.rejected[reason] += 1
        return reason

    def release(self, ip: str) -> None:
        """An admitted connection ended."""
        self.ctx.admission.release(ip)

    def authorize(
        self, action: str, app: str, name: str, query: str, ip: str, client_id: int
    ) -> AuthDecision | Awaitable[AuthDecision]:
        """The auth decision for a play or publish: now, or an awaitable (a hook)."""
        request = TokenRequest(action, app, name, query, ip)
        return self.ctx.auth.check(request, client_id, time.time())

    def auth_refused(
        self, action: str, app: str, name: str, ip: str, decision: AuthDecision
    ) -> Refusal:
        """Count and record an auth refusal; returns what to tell the client."""
        ctx = self.ctx
        ctx.counters.rejected[decision.label] += 1
        if ctx.bans.record_failure(ip, decision.label, ctx.clock.now()) is not None:
            ctx.counters.bans_issued += 1
        # An explicit error status, then close: OBS-like clients stop retrying.
        code = Status.PLAY_FAILED if action == "play" else Status.PUBLISH_BAD_NAME
        return Refusal(
            code,
            decision.reason,
            f"{action} of {app}/{name} refused: {decision.reason}",
            f"{action} refused: {decision.reason}",
        )

    def play_refused(self, app: str, name: str, ip: str, code: str, description: str) -> Refusal:
        """Count a play the source refused; a missing stream counts against the address."""
        ctx = self.ctx
        ctx.counters.plays_refused[code] += 1
        missing = code == Status.PLAY_STREAM_NOT_FOUND
        if missing and ctx.bans.record_missing(ip, f"{app}/{name}", ctx.clock.now()) is not None:
            ctx.counters.bans_issued += 1
        # A flood of refusals is an attack's signature: grouped by the status
        # code (the description names the stream).
        detail = f"play of {app}/{name} refused: {description}"
        return Refusal(code, description, detail, f"play refused: {code}")

    def publish_busy(self, exc: StreamBusy) -> Refusal:
        """A second publisher of a name."""
        self.ctx.counters.rejected["publish_busy"] += 1
        return Refusal(
            exc.code,
            exc.description,
            f"publish refused: {exc.description}",
            f"publish refused: {exc.code}",
        )

    @staticmethod
    def misuse(action: str, code: str, description: str) -> Refusal:
        """A play or publish the client got wrong (busy stream id, an edge's publish)."""
        detail = f"{action} refused: {description}"
        return Refusal(code, description, detail, detail)


_TRUSTED = AuthDecision(True, "")


class TrustedGate(AccessGate):
    """A connection from another worker of this machine, relaying a stream this
    worker owns to its own players: they were admitted, authorised and
    accounted there, so here nothing is refused or recorded, and the play is
    served from this worker's own source (never routed on again)."""

    peer_label = "sibling worker"

    @property
    def source(self) -> PlaySource:
        return self.ctx.own_source or self.ctx.source

    def admit(self, ip: str, now: float) -> str | None:
        return None

    def release(self, ip: str) -> None:
        pass

    def authorize(
        self, action: str, app: str, name: str, query: str, ip: str, client_id: int
    ) -> AuthDecision | Awaitable[AuthDecision]:
        return _TRUSTED

    def play_refused(self, app: str, name: str, ip: str, code: str, description: str) -> Refusal:
        detail = f"relayed play of {app}/{name} refused: {description}"
        return Refusal(code, description, detail, f"relayed play refused: {code}")
