"""Certificate pinning: does the peer's certificate match one of the configured pins?

A pin is the SHA-256 of either the whole certificate (DER, what
``openssl x509 -fingerprint -sha256`` prints) or of its SubjectPublicKeyInfo
(what stays the same when a certificate is renewed with the same key, as
HPKP's ``pin-sha256`` and curl's ``--pinnedpubkey``). Pins are 64 lowercase
hex digits (the configuration normalises them). Pure functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from streamgate.tls.x509 import X509Error, subject_public_key_info

__all__ = ["Fingerprints", "fingerprints", "pin_mismatch"]


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """The two SHA-256 fingerprints a pin may name, as 64 lowercase hex digits.

    ``spki`` is empty when the certificate's public key could not be read."""

    certificate: str
    spki: str

    def matches(self, pins: Sequence[str]) -> bool:
        return any(pin in (self.certificate, self.spki) for pin in pins if pin)


def fingerprints(der: bytes) -> Fingerprints:
    """SHA-256 of the DER certificate and of its SubjectPublicKeyInfo."""
    try:
        spki = hashlib.sha256(subject_public_key_info(der)).hexdigest()
    except X509Error:
        spki = ""
    return Fingerprints(hashlib.sha256(der).hexdigest(), spki)


def pin_mismatch(der: bytes | None, pins: Sequence[str]) -> str | None:
    """None when the certificate matches a pin (or no pin is set); else the diagnosis,
    with both of the certificate's fingerprints and the pins expected."""
    if not pins:
        return None
    if not der:
        return "TLS: pin mismatch: the origin presented no certificate"
    found = fingerprints(der)
    if found.matches(pins):
        return None
    spki = found.spki or "(public key unreadable)"
    expected = ", ".join(pins)
    return (
        f"TLS: pin mismatch: the origin's certificate has SHA-256 {found.certificate} and "
        f"public key (SPKI) SHA-256 {spki}; tls_pin_sha256 expects {expected}"
    )
