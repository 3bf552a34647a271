"""Drive real RTMP peers (ffmpeg, ffprobe, nginx-rtmp) over loopback for interop tests.

Everything here talks to ``127.0.0.1`` only, and every process started is
bounded in time and reaped (context managers, ``try``/``finally``, hard
subprocess timeouts).

Facts established by running the Debian 12 peers (ffmpeg 5.1, nginx 1.22,
libnginx-mod-rtmp 1.1.4), which the helpers rely on:

* ffmpeg's RTMP is the native ``rtmp`` protocol (not librtmp).  ``-rw_timeout``
  (microseconds) *does* apply to it, both to the handshake and to reads after
  ``play``: a client stuck on a silent server or an idle stream fails after that
  long with "Connection timed out" / "Input/output error".  The rtmp
  ``-timeout`` option means *listen* timeout (it implies ``-rtmp_listen 1``)
  and must never be used by a client.  A subprocess timeout is still the hard
  limit.
* When nginx-rtmp refuses a play of a missing stream (``idle_streams off;``) it
  sends ``onStatus`` with code ``NetStream.Play.StreamNotFound``, level
  ``error`` and description ``No such stream``.  ffmpeg 5.1 does NOT print the
  code: it prints only the description, then fails the open with EPERM::

      [rtmp @ 0x...] Server error: No such stream
      rtmp://127.0.0.1:PORT/live/missing: Operation not permitted

  and exits with status 1 within a fraction of a second (see
  :attr:`PlayOutcome.server_error`).  With the default ``idle_streams on`` the
  same play just waits for a publisher.
* nginx-rtmp's ``/stat`` XML looks like
  ``rtmp/server/application[name]/live/stream[name]/client``; each ``<client>``
  has ``id``, ``address``, ``time``, ``flashver``, ``dropped``, ``avsync``,
  ``timestamp`` children plus empty ``<publishing/>`` (publisher only) and
  ``<active/>`` flags.  ffmpeg publishes with flashver
  ``FMLE/3.0 (compatible; Lavf59.27`` (sic, truncated) and plays with
  ``LNX 9,0,124,2``.  The ``<stream>`` also carries ``<meta>``, ``<nclients>``
  and ``<publishing/>`` when a publisher is attached; it disappears when the
  last client leaves.  With ``pull``, the edge's relay session shows on the
  origin as a player with flashver ``LNX.11,1,102,55`` and on the edge as the
  stream's publisher with flashver ``ngx-local-relay`` and address
  ``127.0.0.1:ORIGINPORT/app``; nginx drops the pull when the edge's last
  player leaves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

import pytest

from tests.waiting import wait_until as wait_until  # re-exported: its old home

LOOPBACK = "127.0.0.1"
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

# Debian packages that provide each peer binary.
_DEBIAN_PACKAGES: dict[str, str] = {
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "nginx": "nginx libnginx-mod-rtmp",
    "rtmpdump": "rtmpdump",
    "redis-server": "redis-server",
}


class PeerError(RuntimeError):
    """A real peer (ffmpeg, ffprobe, nginx) failed or did not come up in time."""


# --------------------------------------------------------------------------- binaries


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _missing(what: str, packages: str) -> NoReturn:
    """Skip (locally) or fail (in CI) loudly because an interop peer is missing."""
    if _in_ci():
        pytest.fail(
            f"INTEROP PEER MISSING IN CI: {what}. A skipped interop test is a failure in CI; "
            f"install the Debian package(s) {packages!r} in the CI image "
            f"(apt-get install -y {packages}).",
            pytrace=False,
        )
    pytest.skip(
        f"INTEROP PEER MISSING: {what}. Install the Debian package(s) {packages!r} "
        f"(apt-get install -y {packages}); `make test` installs them when run as root."
    )


def need(binary: str) -> str:
    """Absolute path of executable ``binary``; skip (locally) or fail (CI) when missing."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if found is None:
        _missing(
            f"executable {binary!r} not found on PATH (nor in /usr/sbin, /sbin)",
            _DEBIAN_PACKAGES.get(binary, binary),
        )
    return os.path.abspath(found)


def need_nginx_rtmp() -> tuple[str, str]:
    """``(nginx binary, ngx_rtmp_module.so path)``; same skip/fail rule as :func:`need`."""
    nginx = need("nginx")
    module = NGINX_RTMP_MODULE
    if not module.is_file():
        _missing(f"nginx RTMP module {str(module)!r} not found", "nginx libnginx-mod-rtmp")
    return nginx, str(module)


def need_nginx_stream() -> str:
    """``ngx_stream_module.so``'s path (nginx's TCP/TLS proxy, for RTMPS); skip/fail as need."""
    need_nginx_rtmp()
    if not NGINX_STREAM_MODULE.is_file():
        _missing(
            f"nginx stream module {str(NGINX_STREAM_MODULE)!r} not found", "libnginx-mod-stream"
        )
    return str(NGINX_STREAM_MODULE)


@dataclass(frozen=True)
class TlsFront:
    """One TLS port of :class:`NginxRtmp` (nginx's ``stream`` module) in front of its
    plain RTMP port: ``ssl_certificate`` ``cert`` (the chain, leaf first), ``key``;
    ``directives``: more ``ssl_*`` lines (e.g. ``"ssl_protocols TLSv1.2;"``)."""

    cert: Path
    key: Path
    directives: str = ""
    port: int = field(default_factory=lambda: free_port())


# --------------------------------------------------------------------------- ports / polling


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(
    port: int, timeout: float = 10.0, *, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll a TCP connect to 127.0.0.1:``port`` until it succeeds.

    Raises :class:`TimeoutError` after ``timeout`` seconds, or :class:`PeerError`
    as soon as ``proc`` (the process expected to listen) exits.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise PeerError(
                f"process {proc.args!r} exited with status {proc.returncode} "
                f"before 127.0.0.1:{port} accepted connections"
            )
        if _port_open(port):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on 127.0.0.1:{port} within {timeout:.1f}s"
            )
        time.sleep(0.05)


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` holds a listening IPv4 socket (Linux ``/proc``).

    Distinguishes "nginx is listening" from "something accepts on that port".
    """
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as table:
        next(table, None)  # header
        for line in table:
            cols = line.split()
            # local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, column 9 the inode.
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# --------------------------------------------------------------------------- processes


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """Terminate ``proc`` (SIGTERM), SIGKILL it after ``timeout`` s, always reap it.

    Safe to call more than once and on an already-exited process.  Returns the
    exit status.  For publishers/players, also closes their log file (the text
    stays available through :func:`process_log`).
    """
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
    finally:
        # Reap even if something above was interrupted.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        log = _LOGS.get(proc)
        if log is not None:
            log.close()
    return proc.returncode


class _ProcessLog:
    """stdout+stderr of a background ffmpeg, in an unlinked temp file.

    A file (not a pipe) so that ffmpeg can never block on a full pipe; read with
    ``pread`` so the child's shared file offset is never moved.
    """

    def __init__(self) -> None:
        # Lives as long as the process, closed by close(); no `with` possible.
        self.file: IO[bytes] | None = tempfile.TemporaryFile(prefix="streamgate-ffmpeg-")  # noqa: SIM115
        self.text: str | None = None

    def read(self) -> str:
        if self.file is None:
            return self.text or ""
        fd = self.file.fileno()
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        if self.file is not None:
            self.text = self.read()
            self.file.close()
            self.file = None


_LOGS: weakref.WeakKeyDictionary[subprocess.Popen[bytes], _ProcessLog] = weakref.WeakKeyDictionary()


def _spawn_logged(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    log = _ProcessLog()
    assert log.file is not None
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log.file, stderr=subprocess.STDOUT
        )
    except BaseException:
        log.close()
        raise
    _LOGS[proc] = log
    # Close the log if the test drops the process without stop_process() (the
    # Popen's own ResourceWarning still flags a process that was never reaped).
    weakref.finalize(proc, log.close)
    return proc


def process_log(proc: subprocess.Popen[bytes]) -> str:
    """Everything a process from :func:`start_publisher`/:func:`start_player` printed."""
    log = _LOGS.get(proc)
    return "" if log is None else log.read()


publisher_log = process_log


def start_publisher(
    url: str,
    *,
    size: str = "320x240",
    rate: int = 25,
    gop: int = 25,
    duration: float | None = None,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ffmpeg publishing a live H.264/AAC test signal to ``url`` in real time (``-re``).

    ``extra`` goes right before ``-f flv <url>`` (output options).  Output goes
    to a temp file, see :func:`process_log`.  The caller must
    :func:`stop_process` it (or use :func:`publisher`).
    """
    argv = [
        need("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(gop), "-pix_fmt", "yuv420p",
        "-c:a", "aac",
    ]  # fmt: skip
    if duration is not None:
        argv += ["-t", f"{duration:g}"]
    argv += [*extra, "-f", "flv", url]
    return _spawn_logged(argv)


def start_player(
    url: str, *, duration: float | None = None, rw_timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start ffmpeg playing ``url`` into the null muxer (a passive subscriber).

    Gives up after ``rw_timeout`` s without data.  Stop with :func:`stop_process`.
    """
    argv = [
        need("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rw_timeout", str(int(rw_timeout * 1_000_000)), "-i", url,
    ]  # fmt: skip
    if duration is not None:
        argv += ["-t", f"{duration:g}"]
    argv += ["-f", "null", "-"]
    return _spawn_logged(argv)


def start_rtmpdump(url: str, out: Path, *, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start rtmpdump (librtmp: the RTMP code of OBS's ancestors, Flash-era
    behaviour) recording live ``url`` to the FLV file ``out``.

    It exits by itself when the server ends the stream (UnpublishNotify, Stop)
    or refuses it; ``timeout`` s without data also end it.
    """
    argv = [need("rtmpdump"), "-r", url, "--live", "-m", f"{timeout:g}", "-o", str(out)]
    return _spawn_logged(argv)


@contextlib.contextmanager
def publisher(
    url: str,
    *,
    size: str = "320x240",
    rate: int = 25,
    gop: int = 25,
    duration: float | None = None,
    extra: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_publisher` as a context manager that always stops and reaps it."""
    proc = start_publisher(url, size=size, rate=rate, gop=gop, duration=duration, extra=extra)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def player(
    url: str, *, duration: float | None = None, rw_timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_player` as a context manager that always stops and reaps it."""
    proc = start_player(url, duration=duration, rw_timeout=rw_timeout)
    try:
        yield proc
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- nginx-rtmp


class NginxRtmp:
    """A throw-away nginx-rtmp server on loopback, configured entirely inside ``workdir``.

    ``rtmp_application_block`` is the ``application NAME { ... }`` text, e.g.
    ``"application live { live on; }"``.  Runs with ``master_process off`` (one
    process, nothing to orphan) and ``daemon off``, so the Popen is the server.

    Running as root from a temp dir: ``-e`` moves the startup error log (else
    the compiled-in ``/var/log/nginx/error.log``); nginx-rtmp has its own
    ``access_log`` that defaults to ``/var/log/nginx/access.log``, so it is set
    too; ``user root;`` because with a master process the worker would drop to
    ``nobody`` and nginx chowns the temp dirs to that user, which cannot even
    traverse pytest's 0700 ``/tmp/pytest-of-root``.  Nothing is written
    outside ``workdir``.
    """

    def __init__(
        self,
        workdir: Path,
        rtmp_application_block: str,
        *,
        rtmp_port: int | None = None,
        http_port: int | None = None,
        tls: Sequence[TlsFront] = (),
    ) -> None:
        self.nginx, self.module = need_nginx_rtmp()
        self.stream_module = need_nginx_stream() if tls else None
        self.tls = list(tls)
        self.workdir = Path(workdir).resolve()
        self.application_block = rtmp_application_block
        self._auto_ports = rtmp_port is None and http_port is None
        self.rtmp_port = rtmp_port if rtmp_port is not None else free_port()
        self.http_port = http_port if http_port is not None else free_port()
        self.conf_path = self.workdir / "nginx.conf"
        self.error_log = self.workdir / "error.log"
        self.stderr_path = self.workdir / "nginx.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()

    def config_text(self) -> str:
        w = self.workdir
        modules = f"load_module {self.module};"
        stream = ""
        if self.stream_module is not None:
            modules += f"\nload_module {self.stream_module};"
            servers = "".join(
                f"""
    server {{
        listen {LOOPBACK}:{front.port} ssl;
        ssl_certificate {front.cert};
        ssl_certificate_key {front.key};
        {front.directives}
        proxy_pass {LOOPBACK}:{self.rtmp_port};
    }}"""
                for front in self.tls
            )
            stream = f"""
stream {{{servers}
}}
"""
        return f"""\
{modules}

daemon off;
master_process off;
user root;
pid {w}/nginx.pid;
error_log {w}/error.log info;

events {{
    worker_connections 256;
}}

rtmp {{
    # nginx-rtmp's own access log defaults to /var/log/nginx/access.log.
    access_log {w}/rtmp_access.log;

    server {{
        listen {LOOPBACK}:{self.rtmp_port};
        chunk_size 4096;

        {self.application_block}
    }}
}}

http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/client_body_temp;
    proxy_temp_path {w}/proxy_temp;
    fastcgi_temp_path {w}/fastcgi_temp;
    uwsgi_temp_path {w}/uwsgi_temp;
    scgi_temp_path {w}/scgi_temp;

    server {{
        listen {LOOPBACK}:{self.http_port};
        location /stat {{
            rtmp_stat all;
        }}
    }}
}}
{stream}"""

    def write_config(self) -> None:
        self.conf_path.write_text(self.config_text())

    def logs(self) -> str:
        """nginx's error log plus anything it wrote to stderr (for failure messages)."""
        parts = []
        for path in (self.error_log, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def start(self, timeout: float = 10.0) -> Self:
        """Start nginx and wait until both ports accept; raise :class:`PeerError` otherwise."""
        if self.proc is not None:
            raise PeerError("nginx already started")
        attempts = 3 if self._auto_ports else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return self
            except PeerError:
                logs = self.logs()
                self.stop()
                if attempt + 1 < attempts and "Address already in use" in logs:
                    # Lost a race for an auto-picked port: pick new ones and retry.
                    self.rtmp_port, self.http_port = free_port(), free_port()
                    self.tls = [dataclasses.replace(f, port=free_port()) for f in self.tls]
                    self.write_config()
                    with contextlib.suppress(OSError):
                        self.error_log.rename(self.workdir / f"error.log.{attempt}")
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, timeout: float) -> None:
        argv = [
            self.nginx, "-e", str(self.error_log),
            "-p", f"{self.workdir}/", "-c", str(self.conf_path),
        ]  # fmt: skip
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
            )
        proc = self.proc
        ports = {self.rtmp_port, self.http_port, *(front.port for front in self.tls)}
        deadline = time.monotonic() + timeout
        problem: str | None = None
        # Port accepting is not enough: when one bind() fails nginx keeps the
        # other socket listening while it retries for ~2.5 s, and the failed
        # port may be someone else's.  Wait until nginx itself owns both.
        while problem is None:
            if proc.poll() is not None:
                problem = f"nginx exited with status {proc.returncode}"
            elif "[emerg]" in self._read(self.error_log):
                problem = "nginx logged an [emerg]"
            elif ports <= listening_ports(proc.pid) and all(_port_open(p) for p in ports):
                return
            elif time.monotonic() >= deadline:
                problem = f"nginx did not listen on both ports within {timeout:.1f}s"
            else:
                time.sleep(0.05)
        # Its log is complete once it has exited, as it does after an [emerg].
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        raise PeerError(
            f"nginx-rtmp did not come up on rtmp={self.rtmp_port} http={self.http_port}: "
            f"{problem}\n{self.logs()}"
        )

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Fast-shutdown nginx (SIGTERM), SIGKILL after ``timeout`` s; always reap it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- addresses

    def url(self, app: str, name: str) -> str:
        """``rtmp://127.0.0.1:PORT/app/name``."""
        return f"rtmp://{LOOPBACK}:{self.rtmp_port}/{app}/{name}"

    # ---- /stat

    def stat(self, timeout: float = 5.0) -> ET.Element:
        """The parsed ``/stat`` XML (root element ``<rtmp>``)."""
        url = f"http://{LOOPBACK}:{self.http_port}/stat"
        with self._opener.open(url, timeout=timeout) as resp:
            body: bytes = resp.read()
        return ET.fromstring(body)

    def stream(self, app: str, name: str) -> ET.Element | None:
        """The ``<stream>`` element of ``app``/``name``, or None when nginx has no such stream."""
        root = self.stat()
        for application in root.iter("application"):
            if application.findtext("name") != app:
                continue
            for stream in application.iter("stream"):
                if stream.findtext("name") == name:
                    return stream
        return None

    def clients(self, app: str, name: str) -> list[dict[str, str]]:
        """One dict per ``<client>`` of the stream: child tag -> text.

        Flag elements map to ``""``, so ``"publishing" in client`` tells the
        publisher apart; keys seen: id, address, time, flashver, dropped, avsync,
        timestamp, publishing, active.
        """
        stream = self.stream(app, name)
        if stream is None:
            return []
        return [
            {child.tag: (child.text or "") for child in client}
            for client in stream.findall("client")
        ]

    def nclients(self, app: str, name: str) -> int:
        """Number of clients (publisher included) attached to the stream."""
        return len(self.clients(app, name))

    def publishing(self, app: str, name: str) -> bool:
        """Whether a publisher is attached to the stream."""
        stream = self.stream(app, name)
        return stream is not None and stream.find("publishing") is not None


# --------------------------------------------------------------------------- ffprobe / ffmpeg play


@dataclass
class ProbeStream:
    """One stream as ffprobe saw it, with the times of the packets it read."""

    index: int
    codec_type: str
    codec_name: str
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    pts: list[float | None] = field(default_factory=list)
    dts: list[float | None] = field(default_factory=list)
    keyframes: list[bool] = field(default_factory=list)  # per packet: flagged K


@dataclass
class ProbeResult:
    """What :func:`probe` found: streams (with packet times) and ffprobe's stderr."""

    streams: list[ProbeStream]
    stderr: str = ""

    def of_type(self, codec_type: str) -> list[ProbeStream]:
        return [s for s in self.streams if s.codec_type == codec_type]

    def _one(self, codec_type: str) -> ProbeStream:
        found = self.of_type(codec_type)
        if not found:
            have = [(s.codec_type, s.codec_name) for s in self.streams]
            raise LookupError(f"no {codec_type} stream in probe result; streams: {have}")
        return found[0]

    @property
    def video(self) -> ProbeStream:
        """The first video stream (LookupError if none)."""
        return self._one("video")

    @property
    def audio(self) -> ProbeStream:
        """The first audio stream (LookupError if none)."""
        return self._one("audio")


def _opt_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _opt_float(value: object) -> float | None:
    if value is None or value in ("", "N/A"):
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def probe(url: str, *, timeout: float = 15.0, read_seconds: float = 2.0) -> ProbeResult:
    """ffprobe ``url``: streams plus the packets of the first ``read_seconds`` s.

    ``-rw_timeout`` (= ``timeout``) bounds each network wait; a subprocess
    timeout of ``timeout + 5`` s is the hard limit.  Raises :class:`PeerError`
    with ffprobe's stderr on failure.
    """
    argv = [
        need("ffprobe"), "-hide_banner", "-v", "error",
        "-rw_timeout", str(int(timeout * 1_000_000)),
        "-show_streams", "-show_packets",
        "-read_intervals", f"%+{read_seconds:g}",
        "-of", "json", url,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 5, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
        raise PeerError(
            f"ffprobe {url} timed out after {timeout + 5:.0f}s; stderr:\n{stderr}"
        ) from exc
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise PeerError(f"ffprobe {url} exited with status {done.returncode}; stderr:\n{stderr}")
    try:
        data = json.loads(done.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise PeerError(f"ffprobe {url} printed invalid JSON ({exc}); stderr:\n{stderr}") from exc
    streams: dict[int, ProbeStream] = {}
    for s in data.get("streams", []):
        idx = int(s["index"])
        streams[idx] = ProbeStream(
            index=idx,
            codec_type=str(s.get("codec_type", "")),
            codec_name=str(s.get("codec_name", "")),
            width=_opt_int(s.get("width")),
            height=_opt_int(s.get("height")),
            sample_rate=_opt_int(s.get("sample_rate")),
            channels=_opt_int(s.get("channels")),
        )
    for p in data.get("packets", []):
        stream = streams.get(int(p.get("stream_index", -1)))
        if stream is not None:
            stream.pts.append(_opt_float(p.get("pts_time")))
            stream.dts.append(_opt_float(p.get("dts_time")))
            stream.keyframes.append(str(p.get("flags", "")).startswith("K"))
    if not streams:
        raise PeerError(f"ffprobe {url} found no streams; stderr:\n{stderr}")
    return ProbeResult(streams=[streams[i] for i in sorted(streams)], stderr=stderr)


_SERVER_ERROR = re.compile(r"Server error: (.*)")


@dataclass
class PlayOutcome:
    """How an ``ffmpeg -i <url>`` play attempt ended.

    ``returncode`` is None when it was killed at the hard timeout.  For a play
    refused by nginx-rtmp (``idle_streams off``, missing stream) ffmpeg 5.1
    exits 1 and prints ``Server error: No such stream`` followed by
    ``<url>: Operation not permitted``; the status code
    ``NetStream.Play.StreamNotFound`` itself is not printed.
    """

    returncode: int | None
    stderr: str
    elapsed: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def server_error(self) -> str | None:
        """The description ffmpeg printed after ``Server error:`` (an RTMP error onStatus)."""
        m = _SERVER_ERROR.search(self.stderr)
        return m.group(1).strip() if m else None


def play_status(url: str, timeout: float = 10.0, *, seconds: float = 1.0) -> PlayOutcome:
    """Try to play ``seconds`` s of ``url`` with ``ffmpeg -v verbose`` and report how it went.

    Never raises for a failed play; ``timeout`` is both the ``-rw_timeout`` and
    (plus 2 s) the hard subprocess limit.
    """
    argv = [
        need("ffmpeg"), "-hide_banner", "-nostdin", "-v", "verbose",
        "-rw_timeout", str(int(timeout * 1_000_000)),
        "-i", url, "-t", f"{seconds:g}", "-f", "null", "-",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 2, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
        return PlayOutcome(None, stderr, time.monotonic() - started)
    return PlayOutcome(
        done.returncode, done.stderr.decode("utf-8", "replace"), time.monotonic() - started
    )
