"""streamgate: an RTMP edge/origin gateway.

The protocol core lives in :mod:`streamgate.rtmp` (sans-IO), the relay logic
(streams, GOP cache, fan-out) in :mod:`streamgate.relay`, and the asyncio
adapters that move bytes in :mod:`streamgate.server`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
