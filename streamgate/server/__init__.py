"""asyncio adapters: the listener and the per-connection session."""

from __future__ import annotations

__all__: list[str] = []
