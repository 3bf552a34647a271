"""HTTP auth hooks, like SRS ``http_hooks.on_play`` and nginx-rtmp ``on_play``.

For each decision we POST a JSON body ``{"action", "client_id", "ip", "app",
"stream", "query"}`` to the hook URL and allow on a 2xx answer, except when
the body says otherwise in SRS's convention (a bare integer or a JSON object
with ``"code"``: 0 allows, anything else denies). Everything is bounded: one
timeout for the whole exchange, a response size cap, and a short cache of
decisions so a burst of identical plays costs one request. When the hook
cannot be reached, ``failure_policy`` decides (deny by default).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass

from streamgate.http_client import HttpError, HttpTarget, HttpTimeout, fetch

__all__ = ["HookClient", "HookDecision"]

log = logging.getLogger("streamgate.auth")

_MAX_RESPONSE = 64 * 1024
_CACHE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class HookDecision:
    allowed: bool
    reason: str  # for the client and the rejection counters
    unreachable: bool = False


class HookClient:
    def __init__(
        self,
        url: str,
        timeout: float,
        cache_ttl: float,
        failure_policy: str = "deny",
    ) -> None:
        self.target = HttpTarget.parse(url, "hook URL")
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.failure_policy = failure_policy
        self._cache: OrderedDict[tuple[str, ...], tuple[float, HookDecision]] = OrderedDict()
        self.requests = 0

    async def decide(
        self, action: str, client_id: int, ip: str, app: str, stream: str, query: str, now: float
    ) -> HookDecision:
        key = (action, ip, app, stream, query)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        body = json.dumps(
            {
                "action": f"on_{action}",
                "client_id": client_id,
                "ip": ip,
                "app": app,
                "stream": stream,
                "query": query,
            }
        ).encode()
        try:
            status, payload = await self._post(body)
        except HttpError as exc:
            reason = "auth hook timed out" if isinstance(exc, HttpTimeout) else "auth hook down"
            log.warning("auth hook %s: %s (%s)", self.target.url, reason, exc)
            allowed = self.failure_policy == "allow"
            return HookDecision(allowed, reason, unreachable=True)  # not cached: retry next time
        decision = self._judge(status, payload)
        self._cache[key] = (now + self.cache_ttl, decision)
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return decision

    @staticmethod
    def _judge(status: int, payload: bytes) -> HookDecision:
        if not 200 <= status < 300:
            return HookDecision(False, f"denied by auth hook (HTTP {status})")
        text = payload.strip()
        if text:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            code = value.get("code") if isinstance(value, dict) else value
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                return HookDecision(False, f"denied by auth hook (code {code})")
        return HookDecision(True, "")

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        reply = await fetch(
            self.target,
            method="POST",
            body=body,
            headers=(("Content-Type", "application/json"),),
            timeout=self.timeout,
            max_body=_MAX_RESPONSE,
        )
        return reply.status, reply.body
