"""The auth hook client against a real HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from streamgate.auth.hook import HookClient, HookDecision
from tests.auth.hookserver import HookServer
from tests.peers import free_port


def decide(client: HookClient, stream: str = "cam", now: float = 0.0) -> HookDecision:
    return asyncio.run(client.decide("play", 7, "10.0.0.1", "live", stream, "t=1", now))


@pytest.mark.parametrize(
    ("status", "text", "chunked", "allowed"),
    [
        (200, "", False, True),
        (204, "", False, True),
        (403, "", False, False),
        (500, "", False, False),
        (200, "0", False, True),  # SRS convention
        (200, "1", False, False),
        (200, '{"code": 0}', False, True),
        (200, '{"code": 403, "msg": "no"}', False, False),
        (200, "0", True, True),
        (200, "ok", True, True),
    ],
)
def test_decisions(status: int, text: str, chunked: bool, allowed: bool) -> None:
    with HookServer() as hook:
        hook.status, hook.text, hook.chunked = status, text, chunked
        decision = decide(HookClient(hook.url, timeout=2, cache_ttl=0))
        assert decision.allowed is allowed
        assert hook.requests == [
            {
                "action": "on_play",
                "client_id": 7,
                "ip": "10.0.0.1",
                "app": "live",
                "stream": "cam",
                "query": "t=1",
            }
        ]


def test_slow_hook_is_a_failure_decided_by_policy() -> None:
    with HookServer() as hook:
        hook.delay = 1.0
        denied = decide(HookClient(hook.url, timeout=0.2, cache_ttl=0))
        assert not denied.allowed and denied.unreachable and "timed out" in denied.reason
        allowed = decide(HookClient(hook.url, timeout=0.2, cache_ttl=0, failure_policy="allow"))
        assert allowed.allowed and allowed.unreachable


def test_down_hook_denies_by_default() -> None:
    url = f"http://127.0.0.1:{free_port()}/on_play"
    decision = decide(HookClient(url, timeout=1, cache_ttl=0))
    assert not decision.allowed and decision.reason == "auth hook down"


def test_decisions_are_cached_briefly() -> None:
    with HookServer() as hook:
        client = HookClient(hook.url, timeout=2, cache_ttl=5)
        for _ in range(10):
            assert decide(client, now=1.0).allowed
        assert len(hook.requests) == 1
        decide(client, stream="other", now=1.0)
        decide(client, now=6.5)  # expired
        assert len(hook.requests) == 3


def test_rejects_bad_urls() -> None:
    with pytest.raises(ValueError):
        HookClient("ftp://x/y", 1, 1)
