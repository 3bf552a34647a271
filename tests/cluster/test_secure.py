"""Redis with AUTH (requirepass) and with TLS (rediss://): a ``streamgate run`` edge
connects with the password from the URL, the environment or a file, verifies the
server against ``tls_ca_file``, and the password shows in neither its log nor its API."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cluster.redisd import RedisServer
from tests.cluster.test_processes import edge_settings
from tests.peers import free_port, need, wait_port
from tests.processes import GatewayProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.interop

PASSWORD = "s3cret-Redis-pw-7f1c"


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsRedis:
    """redis-server listening on TLS only, with AUTH."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca, cert, key = make_certs(directory)
        self.port = free_port()
        self.args = [
            need("redis-server"),
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
            "--requirepass", PASSWORD,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TlsRedis:
        log = self.directory / "redis.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, proc=self.proc)
        except Exception:
            self.__exit__()
            pytest.fail(f"redis-server with TLS did not start: {log.read_text(errors='replace')}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def auth_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, password=PASSWORD) as server:
        yield server


def run_edge(tmp_path: Path, cluster: dict[str, object], env: dict[str, str]) -> GatewayProcess:
    settings = edge_settings("redis://unused", "secure-edge", free_port())
    settings["cluster"].update(cluster)
    return GatewayProcess(tmp_path / "edge", settings, env=env)


def assert_connected_and_quiet(edge: GatewayProcess) -> None:
    with edge:
        wait_until(edge.cluster_up, timeout=15, what="the edge connected to Redis")
        view = edge.cluster()
        assert [n["node"] for n in view["nodes"]] == ["secure-edge"]
        shown = edge.text("/api/v1/cluster") + edge.text("/metrics")
    assert PASSWORD not in shown
    assert PASSWORD not in edge.log()
    assert "connected to Redis" in edge.log()


@pytest.mark.parametrize("where", ["url", "env", "file"])
def test_auth_with_the_password_from_the_url_the_environment_or_a_file(
    tmp_path: Path, auth_redis: RedisServer, where: str
) -> None:
    base = f"redis://127.0.0.1:{auth_redis.port}/0"
    cluster: dict[str, object] = {"redis_url": base}
    env: dict[str, str] = {}
    if where == "url":
        cluster["redis_url"] = f"redis://:{PASSWORD}@127.0.0.1:{auth_redis.port}/0"
    elif where == "env":
        env["STREAMGATE_CLUSTER__PASSWORD"] = PASSWORD
    else:
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD + "\n")
        cluster["password_file"] = str(secret)
    edge = run_edge(tmp_path, cluster, env)
    assert_connected_and_quiet(edge)
    if where == "url":
        assert f":***@127.0.0.1:{auth_redis.port}" in edge.log()


def test_a_wrong_password_is_reported_without_showing_it(
    tmp_path: Path, auth_redis: RedisServer
) -> None:
    wrong = "not-the-password-91ab"
    url = f"redis://:{wrong}@127.0.0.1:{auth_redis.port}/0"
    edge = run_edge(tmp_path, {"redis_url": url}, {})
    with edge:
        wait_until(lambda: "unreachable" in edge.log(), timeout=15, what="the failure logged")
        view = edge.cluster()
        assert view["redis"]["up"] is False and view["redis"]["last_error"]
        assert wrong not in edge.text("/api/v1/cluster")
    assert wrong not in edge.log()


def test_tls_verified_against_the_configured_ca(tmp_path: Path) -> None:
    with TlsRedis(tmp_path) as server:
        url = f"rediss://127.0.0.1:{server.port}/0"
        edge = run_edge(
            tmp_path,
            {"redis_url": url, "tls_ca_file": str(server.ca), "password": PASSWORD},
            {},
        )
        assert_connected_and_quiet(edge)


def test_tls_without_the_ca_is_refused(tmp_path: Path) -> None:
    with TlsRedis(tmp_path) as server:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0"
        edge = run_edge(tmp_path, {"redis_url": url}, {})  # the system CAs do not know it
        with edge:
            wait_until(lambda: "unreachable" in edge.log(), timeout=15, what="refused")
            view = edge.cluster()
            assert view["redis"]["up"] is False
            assert "certificate" in (view["redis"]["last_error"] or "").lower()
        assert PASSWORD not in edge.log()
