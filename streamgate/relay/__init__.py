"""Relay logic: streams, GOP cache, fan-out and the hub that names them.

Written against small interfaces (a :class:`~streamgate.relay.clock.Clock`
and player/publisher sinks) so missing, idle and slow-player behaviour is
tested in milliseconds with a fake clock.
"""

from __future__ import annotations

__all__: list[str] = []
