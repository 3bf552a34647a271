"""The client side of TLS that explains itself: contexts, and the looks after a failure.

When a verified handshake fails, OpenSSL names the check that failed but not
the certificate's dates or names; :func:`fetch_certificate` reads the
server's certificate over a second, unverified connection (never used for
media) so the explanation can. When the handshake gets no TLS answer (a
timeout, a close, ``WRONG_VERSION_NUMBER``), :func:`sniff` sends an RTMP
C0+C1 on a fresh connection: an answer that starts with S0 (byte 3) means
the port speaks plain RTMP. :func:`diagnose` puts both together into one
:class:`~streamgate.tls.diagnosis.TlsFailure`. Each look is one connection,
bounded by its own deadline, made only after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from datetime import UTC, datetime

from streamgate.tls.diagnosis import (
    PROBE_HINTS,
    Hints,
    TlsFailure,
    explain_not_tls,
    explain_ssl_error,
    explain_timeout,
    explain_verify_error,
    ssl_error_reason,
    unverified_context,
    verify_reason,
)
from streamgate.tls.x509 import CertificateInfo, X509Error, parse_certificate

__all__ = ["diagnose", "fetch_certificate", "origin_context", "sniff"]

# RTMP's C0 (version 3) and a C1 (time, zero, 1528 bytes): what an RTMP server answers.
_RTMP_C0C1 = b"\x03" + struct.pack(">II", 0, 0) + bytes(1528)
_TLS_HANDSHAKE_RECORD = 0x16


def origin_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The client context for rtmps:// origins: TLS 1.2 at least; chain, dates and
    host name verified against the system trust store or only ``ca_file``'s CAs,
    unless ``verify`` is false. Raises ``OSError``/``ssl.SSLError`` for a bad file."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


async def fetch_certificate(
    host: str, port: int, *, server_hostname: str | None, timeout: float, family: int = 0
) -> CertificateInfo | None:
    """The server's certificate over a second, unverified connection (for the diagnosis)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(
                host,
                port,
                family=family,
                ssl=unverified_context(),
                server_hostname=server_hostname,
            )
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return parse_certificate(der) if der else None
    except (OSError, TimeoutError, X509Error):
        return None
    finally:
        await _close(writer)


async def sniff(host: str, port: int, *, timeout: float, family: int = 0) -> bytes:
    """The first bytes the port answers to an RTMP C0+C1 (b"": nothing in time)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, family=family)
            writer.write(_RTMP_C0C1)
            await writer.drain()
            return await reader.read(16)
    except (OSError, TimeoutError):
        return b""
    finally:
        await _close(writer)


async def diagnose(
    exc: BaseException,
    *,
    host: str,
    port: int,
    server_hostname: str,
    handshake_timeout: float,
    look_timeout: float,
    hints: Hints = PROBE_HINTS,
    now: datetime | None = None,
) -> TlsFailure:
    """Why the handshake with ``host``:``port`` failed with ``exc``, looking again if needed.

    ``server_hostname`` is the name verified (and sent as SNI); ``look_timeout``
    bounds each second look (certificate fetch or RTMP sniff)."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        cert = await fetch_certificate(
            host, port, server_hostname=server_hostname, timeout=look_timeout
        )
        code, message = exc.verify_code, exc.verify_message
        when = now or datetime.now(UTC)
        text = explain_verify_error(code, message, cert, server_hostname, when, hints)
        return TlsFailure(verify_reason(code), text)
    if isinstance(exc, ssl.SSLError):
        reason = ssl_error_reason(exc)
        if reason in ("not_tls", "other"):
            first = await sniff(host, port, timeout=look_timeout)
            if first and first[0] != _TLS_HANDSHAKE_RECORD:
                return TlsFailure("not_tls", explain_not_tls(where, first))
        return TlsFailure(reason, explain_ssl_error(exc))
    first = await sniff(host, port, timeout=look_timeout)
    if first and first[0] != _TLS_HANDSHAKE_RECORD:
        return TlsFailure("not_tls", explain_not_tls(where, first))
    if isinstance(exc, TimeoutError):
        return TlsFailure("timeout", explain_timeout(handshake_timeout))
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return TlsFailure(
        "other",
        "TLS: the server closed the connection during the TLS handshake (no TLS version "
        f"or cipher in common, or it refused us){f': {detail}' if detail else ''}",
    )
