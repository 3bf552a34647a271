"""Just enough of X.509 to explain a TLS failure: names, validity dates, SANs,
and the SubjectPublicKeyInfo bytes a public-key pin is computed over.

The probe reads the server's certificate to say *why* verification failed
("expired on 2026-01-02", "is for a.example, b.example"). Python's ``ssl``
only decodes certificates that passed verification, so this module reads the
DER bytes itself. It is a reader for one purpose, not a validator: it never
checks a signature, and any input it cannot follow yields :class:`X509Error`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["CertificateInfo", "X509Error", "parse_certificate", "subject_public_key_info"]

# DER universal tags, and the context tags we look for.
_INTEGER: Final = 0x02
_OCTET_STRING: Final = 0x04
_OID: Final = 0x06
_UTC_TIME: Final = 0x17
_GENERALIZED_TIME: Final = 0x18
_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_VERSION: Final = 0xA0  # [0] EXPLICIT version
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT extensions
_SAN_DNS: Final = 0x82  # GeneralName dNSName [2] IMPLICIT IA5String
_SAN_IP: Final = 0x87  # GeneralName iPAddress [7] IMPLICIT OCTET STRING

_OID_SUBJECT_ALT_NAME: Final = "2.5.29.17"
_ATTRIBUTE_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_STRING_CODECS: Final = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # T61String, read loosely
    0x16: "ascii",  # IA5String
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


class X509Error(ValueError):
    """The bytes are not a certificate this reader can follow."""


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the probe reports about a peer certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    @property
    def self_issued(self) -> bool:
        return self.subject == self.issuer

    @property
    def names(self) -> str:
        """The names a client matches against: ``DNS:a.example, IP:10.0.0.1``."""
        found = [f"DNS:{n}" for n in self.dns_names] + [f"IP:{a}" for a in self.ip_addresses]
        return ", ".join(found) if found else "no subjectAltName"


def parse_certificate(der: bytes) -> CertificateInfo:
    """Read subject, issuer, validity and subjectAltName from a DER certificate."""
    try:
        return _parse(der)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, X509Error):
            raise
        raise X509Error(f"unreadable certificate: {exc}") from None


def subject_public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate (tag and length included), the
    bytes a public-key pin hashes (as HPKP's ``pin-sha256`` and curl's
    ``--pinnedpubkey sha256//`` do)."""
    try:
        start, end = _tbs_fields(der)[5]
    except (IndexError, ValueError) as exc:
        if isinstance(exc, X509Error):
            raise
        raise X509Error(f"unreadable certificate: {exc}") from None
    return der[start:end]


# --------------------------------------------------------------------- DER reading


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """The TLV at ``pos``: ``(tag, value start, value end)``."""
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise X509Error("multi-byte DER tags are not used in certificates")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise X509Error("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise X509Error("DER value runs past the end of the data")
    return tag, pos, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _read(data, start)
        items.append(item)
        start = item[2]
    return items


def _expect(item: tuple[int, int, int], tag: int, what: str) -> tuple[int, int]:
    if item[0] != tag:
        raise X509Error(f"{what}: expected DER tag {tag:#04x}, found {item[0]:#04x}")
    return item[1], item[2]


def _oid(value: bytes) -> str:
    if not value:
        raise X509Error("empty OID")
    parts = [min(value[0] // 40, 2), value[0] - 40 * min(value[0] // 40, 2)]
    acc = 0
    for byte in value[1:]:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(map(str, parts))


def _time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii")
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise X509Error("validity is neither UTCTime nor GeneralizedTime")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _name(data: bytes, start: int, end: int) -> str:
    """A Name as OpenSSL prints it in one line, in certificate order: ``C=US, O=X, CN=y``."""
    parts = []
    for rdn in _children(data, start, end):
        for atv in _children(data, *_expect(rdn, _SET, "RDN")):
            oid_item, value_item = _children(data, *_expect(atv, _SEQUENCE, "attribute"))[:2]
            oid = _oid(data[slice(*_expect(oid_item, _OID, "attribute type"))])
            codec = _STRING_CODECS.get(value_item[0], "latin-1")
            text = data[value_item[1] : value_item[2]].decode(codec, errors="replace")
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={text}")
    return ", ".join(parts)


def _subject_alt_names(data: bytes, start: int, end: int) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for tag, vstart, vend in _children(data, *_expect(_read(data, start), _SEQUENCE, "SAN")):
        value = data[vstart:vend]
        if tag == _SAN_DNS:
            dns.append(value.decode("ascii", errors="replace"))
        elif tag == _SAN_IP and len(value) in (4, 16):
            ips.append(str(ipaddress.ip_address(value)))
    return dns, ips


def _tbs_fields(der: bytes) -> list[tuple[int, int]]:
    """(start, end) of each tbsCertificate field after the version, tag and length
    included: serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo..."""
    cert = _expect(_read(der, 0), _SEQUENCE, "certificate")
    start, end = _expect(_children(der, *cert)[0], _SEQUENCE, "tbsCertificate")
    spans = []
    while start < end:
        item = _read(der, start)
        spans.append((start, item[2]))
        start = item[2]
    if spans and der[spans[0][0]] == _VERSION:
        spans = spans[1:]
    if len(spans) < 6:
        raise X509Error("tbsCertificate has too few fields")
    return spans


def _parse(der: bytes) -> CertificateInfo:
    cert = _expect(_read(der, 0), _SEQUENCE, "certificate")
    tbs = _expect(_children(der, *cert)[0], _SEQUENCE, "tbsCertificate")
    fields = _children(der, *tbs)
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(fields) < 6:
        raise X509Error("tbsCertificate has too few fields")
    _expect(fields[0], _INTEGER, "serial number")
    issuer = _name(der, *_expect(fields[2], _SEQUENCE, "issuer"))
    validity = _children(der, *_expect(fields[3], _SEQUENCE, "validity"))
    if len(validity) != 2:
        raise X509Error("validity must hold two times")
    not_before = _time(validity[0][0], der[validity[0][1] : validity[0][2]])
    not_after = _time(validity[1][0], der[validity[1][1] : validity[1][2]])
    subject = _name(der, *_expect(fields[4], _SEQUENCE, "subject"))
    dns: list[str] = []
    ips: list[str] = []
    for tag, start, _end in fields[6:]:
        if tag != _EXTENSIONS:
            continue
        for ext in _children(der, *_expect(_read(der, start), _SEQUENCE, "extensions")):
            parts = _children(der, *_expect(ext, _SEQUENCE, "extension"))
            oid = _oid(der[slice(*_expect(parts[0], _OID, "extension id"))])
            value = parts[-1]
            if oid == _OID_SUBJECT_ALT_NAME:
                _expect(value, _OCTET_STRING, "extension value")
                dns, ips = _subject_alt_names(der, value[1], value[2])
    return CertificateInfo(subject, issuer, not_before, not_after, tuple(dns), tuple(ips))
