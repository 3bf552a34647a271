"""The play/publish decision, made before any upstream or stream work.

One method per action (``none``, ``signed``, ``hook``, ``nms``,
``secure_link``), each with its own keys: a publish key never verifies a
play and a play key never verifies a publish. Token methods answer at once;
the hook answers through an awaitable. Denials carry the reason the client
is told and the label the rejection is counted under.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from streamgate.auth.hook import HookClient
from streamgate.auth.tokens import (
    LIFETIME_EXCEEDED,
    NmsVerifier,
    SecureLinkVerifier,
    SignedVerifier,
    TokenRequest,
    Verifier,
)

__all__ = ["AuthDecision", "Authorizer", "MethodConfig"]


@dataclass(frozen=True, slots=True)
class AuthDecision:
    allowed: bool
    reason: str = ""  # told to the client
    label: str = ""  # counted under rejected:<label>


ALLOW = AuthDecision(True)


@dataclass(frozen=True, slots=True)
class MethodConfig:
    method: str  # none | signed | hook | nms | secure_link
    keys: Mapping[str, bytes]
    clock_skew: float = 30.0
    bind_ip: bool = False
    max_lifetime: float = 0.0  # seconds a token may still have to live; 0: no maximum


# Rejection labels that are not simply the reason with underscores (kept short).
_LABELS = {LIFETIME_EXCEEDED: "auth_lifetime_exceeded"}


class Authorizer:
    def __init__(
        self, play: MethodConfig, publish: MethodConfig, hook: HookClient | None = None
    ) -> None:
        self.methods = {"play": play.method, "publish": publish.method}
        self._verifiers: dict[str, Verifier | None] = {
            "play": _verifier(play),
            "publish": _verifier(publish),
        }
        self.hook = hook
        for action, method in self.methods.items():
            if method == "hook" and hook is None:
                raise ValueError(f"{action} auth is 'hook' but no hook_url is set")

    def check(
        self, request: TokenRequest, client_id: int, now: float
    ) -> AuthDecision | Awaitable[AuthDecision]:
        """A decision now, or an awaitable one (hook)."""
        method = self.methods[request.action]
        if method == "none":
            return ALLOW
        if method == "hook":
            assert self.hook is not None
            return self._ask_hook(request, client_id, now)
        verifier = self._verifiers[request.action]
        assert verifier is not None
        problem = verifier.verify(request, now)
        if problem is None:
            return ALLOW
        label = _LABELS.get(problem) or f"auth_{problem.replace(' ', '_')}"
        return AuthDecision(False, problem, label)

    async def _ask_hook(self, request: TokenRequest, client_id: int, now: float) -> AuthDecision:
        assert self.hook is not None
        decision = await self.hook.decide(
            request.action, client_id, request.ip, request.app, request.stream, request.query, now
        )
        if decision.allowed:
            return ALLOW
        label = "hook_unreachable" if decision.unreachable else "hook_denied"
        return AuthDecision(False, decision.reason, label)


def _verifier(config: MethodConfig) -> Verifier | None:
    secrets = list(config.keys.values())
    lifetime = config.max_lifetime
    if config.method == "signed":
        return SignedVerifier(config.keys, config.clock_skew, config.bind_ip, lifetime)
    if config.method == "nms":
        return NmsVerifier(secrets, config.clock_skew, lifetime)
    if config.method == "secure_link":
        return SecureLinkVerifier(secrets, config.clock_skew, config.bind_ip, lifetime)
    return None
