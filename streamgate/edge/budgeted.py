"""Upstream connects that first take a shared budget: the fleet's or the machine's.

The pool has already granted a link under the worker's own limits (breaker,
connect rate, link cap); a :class:`BudgetedConnector` then asks a
:class:`ConnectBudget` shared with others (the fleet's Redis script, the
machine's supervisor) before the inner connector opens it. The budget
answers within its own small bound:

* granted: the link opens (and the budget is told when it closes, so a
  shared link cap counts open links);
* refused: the sink hears ``link_refused`` with the budget's reason, as it
  hears the pool's refusals (no verdict on the origin);
* no answer (the store slow or down): the local limits alone decide and the
  link opens. No play fails because a shared budget cannot be reached.

A :class:`NameGate` is asked earlier, per stream name, before any budget:
the fleet's one asker per name (``streamgate.cluster.probes``) answers
from another node's verdict instead of connecting, or lets the link open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamgate.edge.ingest import Connector, Link, LinkSink
    from streamgate.edge.origins import Origin

__all__ = ["BudgetRefusal", "BudgetedConnector", "ConnectBudget", "NameGate", "PendingLink"]


class BudgetRefusal:
    """Why a shared budget held a connect back: a metrics reason and the words."""

    __slots__ = ("description", "reason")

    def __init__(self, reason: str, description: str) -> None:
        self.reason = reason
        self.description = description


class ConnectBudget(Protocol):
    async def take(self, origin: str) -> BudgetRefusal | bool | None:
        """True: granted; a refusal: spent; None: no answer in time (local limits decide)."""

    def done(self, origin: str) -> None:
        """A granted link to ``origin`` closed."""


class NameGate(Protocol):
    def open(
        self, key: tuple[str, str], opener: Callable[[LinkSink], Link], sink: LinkSink
    ) -> Link:
        """A link for the stream ``key``: ``opener(sink)`` opens the real one (now or
        once allowed), or the gate reports to ``sink`` itself (a verdict known)."""


class PendingLink:
    """A link whose real one opens after an awaited decision (a budget, a fleet's
    verdict): :meth:`start` runs the decision as a task; :meth:`close` cancels
    it, or closes the real link (``_inner``) once one was opened."""

    __slots__ = ("_closed", "_inner", "_task")

    def __init__(self) -> None:
        self._inner: Link | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self, decision: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(decision)

    def close(self) -> None:
        self._closed = True
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()


class _GatedLink(PendingLink):
    """A link that opens once the budget allows it (or cannot say in time)."""

    __slots__ = ("_granted", "_origin", "_owner")

    def __init__(
        self, owner: BudgetedConnector, origin: Origin, app: str, name: str, sink: LinkSink
    ) -> None:
        super().__init__()
        self._owner = owner
        self._origin = origin
        self._granted = False
        self.start(self._open(origin, app, name, sink))

    async def _open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> None:
        answer = await self._owner.budget.take(origin.address)
        if answer is True:
            self._granted = True
        if self._closed:
            self._release()
            return
        if isinstance(answer, BudgetRefusal):
            origin.rate_limited += 1
            sink.link_refused(answer.reason, f"origin {origin.address}: {answer.description}")
            return
        self._inner = self._owner.inner.open(origin, app, name, sink)

    def _release(self) -> None:
        if self._granted:
            self._granted = False
            self._owner.budget.done(self._origin.address)

    def close(self) -> None:
        super().close()
        self._release()


class BudgetedConnector:
    """Wraps a connector: every upstream connect first takes ``budget``."""

    def __init__(self, inner: Connector, budget: ConnectBudget) -> None:
        self.inner = inner
        self.budget = budget

    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Link:
        return _GatedLink(self, origin, app, name, sink)
