"""RTMPS: the certificates the listener serves, and TLS under an RTMP session.

:class:`ServedCertificates` holds the server contexts built from
``[rtmp] tls_cert`` / ``tls_key`` and ``[[rtmp.tls_certs]]`` (chosen by SNI).
A replacement is built whole and checked (the key matches, the certificate
is valid now) before it is swapped in; one that fails is refused with the
reason and the served one stays. The files are watched for changes.

:class:`TlsConnection` is the TCP side of one RTMPS connection. TLS runs on
memory BIOs (``ssl.SSLObject``): the records go in and out here and the
decrypted stream goes to the connection's :class:`RtmpSession`, which sees a
:class:`TlsTransport`. That order is what makes the listener as careful as
the plain one:

* the session is made at the TCP accept, so admission and bans are judged
  before any TLS work (a banned address is reset and costs no handshake),
  and the RTMP handshake deadline covers the TLS handshake too;
* the first byte is looked at before OpenSSL is: plain RTMP (version 3) or
  anything else that is not a TLS handshake record is named as such;
* a failed handshake ends the session with the reason, which its one end
  line gives (aggregated per reason when the connection never played).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from streamgate.config import RtmpSettings
from streamgate.errors import ConfigError
from streamgate.tls.diagnosis import explain_ssl_error
from streamgate.tls.x509 import CertificateInfo, X509Error, parse_certificate

__all__ = ["ServedCertificates", "TlsConnection", "TlsError", "TlsTransport"]

log = logging.getLogger("streamgate.tls")

_TLS_HANDSHAKE = 0x16  # the content type of a TLS record carrying a ClientHello
_RTMP_VERSION = 3
_READ_SIZE = 256 * 1024
_PIECE = 64 * 1024  # the most one write puts into the outgoing memory BIO


class TlsError(ConnectionError):
    """Why a TLS connection ended (the session's end line says it)."""


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True, slots=True)
class Served:
    """One loaded certificate: its context, names (SNI; empty for the default) and facts."""

    names: tuple[str, ...]
    cert: Path
    key: Path
    context: ssl.SSLContext
    info: CertificateInfo


def _stamp(*paths: Path) -> tuple[tuple[float, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime, st.st_size))
        except OSError:
            out.append((0.0, -1))
    return tuple(out)


def _leaf(path: Path) -> CertificateInfo:
    """The first certificate of a PEM file, read."""
    try:
        pem = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the certificate: {exc}") from None
    begin = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ConfigError(f"{path}: no PEM certificate in it")
    try:
        der = ssl.PEM_cert_to_DER_cert(pem[begin : end + len("-----END CERTIFICATE-----")])
        return parse_certificate(der)
    except (ValueError, X509Error) as exc:
        raise ConfigError(f"{path}: unreadable certificate: {exc}") from None


def _files(settings: RtmpSettings) -> list[Path]:
    paths = [p for c in settings.tls_certs for p in (c.cert, c.key)]
    if settings.tls_cert is not None and settings.tls_key is not None:
        paths += [settings.tls_cert, settings.tls_key]
    return paths


def _load(names: Sequence[str], cert: Path, key: Path, now: datetime) -> Served:
    info = _leaf(cert)
    if info.not_after < now:
        raise ConfigError(f"{cert}: the certificate expired on {info.not_after:%Y-%m-%d}")
    if now < info.not_before:
        raise ConfigError(
            f"{cert}: the certificate is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc.filename}: no such file") from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{key}: this key does not belong to {cert}") from None
        raise ConfigError(f"{cert} / {key}: cannot load: {reason}") from None
    except OSError as exc:
        raise ConfigError(f"{cert} / {key}: cannot read: {exc}") from None
    return Served(tuple(n.lower() for n in names), cert, key, context, info)


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


class ServedCertificates:
    """The listener's certificates (see the module docstring); reloadable in place."""

    def __init__(self, settings: RtmpSettings) -> None:
        self.default: Served | None = None
        self.by_name: list[Served] = []
        self.settings = settings
        # (mtime, size) of the files as served, and as last refused (not retried
        # until they change again: one error line per broken replacement).
        self._stamps = _stamp(*_files(settings))
        self._refused: tuple[tuple[float, int], ...] | None = None
        # Handshakes that failed, by reason: plain_rtmp, not_tls, closed, or
        # OpenSSL's reason in lower case (wrong_version_number, no_shared_cipher, ...).
        self.failures: Counter[str] = Counter()
        self.install(self.prepare(settings))
        # One context the listener hands every connection: its SNI callback picks.
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.sni_callback = self._pick

    @staticmethod
    def prepare(settings: RtmpSettings) -> list[Served]:
        """Load every certificate of ``settings``; raises ConfigError, changing nothing."""
        now = datetime.now(UTC)
        served = [_load(c.names, c.cert, c.key, now) for c in settings.tls_certs]
        if settings.tls_cert is not None and settings.tls_key is not None:
            served.append(_load((), settings.tls_cert, settings.tls_key, now))
        return served

    def install(self, served: list[Served]) -> None:
        """Serve ``served`` to new connections (those made keep theirs)."""
        self.by_name = [s for s in served if s.names]
        defaults = [s for s in served if not s.names]
        self.default = defaults[0] if defaults else (self.by_name[0] if self.by_name else None)

    def configure(self, settings: RtmpSettings) -> None:
        """A reload: the new settings' certificates, or ConfigError (the old ones stay)."""
        stamps = _stamp(*_files(settings))
        self.install(self.prepare(settings))
        self.settings, self._stamps, self._refused = settings, stamps, None

    def all(self) -> list[Served]:
        found = list(self.by_name)
        if self.default is not None and self.default not in found:
            found.append(self.default)
        return found

    def check_files(self) -> None:
        """Reload when a served file changed; a broken replacement is refused, logged once."""
        stamps = _stamp(*_files(self.settings))
        if stamps in (self._stamps, self._refused):
            return
        try:
            served = self.prepare(self.settings)
        except ConfigError as exc:
            self._refused = stamps
            log.error("TLS: the changed certificate is refused, the served one stays: %s", exc)
            return
        self.install(served)
        self._stamps, self._refused = stamps, None
        for s in served:
            log.info(
                "TLS: certificate reloaded from %s (%s, valid until %s)",
                s.cert,
                s.info.subject,
                f"{s.info.not_after:%Y-%m-%d}",
            )

    def expiry_days(self, now: float | None = None) -> list[tuple[str, float]]:
        """(the certificate's file, days until it expires) for each served one."""
        moment = time.time() if now is None else now
        return [(str(s.cert), (s.info.not_after.timestamp() - moment) / 86400) for s in self.all()]

    def _pick(self, sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        """SNI: the certificate for ``name``, else the default."""
        chosen = self.default
        if name:
            lowered = name.lower()
            for served in self.by_name:
                if any(_matches(p, lowered) for p in served.names):
                    chosen = served
                    break
        if chosen is not None:
            sslobj.context = chosen.context


# ------------------------------------------------------------------ one connection


class TlsConnection(asyncio.Protocol):
    """The TCP side of one RTMPS connection (see the module docstring)."""

    def __init__(self, certificates: ServedCertificates, app: asyncio.Protocol) -> None:
        self.app = app
        self.certificates = certificates
        self.context = certificates.context
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.sslobj = self.context.wrap_bio(self._in, self._out, server_side=True)
        self.transport: asyncio.Transport | None = None
        self.facade: TlsTransport | None = None
        self.handshaking = True
        self.sniffed = False
        self.error: TlsError | None = None
        self.pending: list[bytes] = []  # written by the session before the handshake ended

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.facade = TlsTransport(self)
        # A transport in all but name (duck-typed, as uvloop's are).
        self.app.connection_made(cast(asyncio.Transport, self.facade))  # admission: may abort

    def data_received(self, data: bytes) -> None:
        if self.error is not None or self.transport is None or self.transport.is_closing():
            return
        if not self.sniffed and data:
            self.sniffed = True
            first = data[0]
            if first == _RTMP_VERSION:
                self._fail(
                    "TLS: the client speaks plain RTMP to the RTMPS port (rtmp:// where "
                    "rtmps:// was meant): this port speaks TLS, not RTMP",
                    "plain_rtmp",
                )
                return
            if first != _TLS_HANDSHAKE:
                self._fail(
                    f"TLS: the client does not speak TLS (first byte 0x{first:02x})", "not_tls"
                )
                return
        self._in.write(data)
        if self.handshaking and not self._handshake():
            return
        self._read()

    def eof_received(self) -> bool:
        if self.handshaking and self.error is None:
            self.error = TlsError("TLS: the client closed the connection during the handshake")
            self.certificates.failures["closed"] += 1
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connection_lost(self.error or exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    # ------------------------------------------------------------ TLS

    def _handshake(self) -> bool:
        """Advance the handshake; True once it is done (the rest is application data)."""
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            self._flush()  # the alert, if OpenSSL made one
            self._fail(explain_ssl_error(exc), (exc.reason or "handshake").lower())
            return False
        self.handshaking = False
        self._flush()
        pending, self.pending = self.pending, []
        for data in pending:
            self.send(data)
        return True

    def _read(self) -> None:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.sslobj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the client's close_notify
                self._flush()
                if chunks:
                    self.app.data_received(b"".join(chunks))
                if self.transport is not None:
                    self.transport.close()
                return
            except ssl.SSLError as exc:
                self._fail(explain_ssl_error(exc))
                return
            if not chunk:
                break
            chunks.append(chunk)
        self._flush()  # a key update or a session ticket
        if chunks:
            self.app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and write the session's bytes."""
        if self.handshaking:
            self.pending.append(bytes(data))
            return
        try:
            if len(data) <= _PIECE:
                self.sslobj.write(data)
            else:
                # In pieces, each flushed: a memory BIO keeps the size of the largest
                # write it ever held (a GOP burst would cost every player that much).
                view = memoryview(data)
                for start in range(0, len(view), _PIECE):
                    self.sslobj.write(view[start : start + _PIECE])
                    self._flush()
        except ssl.SSLError as exc:
            self._fail(explain_ssl_error(exc))
            return
        self._flush()

    def _flush(self) -> None:
        out = self._out.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def shutdown(self) -> None:
        """close_notify (when the handshake was done), then close after what is queued."""
        if not self.handshaking and self.error is None:
            with contextlib.suppress(ssl.SSLError):  # want-read: no waiting for the answer
                self.sslobj.unwrap()
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str, label: str = "") -> None:
        if self.error is None:
            self.error = TlsError(reason)
            if label:
                self.certificates.failures[label[:40]] += 1
        if self.transport is not None:
            self.transport.abort()


class TlsTransport:
    """What the RTMP session sees of an RTMPS connection: a transport whose bytes
    are encrypted on their way (writes go through :meth:`TlsConnection.send`)."""

    def __init__(self, conn: TlsConnection) -> None:
        self._conn = conn
        assert conn.transport is not None
        self._transport = conn.transport
        self.write = conn.send  # the fan-out's per-player call: one bound method

    def writelines(self, data: Sequence[bytes]) -> None:
        self._conn.send(b"".join(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._conn.context
        if name == "ssl_object":
            return self._conn.sslobj
        return self._transport.get_extra_info(name, default)

    def close(self) -> None:
        self._conn.shutdown()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("an RTMPS connection keeps its session")

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._conn.app
