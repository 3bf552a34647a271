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

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"hook URL must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
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
            async with asyncio.timeout(self.timeout):
                status, payload = await self._post(body)
        except (TimeoutError, OSError, ValueError) as exc:
            reason = "auth hook timed out" if isinstance(exc, TimeoutError) else "auth hook down"
            log.warning("auth hook %s: %s (%s)", self.url, reason, exc or "timeout")
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
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls or None)
        try:
            head = (
                f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\nUser-Agent: streamgate\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
            response = bytearray()
            while chunk := await reader.read(65536):  # Connection: close: read to EOF
                response += chunk
                if len(response) > _MAX_RESPONSE:
                    raise ValueError("auth hook response too large")
        finally:
            writer.close()
        head_end = response.find(b"\r\n\r\n")
        status_line = bytes(response.split(b"\r\n", 1)[0]).split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or head_end < 0:
            raise ValueError("not an HTTP response")
        headers = bytes(response[:head_end]).lower()
        payload = bytes(response[head_end + 4 :])
        if b"transfer-encoding: chunked" in headers:
            payload = _dechunk(payload)
        return int(status_line[1]), payload


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            raise ValueError("truncated chunked body")
        size = int(data[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2
