"""Play and publish authorisation: signed URLs, compatibility tokens, HTTP hooks."""

from __future__ import annotations

from streamgate.auth.authorizer import AuthDecision, Authorizer, MethodConfig
from streamgate.auth.tokens import TokenRequest, sign_query

__all__ = ["AuthDecision", "Authorizer", "MethodConfig", "TokenRequest", "sign_query"]
