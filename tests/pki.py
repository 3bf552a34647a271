"""A throw-away PKI for TLS tests, made with ``cryptography``: a root CA, an
intermediate, and server certificates good and bad (expired, not yet valid,
for another name, self-signed, issued by an unknown CA)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Issued", "Pki"]

_NOW = datetime.datetime.now(datetime.UTC)
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: Path  # PEM: the certificate and the chain above it (up to, not with, the root)
    key: Path
    serial: int

    def rtmp_settings(self, **extra: Any) -> dict[str, Any]:
        """``[rtmp]`` of a test server serving this certificate on RTMPS (port 0)."""
        return {
            "listen": "127.0.0.1:0",
            "tls_listen": "127.0.0.1:0",
            "tls_cert": str(self.cert),
            "tls_key": str(self.key),
            **extra,
        }


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """``Pki(tmp_path)``: ``ca`` (the root's PEM), ``server(...)`` issues one."""

    def __init__(self, directory: Path, name: str = "Test Root CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.root_key = _key()
        self.root = self._issue(_name(name), self.root_key, None, self.root_key, ca=True)
        self.ca = directory / f"{name.replace(' ', '-').lower()}.pem"
        self.ca.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        self.inter_key = _key()
        self.inter = self._issue(
            _name(f"{name} Intermediate"), self.inter_key, self.root, self.root_key, ca=True
        )
        self._count = 0

    def _issue(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        issuer_key: ec.EllipticCurvePrivateKey,
        *,
        ca: bool = False,
        names: tuple[str, ...] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject if issuer is not None else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or _NOW - _DAY)
            .not_valid_after(not_after or _NOW + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            alt: list[x509.GeneralName] = []
            for n in names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def server(
        self,
        label: str,
        names: tuple[str, ...] = ("localhost", "127.0.0.1"),
        *,
        expired: bool = False,
        not_yet_valid: bool = False,
        self_signed: bool = False,
        chain: bool = True,
    ) -> Issued:
        """A server certificate for ``names``, issued by the intermediate (with the
        intermediate in its file unless ``chain`` is false) or self-signed."""
        key = _key()
        not_before, not_after = None, None
        if expired:
            not_before, not_after = _NOW - 60 * _DAY, _NOW - 2 * _DAY
        if not_yet_valid:
            not_before, not_after = _NOW + 2 * _DAY, _NOW + 60 * _DAY
        subject = _name(names[0] if names else label)
        if self_signed:
            cert = self._issue(subject, key, None, key, names=names,
                               not_before=not_before, not_after=not_after)  # fmt: skip
            pems = [cert]
        else:
            cert = self._issue(subject, key, self.inter, self.inter_key, names=names,
                               not_before=not_before, not_after=not_after)  # fmt: skip
            pems = [cert, self.inter] if chain else [cert]
        self._count += 1
        cert_path = self.directory / f"{label}-{self._count}.crt"
        key_path = self.directory / f"{label}-{self._count}.key"
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pems))
        key_path.write_bytes(_pem_key(key))
        return Issued(cert_path, key_path, cert.serial_number)
