"""rtmps:// origins, the pure parts: origin URLs, pins, and each TLS diagnosis (fake times)."""

from __future__ import annotations

import hashlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from streamgate.config import load_settings
from streamgate.edge.origins import OriginAddress, parse_origin
from streamgate.tls.diagnosis import (
    ORIGIN_HINTS,
    REASONS,
    X509_V_ERR_CERT_HAS_EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID,
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    X509_V_ERR_HOSTNAME_MISMATCH,
    X509_V_ERR_IP_ADDRESS_MISMATCH,
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    explain_not_tls,
    explain_ssl_error,
    explain_timeout,
    explain_verify_error,
    ssl_error_reason,
    verify_reason,
)
from streamgate.tls.pins import fingerprints, pin_mismatch
from streamgate.tls.x509 import CertificateInfo, X509Error, subject_public_key_info
from tests.probe.certs import TestCA, self_signed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cert(
    *,
    not_before: datetime = NOW - timedelta(days=10),
    not_after: datetime = NOW + timedelta(days=80),
    dns: tuple[str, ...] = ("origin.example",),
    ips: tuple[str, ...] = (),
    subject: str = "O=streamgate tests, CN=origin.example",
    issuer: str = "O=streamgate tests, CN=streamgate test CA",
) -> CertificateInfo:
    return CertificateInfo(subject, issuer, not_before, not_after, dns, ips)


def explain(code: int, info: CertificateInfo | None, host: str = "origin.example") -> str:
    return explain_verify_error(code, "msg", info, host, NOW, ORIGIN_HINTS)


# --------------------------------------------------------------------- origin URLs


def test_rtmps_origin_defaults_to_port_443_and_rtmp_to_1935() -> None:
    assert parse_origin("rtmps://origin.example") == OriginAddress("origin.example", 443, True)
    assert parse_origin("rtmps://10.0.0.1:1936") == OriginAddress("10.0.0.1", 1936, True)
    assert parse_origin("rtmp://origin.example") == OriginAddress("origin.example", 1935, False)


@pytest.mark.parametrize(
    "url", ["http://origin.example", "rtmpe://origin.example", "rtmps:///live", "rtmps://h/app"]
)
def test_other_origin_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        parse_origin(url)


def test_settings_accept_rtmps_origins() -> None:
    settings = load_settings(
        None, mode="edge", edge={"origins": ["rtmps://origin.example", "rtmp://backup.example"]}
    )
    assert settings.edge.origins[0] == "rtmps://origin.example"
    assert settings.edge.tls_verify is True


# --------------------------------------------------------------------- pins


def test_fingerprints_are_the_certificate_and_spki_sha256(tmp_path: Path) -> None:
    issued = TestCA(tmp_path).issue("srv", ["127.0.0.1"])
    der = issued.der()
    parsed = x509.load_der_x509_certificate(der)
    spki = parsed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert subject_public_key_info(der) == spki
    found = fingerprints(der)
    assert found.certificate == hashlib.sha256(der).hexdigest()
    assert found.spki == hashlib.sha256(spki).hexdigest()


def test_pin_check_matches_either_fingerprint(tmp_path: Path) -> None:
    der = self_signed(tmp_path, "self", ["127.0.0.1"]).der()
    found = fingerprints(der)
    other = "ab" * 32
    assert pin_mismatch(der, []) is None
    assert pin_mismatch(der, [other, found.certificate]) is None
    assert pin_mismatch(der, [found.spki]) is None
    text = pin_mismatch(der, [other])
    assert text == (
        f"TLS: pin mismatch: the origin's certificate has SHA-256 {found.certificate} and "
        f"public key (SPKI) SHA-256 {found.spki}; tls_pin_sha256 expects {other}"
    )
    assert pin_mismatch(None, [other]) == "TLS: pin mismatch: the origin presented no certificate"


def test_pin_check_of_an_unreadable_certificate_still_hashes_the_bytes() -> None:
    junk = b"\x30\x03\x02\x01\x00"
    with pytest.raises(X509Error):
        subject_public_key_info(junk)
    found = fingerprints(junk)
    assert (found.certificate, found.spki) == (hashlib.sha256(junk).hexdigest(), "")
    assert pin_mismatch(junk, [found.certificate]) is None
    assert "(public key unreadable)" in (pin_mismatch(junk, ["cd" * 32]) or "")


def test_configured_pins_are_normalised() -> None:
    pin = ":".join(["AB"] * 32)
    settings = load_settings(None, edge={"tls_pin_sha256": [pin]})
    assert settings.edge.tls_pin_sha256 == ["ab" * 32]


# --------------------------------------------------------------------- diagnoses


def test_expired_names_the_date() -> None:
    info = cert(not_after=datetime(2026, 2, 1, 8, 30, tzinfo=UTC))
    assert explain(X509_V_ERR_CERT_HAS_EXPIRED, info) == (
        "TLS: certificate expired on 2026-02-01 (notAfter 2026-02-01 08:30:00 UTC, this "
        "machine's clock 2026-03-01 12:00:00 UTC; O=streamgate tests, CN=origin.example)"
    )
    assert verify_reason(X509_V_ERR_CERT_HAS_EXPIRED) == "expired"


def test_not_yet_valid_names_both_times() -> None:
    info = cert(not_before=datetime(2026, 4, 1, tzinfo=UTC))
    text = explain(X509_V_ERR_CERT_NOT_YET_VALID, info)
    assert text.startswith("TLS: certificate not valid before 2026-04-01 00:00:00 UTC")
    assert "check this machine's clock (2026-03-01 12:00:00 UTC)" in text
    assert verify_reason(X509_V_ERR_CERT_NOT_YET_VALID) == "not_yet_valid"


def test_self_signed_points_to_the_edge_settings() -> None:
    info = cert(issuer="O=streamgate tests, CN=origin.example")
    assert explain(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, info) == (
        "TLS: self-signed certificate (O=streamgate tests, CN=origin.example): not trusted; "
        "pass it or its CA with [edge] tls_ca_file (or [edge] tls_verify = false to skip "
        "verification)"
    )
    assert verify_reason(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) == "self_signed"


@pytest.mark.parametrize(
    "code",
    [
        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
    ],
)
def test_unknown_issuer_and_missing_intermediate(code: int) -> None:
    text = explain(code, cert())
    assert "intermediate" in text or "root" in text
    assert verify_reason(code) == "unknown_issuer"


def test_unknown_issuer_names_the_issuer() -> None:
    assert explain(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, cert()) == (
        "TLS: unknown issuer (O=streamgate tests, CN=streamgate test CA): the issuing CA is "
        "not trusted here, or the server does not send its intermediate certificate"
    )


def test_hostname_mismatch_lists_the_certificate_names() -> None:
    info = cert(dns=("a.example", "b.example"), ips=("10.0.0.1",))
    assert explain(X509_V_ERR_HOSTNAME_MISMATCH, info, "c.example") == (
        "TLS: host name mismatch: the certificate is for DNS:a.example, DNS:b.example, "
        "IP:10.0.0.1, not 'c.example'"
    )
    assert verify_reason(X509_V_ERR_HOSTNAME_MISMATCH) == "hostname_mismatch"
    assert verify_reason(X509_V_ERR_IP_ADDRESS_MISMATCH) == "hostname_mismatch"


def test_unlisted_verify_codes_are_other() -> None:
    assert verify_reason(23) == "other"
    assert explain(4242, None).endswith("(OpenSSL verify error 4242)")


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason  # what the C code sets
    return exc


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("WRONG_VERSION_NUMBER", "not_tls"),
        ("UNSUPPORTED_PROTOCOL", "protocol"),
        ("TLSV1_ALERT_PROTOCOL_VERSION", "protocol"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", "protocol"),
        ("NO_SHARED_CIPHER", "protocol"),
        ("UNEXPECTED_EOF_WHILE_READING", "other"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_ssl_error_reasons(reason: str, label: str) -> None:
    exc = _ssl_error(reason)
    assert ssl_error_reason(exc) == label
    assert label in REASONS
    assert explain_ssl_error(exc).startswith("TLS handshake failed: ")


def test_protocol_mismatch_is_explained() -> None:
    assert explain_ssl_error(_ssl_error("TLSV1_ALERT_PROTOCOL_VERSION")) == (
        "TLS handshake failed: the server refused our TLS versions (protocol mismatch) "
        "(TLSV1_ALERT_PROTOCOL_VERSION)"
    )


def test_not_tls_tells_rtmp_from_other_answers() -> None:
    rtmp = explain_not_tls("127.0.0.1:1935", b"\x03\x00\x00\x00\x00")
    assert rtmp == (
        "TLS: 127.0.0.1:1935: this port speaks RTMP, not TLS: use rtmp:// (a plain rtmp:// port)"
    )
    http = explain_not_tls("127.0.0.1:80", b"HTTP/1.1 400")
    assert (
        http == "TLS: 127.0.0.1:80: this port does not speak TLS (it answered bytes "
        "48 54 54 50 2f 31 2e 31)"
    )


def test_timeout_is_explained() -> None:
    assert explain_timeout(1.5).startswith("TLS: no answer to the TLS handshake in 1.5 s")


def test_reasons_are_a_small_fixed_set() -> None:
    assert REASONS == (
        "expired", "not_yet_valid", "self_signed", "unknown_issuer", "hostname_mismatch",
        "pin_mismatch", "protocol", "timeout", "not_tls", "other",
    )  # fmt: skip
