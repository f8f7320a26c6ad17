"""A tiny scripted OpenAI-compatible HTTP server for engine tests of retry and redaction paths.

Each POST to ``/v1/chat/completions`` is answered by ``handler(n, headers, body) -> (status, headers, body)``
(``n`` is the 1-based POST number). It answers what a real server answers in the failure modes
under test (a 500 that echoes the request's headers, a storm of 429s with ``Retry-After``), and
a well-formed chat completion otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]


def completion(text: str = "ok", finish: str = "stop") -> Reply:
    """A 200 chat completion with usage."""
    body = {"id": "c", "object": "chat.completion", "created": int(time.time()), "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class StubServer:
    """Start with :meth:`start`; ``base_url`` for clients; ``posts`` counts POSTs; :meth:`stop` ends it."""

    def __init__(self, handler: Callable[[int, dict[str, str], dict[str, Any]], Reply]) -> None:
        self.handler = handler
        self.posts = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> StubServer:
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with stub.lock:
                    stub.posts += 1
                    k = stub.posts
                status, headers, out = stub.handler(k, dict(self.headers), body)
                self.send_response(status)
                for h, v in headers.items():
                    self.send_header(h, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
