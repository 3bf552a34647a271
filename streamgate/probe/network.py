"""The probe's network steps: ``dns``, ``tcp`` and ``tls`` (rtmps only).

Each ``step_<name>`` returns a :class:`~streamgate.probe.report.Done` or raises
:class:`~streamgate.probe.report.StepFailed` with the one-line diagnosis. The
tcp step leaves a connected socket in the run; the tls step (or, for plain
rtmp, the handshake step) runs the RTMP client over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from streamgate.probe.report import Done, StepFailed
from streamgate.probe.session import ProbeRun
from streamgate.tls.client import fetch_certificate
from streamgate.tls.diagnosis import (
    client_context,
    describe_certificate,
    explain_ssl_error,
    explain_verify_error,
)
from streamgate.tls.x509 import CertificateInfo, X509Error, parse_certificate

__all__ = ["explain_dns_error", "step_dns", "step_tcp", "step_tls"]


def _where(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# --------------------------------------------------------------------- step: dns


def explain_dns_error(exc: socket.gaierror, host: str) -> str:
    """The diagnosis for a failed lookup."""
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return f"DNS: no such host {host!r}"
    if exc.errno == socket.EAI_AGAIN:
        return f"DNS: temporary failure resolving {host!r} (resolver unreachable or slow)"
    return f"DNS: cannot resolve {host!r}: {exc.strerror or exc}"


async def step_dns(run: ProbeRun) -> Done:
    """Resolve the host name to the addresses ``tcp`` will try, in order."""
    host, port, timeout = run.target.host, run.target.port, run.options.timeout
    try:
        async with asyncio.timeout(timeout):
            infos = await run.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise StepFailed(f"DNS: no answer for {host!r} in {timeout:g} s") from None
    except socket.gaierror as exc:
        raise StepFailed(explain_dns_error(exc, host)) from None
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in run.addresses:
            run.addresses.append((family, sockaddr))
    shown = [str(sockaddr[0]) for _family, sockaddr in run.addresses]
    try:
        ipaddress.ip_address(host)
        detail = f"{host} is an address, no lookup"
    except ValueError:
        detail = f"{host} -> {', '.join(shown)}"
    return Done(detail, {"addresses": shown})


# --------------------------------------------------------------------- step: tcp


async def step_tcp(run: ProbeRun) -> Done:
    """Connect to each resolved address in turn until one accepts."""
    timeout = run.options.timeout
    failures: list[str] = []
    kinds: set[str] = set()
    for family, sockaddr in run.addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        where = _where(sockaddr)
        try:
            async with asyncio.timeout(timeout):
                await run.loop.sock_connect(sock, sockaddr)
        except TimeoutError:
            sock.close()
            kinds.add("timeout")
            failures.append(f"{where} timed out after {timeout:g} s")
            continue
        except ConnectionRefusedError:
            sock.close()
            kinds.add("refused")
            failures.append(f"{where} refused")
            continue
        except OSError as exc:
            sock.close()
            kinds.add("other")
            failures.append(f"{where}: {exc.strerror or exc}")
            continue
        run.sock = sock  # the handshake (or tls) step runs the client over it
        run.peer = (family, sockaddr)
        local = _where(sock.getsockname())
        detail = f"connected to {where} from {local}"
        if failures:
            detail += f" (after: {'; '.join(failures)})"
        return Done(detail, {"address": where, "local": local, "failed": failures})
    targets = ", ".join(_where(sockaddr) for _f, sockaddr in run.addresses)
    if kinds == {"refused"}:
        diagnosis = (
            f"connection refused by {targets}: nothing listens there (or a firewall rejects)"
        )
    elif kinds == {"timeout"}:
        diagnosis = (
            f"TCP connect to {targets} timed out after {timeout:g} s: host down or a "
            "firewall drops the packets"
        )
    else:
        diagnosis = f"cannot connect: {'; '.join(failures)}"
    raise StepFailed(diagnosis, info={"failed": failures})


# --------------------------------------------------------------------- step: tls


async def _fetch_certificate(run: ProbeRun) -> CertificateInfo | None:
    """The server's certificate over a second, unverified connection (for the diagnosis)."""
    if run.peer is None:
        return None
    family, sockaddr = run.peer
    return await fetch_certificate(
        str(sockaddr[0]),
        int(sockaddr[1]),
        server_hostname=run.target.host,
        timeout=run.options.timeout,
        family=family,
    )


async def step_tls(run: ProbeRun) -> Done:
    """TLS handshake: chain, dates and host name verified unless --insecure."""
    host, options = run.target.host, run.options
    try:
        context = client_context(insecure=options.insecure, cafile=options.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise StepFailed(f"TLS: cannot load --ca {options.cafile}: {exc}") from None
    try:
        async with asyncio.timeout(options.timeout):
            await run.attach(ssl=context, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        cert = await _fetch_certificate(run)
        now = datetime.now(UTC)
        code, message = exc.verify_code, exc.verify_message
        diagnosis = explain_verify_error(code, message, cert, host, now)
        info: dict[str, Any] = {"verify_code": code, "verify_message": message}
        if cert is not None:
            info["certificate"] = _cert_info(cert)
        raise StepFailed(diagnosis, info=info) from None
    except ssl.SSLError as exc:
        info = {"reason": getattr(exc, "reason", None)}
        raise StepFailed(explain_ssl_error(exc), info=info) from None
    except TimeoutError:
        raise StepFailed(
            f"TLS: no answer to the TLS handshake in {options.timeout:g} s "
            "(is this a plain rtmp:// port?)"
        ) from None
    except ConnectionError:
        raise StepFailed(
            "TLS: the server closed the connection during the TLS handshake (a plain "
            "rtmp:// port, no TLS version or cipher in common, or it refused us)"
        ) from None
    ssl_object = run.client.extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "?"
    parts = [version]
    if cipher is not None:
        parts.append(f"{cipher[0]} ({cipher[2]} bits)")
    info = {"version": version, "cipher": cipher[0] if cipher else None}
    der = ssl_object.getpeercert(binary_form=True)
    peer: CertificateInfo | None = None
    with contextlib.suppress(X509Error):
        peer = parse_certificate(der) if der else None
    if peer is not None:
        parts.append(describe_certificate(peer, datetime.now(UTC)))
        parts.append(f"names {peer.names}")
        info["certificate"] = _cert_info(peer)
    if options.insecure:
        parts.insert(0, "WARNING: certificate NOT verified (--insecure)")
    else:
        trust = f"CA file {options.cafile}" if options.cafile else "system trust store"
        parts.append(f"chain and host name verified ({trust})")
    info["verified"] = not options.insecure
    return Done("; ".join(parts), info)


def _cert_info(cert: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "dns_names": list(cert.dns_names),
        "ip_addresses": list(cert.ip_addresses),
    }
