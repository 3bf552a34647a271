"""TLS failures explained in one line (the probe, the RTMPS listener, rtmps:// origins).

Verification is on by default (the system trust store, or only the CAs of
``--ca FILE`` / ``[edge] tls_ca_file``). When it fails, OpenSSL's verify code
says which check failed; the client then reads the server's certificate over
a second, unverified connection (:mod:`streamgate.tls.client`) so the
explanation can name dates and host names. Each failure also has a reason
from the small fixed set :data:`REASONS` (a metrics label). Everything but
:func:`client_context` is pure: the current time is passed in.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from streamgate.tls.x509 import CertificateInfo

__all__ = [
    "ORIGIN_HINTS",
    "PROBE_HINTS",
    "REASONS",
    "X509_V_ERR_CERT_HAS_EXPIRED",
    "X509_V_ERR_CERT_NOT_YET_VALID",
    "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT",
    "X509_V_ERR_HOSTNAME_MISMATCH",
    "X509_V_ERR_IP_ADDRESS_MISMATCH",
    "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN",
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "Hints",
    "TlsFailure",
    "client_context",
    "describe_certificate",
    "explain_not_tls",
    "explain_ssl_error",
    "explain_timeout",
    "explain_verify_error",
    "ssl_error_reason",
    "unverified_context",
    "verify_reason",
]

# OpenSSL's X509_V_ERR_* verify codes (include/openssl/x509_vfy.h), as found in
# ssl.SSLCertVerificationError.verify_code. Stable across OpenSSL 1.1 and 3.x.
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: Final = 2
X509_V_ERR_CERT_NOT_YET_VALID: Final = 9
X509_V_ERR_CERT_HAS_EXPIRED: Final = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: Final = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: Final = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: Final = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: Final = 21
X509_V_ERR_CERT_REVOKED: Final = 23
X509_V_ERR_INVALID_CA: Final = 24
X509_V_ERR_INVALID_PURPOSE: Final = 26
X509_V_ERR_HOSTNAME_MISMATCH: Final = 62
X509_V_ERR_IP_ADDRESS_MISMATCH: Final = 64

_EXPIRY_WARNING_DAYS: Final = 14

# Why a TLS connection failed, as a metrics label: a small fixed set.
REASONS: Final = (
    "expired",
    "not_yet_valid",
    "self_signed",
    "unknown_issuer",
    "hostname_mismatch",
    "pin_mismatch",
    "protocol",
    "timeout",
    "not_tls",
    "other",
)

_VERIFY_REASONS: Final = {
    X509_V_ERR_CERT_HAS_EXPIRED: "expired",
    X509_V_ERR_CERT_NOT_YET_VALID: "not_yet_valid",
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "self_signed",
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: "unknown_issuer",  # an untrusted private root
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: "unknown_issuer",
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unknown_issuer",
    X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unknown_issuer",
    X509_V_ERR_HOSTNAME_MISMATCH: "hostname_mismatch",
    X509_V_ERR_IP_ADDRESS_MISMATCH: "hostname_mismatch",
}


@dataclass(frozen=True, slots=True)
class TlsFailure:
    """A failed TLS connection: ``reason`` (one of :data:`REASONS`) and the one line."""

    reason: str
    description: str


@dataclass(frozen=True, slots=True)
class Hints:
    """How the user of an explanation trusts a CA or turns verification off."""

    ca: str
    insecure: str


PROBE_HINTS: Final = Hints("--ca FILE", "--insecure")
ORIGIN_HINTS: Final = Hints("[edge] tls_ca_file", "[edge] tls_verify = false")


def verify_reason(code: int) -> str:
    """The :data:`REASONS` label of an OpenSSL verify code."""
    return _VERIFY_REASONS.get(code, "other")


def client_context(*, insecure: bool = False, cafile: str | None = None) -> ssl.SSLContext:
    """A client context that verifies chain, dates and host name unless ``insecure``.

    With ``cafile`` only the CAs in that file are trusted (as ``curl --cacert``),
    so a probe of a private origin does not pass because of some public CA.
    """
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def unverified_context() -> ssl.SSLContext:
    """For reading the peer certificate after verification failed; never for media."""
    return client_context(insecure=True)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_certificate(cert: CertificateInfo, now: datetime) -> str:
    """``subject CN=x; issuer CN=CA; valid until 2026-05-01 (58 days left)``."""
    left = cert.not_after - now
    if left.total_seconds() < 0:
        until = f"EXPIRED on {_day(cert.not_after)}"
    elif now < cert.not_before:
        until = f"NOT VALID before {_day(cert.not_before)}"
    else:
        until = f"valid until {_day(cert.not_after)} ({left.days} days left)"
        if left.days < _EXPIRY_WARNING_DAYS:
            until += ", renew soon"
    return f"subject {cert.subject or '(empty)'}; issuer {cert.issuer or '(empty)'}; {until}"


def explain_verify_error(
    code: int,
    message: str,
    cert: CertificateInfo | None,
    host: str,
    now: datetime,
    hints: Hints = PROBE_HINTS,
) -> str:
    """The one-line diagnosis for an ``SSLCertVerificationError``.

    ``cert`` is the server's own certificate when it could be fetched; OpenSSL
    does not say which certificate of the chain failed, so wording that
    depends on it checks the server's own certificate first.
    """
    subject = f" ({cert.subject})" if cert is not None and cert.subject else ""
    if code == X509_V_ERR_CERT_HAS_EXPIRED:
        if cert is not None and cert.not_after < now:
            return (
                f"TLS: certificate expired on {_day(cert.not_after)} (notAfter "
                f"{_stamp(cert.not_after)}, this machine's clock {_stamp(now)}; {cert.subject})"
            )
        valid = f" (the server's own is valid until {_day(cert.not_after)})" if cert else ""
        return f"TLS: a certificate in the chain has expired{valid}"
    if code == X509_V_ERR_CERT_NOT_YET_VALID:
        if cert is not None and now < cert.not_before:
            return (
                f"TLS: certificate not valid before {_stamp(cert.not_before)}{subject}: "
                f"check this machine's clock ({_stamp(now)}) or the server's certificate"
            )
        return "TLS: a certificate in the chain is not valid yet: check this machine's clock"
    if code == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return (
            f"TLS: self-signed certificate{subject}: not trusted; pass it or its CA "
            f"with {hints.ca} (or {hints.insecure} to skip verification)"
        )
    if code == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return (
            "TLS: self-signed root certificate in the chain is not trusted: pass the "
            f"private root CA with {hints.ca}"
        )
    if code in (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT):
        issuer = f" ({cert.issuer})" if cert is not None and cert.issuer else ""
        return (
            f"TLS: unknown issuer{issuer}: the issuing CA is not trusted here, or the "
            "server does not send its intermediate certificate"
        )
    if code == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return (
            "TLS: cannot verify the server's certificate: the server does not send its "
            "intermediate certificate(s)"
        )
    if code in (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH):
        if cert is None:
            return f"TLS: host name mismatch: the certificate is not for {host!r}"
        names = cert.names
        if not cert.dns_names and not cert.ip_addresses:
            names += f" (CN {cert.subject!r} is not used for matching)"
        return f"TLS: host name mismatch: the certificate is for {names}, not {host!r}"
    if code == X509_V_ERR_CERT_REVOKED:
        return f"TLS: certificate revoked{subject}"
    if code == X509_V_ERR_INVALID_CA:
        return "TLS: a certificate in the chain is used as a CA but is not one (invalid CA)"
    if code == X509_V_ERR_INVALID_PURPOSE:
        return f"TLS: certificate not meant for TLS servers (extended key usage){subject}"
    return f"TLS: certificate verification failed: {message} (OpenSSL verify error {code})"


# Reasons OpenSSL gives (ssl.SSLError.reason) that have a plainer explanation.
_REASONS: Final = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS there (a plain rtmp:// port?)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the server",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server refused our TLS versions (protocol mismatch)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the server",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "the server aborted the handshake (no cipher in common, or it wants a client certificate)"
    ),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "TLSV1_ALERT_UNRECOGNIZED_NAME": "the server does not know the requested host name (SNI)",
    "TLSV1_ALERT_INTERNAL_ERROR": "the server reported an internal TLS error",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the handshake",
    "RECORD_LAYER_FAILURE": "the TLS records were malformed",
}


# ... and the REASONS label of each (the rest are "other").
_SSL_REASON_LABELS: Final = {
    "WRONG_VERSION_NUMBER": "not_tls",
    "PACKET_LENGTH_TOO_LONG": "not_tls",
    "HTTP_REQUEST": "not_tls",
    "UNSUPPORTED_PROTOCOL": "protocol",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol",
    "NO_PROTOCOLS_AVAILABLE": "protocol",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "protocol",
    "NO_SHARED_CIPHER": "protocol",
    "NO_CIPHERS_AVAILABLE": "protocol",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": "protocol",
}


def explain_ssl_error(exc: ssl.SSLError) -> str:
    """The one-line diagnosis for a handshake failure other than verification."""
    reason = getattr(exc, "reason", None) or ""  # set by the C code, not by SSLError(...)
    plain = _REASONS.get(reason)
    if plain is not None:
        return f"TLS handshake failed: {plain} ({reason})"
    text = exc.strerror or str(exc)
    return f"TLS handshake failed: {text}"


def ssl_error_reason(exc: ssl.SSLError) -> str:
    """The :data:`REASONS` label of a handshake failure other than verification."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return verify_reason(exc.verify_code)
    return _SSL_REASON_LABELS.get(getattr(exc, "reason", None) or "", "other")


def explain_timeout(seconds: float) -> str:
    """No answer to the ClientHello in time (a silent or overloaded server)."""
    return (
        f"TLS: no answer to the TLS handshake in {seconds:g} s (the server is silent or "
        "overloaded, or it is not a TLS port)"
    )


def explain_not_tls(where: str, first: bytes) -> str:
    """The port answered, but not in TLS: RTMP's S0 (byte 3) or something else."""
    if first[:1] == b"\x03":
        return f"TLS: {where}: this port speaks RTMP, not TLS: use rtmp:// (a plain rtmp:// port)"
    shown = first[:8].hex(" ")
    return f"TLS: {where}: this port does not speak TLS (it answered bytes {shown})"
