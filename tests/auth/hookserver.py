"""A small real HTTP server playing an auth hook, for tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HookServer:
    """``answer(body) -> (status, text)`` decides; every request body is recorded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.text = ""
        self.delay = 0.0
        self.chunked = False
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hook.requests.append(json.loads(self.rfile.read(length)))
                if hook.delay:  # a slow hook, as tests ask for: the delay is under test
                    time.sleep(hook.delay)
                body = hook.text.encode()
                self.send_response(hook.status)
                if hook.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if body:
                        self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/on_play"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
