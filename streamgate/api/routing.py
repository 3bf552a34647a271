"""Request routing for the HTTP API: a table of path patterns, methods and the
bearer-token check on protected prefixes.

Order of answers for one request: a target that is not a plain path is 400;
a protected path without the right token is 401 (before anything else is
revealed); no matching pattern is 404; a method the pattern does not take is
405 with ``Allow``. ``HEAD`` is accepted wherever ``GET`` is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from streamgate.api.http import Request, Response, error_response

__all__ = ["PathArgs", "Route", "RouteHandler", "Router", "token_matches"]

PathArgs = tuple[str, ...]
RouteHandler = Callable[[Request, PathArgs], Response | Awaitable[Response]]

_ONE = "*"  # matches one path segment
_REST = "**"  # matches one or more segments, joined with "/" (stream names may hold "/")


def token_matches(given: str, token: str) -> bool:
    """``given`` is ``token``, compared as digests: neither the content nor the
    length of the token leaks through timing."""
    digest = hashlib.sha256(given.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(digest, hashlib.sha256(token.encode("utf-8")).digest())


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern``: literal segments, ``*`` for one segment, ``**`` for one or more.

    A ``**`` may be followed by literal segments only (``streams/*/**/thumbnail.jpg``):
    it takes what lies between them and the part before it.
    """

    pattern: tuple[str, ...]
    methods: Mapping[str, RouteHandler]

    def match(self, segments: Sequence[str]) -> PathArgs | None:
        args: list[str] = []
        for index, part in enumerate(self.pattern):
            if part == _REST:
                tail = self.pattern[index + 1 :]
                end = len(segments) - len(tail)
                rest = segments[index:end]
                if not rest or not all(rest) or tuple(segments[end:]) != tail:
                    return None
                args.append("/".join(rest))
                return tuple(args)
            if index >= len(segments):
                return None
            segment = segments[index]
            if part == _ONE:
                if not segment:
                    return None
                args.append(segment)
            elif part != segment:
                return None
        return tuple(args) if len(segments) == len(self.pattern) else None


class Router:
    """Dispatches a :class:`Request` to the first route whose pattern matches."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        token: Callable[[], str | None],
        protected: tuple[str, ...] = ("api",),
    ) -> None:
        self.routes = tuple(routes)
        self._token = token  # read per request: a configuration reload may change it
        self._protected = protected

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        segments = _split_path(request.target)
        if segments is None:
            return error_response(400, "the request target must be a path like /api/v1/streams")
        if self._is_protected(segments):
            denied = self._check_token(request)
            if denied is not None:
                return denied
        for route in self.routes:
            args = route.match(segments)
            if args is None:
                continue
            method = "GET" if request.method == "HEAD" else request.method
            handler = route.methods.get(method)
            if handler is None:
                allow = sorted({*route.methods, *(("HEAD",) if "GET" in route.methods else ())})
                return error_response(
                    405,
                    f"{request.method} is not allowed here; allowed: {', '.join(allow)}",
                    (("allow", ", ".join(allow)),),
                )
            return handler(request, args)
        return error_response(404, "no such endpoint")

    def _is_protected(self, segments: Sequence[str]) -> bool:
        return bool(segments) and segments[0] in self._protected

    def _check_token(self, request: Request) -> Response | None:
        token = self._token()
        if token is None:
            return None
        scheme, _, credentials = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return error_response(
                401,
                "this endpoint needs Authorization: Bearer <token>",
                (("www-authenticate", 'Bearer realm="streamgate"'),),
            )
        # Compared as digests, so neither the content nor the length of the
        # token leaks through timing.
        given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
        if not hmac.compare_digest(given, hashlib.sha256(token.encode("utf-8")).digest()):
            return error_response(
                401,
                "the bearer token is not valid",
                (("www-authenticate", 'Bearer realm="streamgate", error="invalid_token"'),),
            )
        return None


def _split_path(target: str) -> list[str] | None:
    """``/a/b%2Fc/?x`` -> ``["a", "b/c"]``; None for a target that is not a decodable path."""
    path = target.partition("?")[0].partition("#")[0]
    if not path.startswith("/"):
        return None  # absolute-form or "*": not for us
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    segments = path[1:].split("/") if path != "/" else []
    try:
        return [unquote(s, errors="strict") for s in segments]
    except UnicodeDecodeError:
        return None
