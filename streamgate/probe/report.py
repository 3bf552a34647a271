"""What a probe is given and what it reports: target, options, step results.

Pure data, no I/O: :func:`parse_target` reads the URL, :class:`StepResult` and
:class:`ProbeReport` are what the command prints (and ``--json`` dumps), and
a step ends with a :class:`Done` or raises :class:`StepFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_PORTS",
    "Done",
    "PeerClosed",
    "ProbeOptions",
    "ProbeReport",
    "ProbeTarget",
    "StepFailed",
    "StepResult",
    "parse_target",
]

DEFAULT_PORTS: Final = {"rtmp": 1935, "rtmps": 443}

@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """``rtmp[s]://host[:port]/app/stream[?query]``, the app being the first path segment."""

    scheme: str
    host: str
    port: int
    app: str
    name: str

    @property
    def tls(self) -> bool:
        return self.scheme == "rtmps"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tc_url(self) -> str:
        return f"{self.scheme}://{self._netloc}/{self.app}"

    def __str__(self) -> str:
        return f"{self.tc_url}/{self.name}"


def parse_target(url: str) -> ProbeTarget:
    """Parse a probe URL; raises ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r}: the URL must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    app, _, name = parts.path.lstrip("/").partition("/")
    if not app or not name:
        raise ValueError(f"{url!r}: expected /app/stream after the host")
    if parts.query:
        name = f"{name}?{parts.query}"
    return ProbeTarget(parts.scheme, parts.hostname, port, app, name)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    timeout: float = 5.0
    """Seconds each network step may take (per address for ``tcp``)."""
    media_timeout: float = 5.0
    """Seconds from Play.Start to the first media, and from it to the first keyframe."""
    insecure: bool = False
    """Skip certificate verification (rtmps)."""
    cafile: str | None = None
    """Trust only the CA certificates in this PEM file instead of the system store."""


# --------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    ok: bool
    ms: float
    detail: str
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "ms": round(self.ms, 1),
            "detail": self.detail,
            "info": self.info,
        }


@dataclass(slots=True)
class ProbeReport:
    target: str
    steps: list[StepResult] = field(default_factory=list)
    ok: bool = False
    diagnosis: str = ""
    insecure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.target,
            "ok": self.ok,
            "diagnosis": self.diagnosis,
            "tls_verified": not self.insecure,
            "steps": [step.as_dict() for step in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Done:
    """A step passed: what to print, and the same facts for ``--json``."""

    detail: str
    info: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """A step failed: ``diagnosis`` is the one line the operator reads."""

    def __init__(
        self, diagnosis: str, detail: str | None = None, info: dict[str, Any] | None = None
    ) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.detail = detail if detail is not None else diagnosis
        self.info = info or {}


class PeerClosed(Exception):
    """The server closed (or reset) the connection."""
