"""Where a player's stream comes from: the local hub (origin) or an upstream (edge)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streamgate.relay.stream import Stream

__all__ = ["PlaySource"]


class PlaySource(Protocol):
    def request_play(
        self,
        app: str,
        name: str,
        query: str,
        on_ready: Callable[[Stream], None],
        on_refused: Callable[[str, str], None],
    ) -> Any:
        """Exactly one callback fires, now or later; a non-None return is a wait handle."""

    def cancel_play(self, app: str, name: str, handle: Any) -> None:
        """The player left while waiting."""
