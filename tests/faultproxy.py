"""A fault-injecting HTTP proxy for tests: sits on loopback in front of a real OpenAI-compatible server.

Each POST is, at set rates (seeded, so a run is reproducible), answered by the proxy itself with a
fault instead of being forwarded:

- ``429`` with a ``Retry-After`` header,
- ``500`` or ``503`` with a JSON error body,
- a hang past the client's timeout (then the connection is closed),
- a dropped connection (closed without a byte of response),
- a ``200`` with an empty body, or with a malformed (truncated) JSON body.

Everything else (and every GET) is forwarded unchanged. :attr:`FaultProxy.counts` says what
happened; :attr:`FaultProxy.auth_seen` records the Authorization headers that went through.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("429", "500", "503", "hang", "drop", "empty", "malformed")


class FaultProxy:
    """Start with :meth:`start`, stop with :meth:`stop`; ``base_url`` is what clients use.

    Args:
        upstream: the real server's base URL, e.g. ``http://127.0.0.1:PORT/v1``.
        rates: fault → probability per POST (they are tried in order; the sum must stay below 1).
        schedule: POST number (1-based) → a fault forced on that request.
        hang_s: how long a hang lasts, in seconds (make it longer than the client's timeout).
        retry_after: the ``Retry-After`` value sent with 429s, in seconds.
        seed: seeds the fault draws.
    """

    def __init__(self, upstream: str, rates: dict[str, float] | None = None, schedule: dict[int, str] | None = None,
                 hang_s: float = 6.0, retry_after: str = "0.2", seed: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.rates = dict(rates or {})
        self.schedule = dict(schedule or {})
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.auth_seen: set[str] = set()
        self.posts = 0
        self._server: ThreadingHTTPServer | None = None
        self._upstream_conns: set[http.client.HTTPConnection] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.upstream.path}"

    def _pick(self) -> str | None:
        with self.lock:
            self.posts += 1
            forced = self.schedule.get(self.posts)
            if forced:
                return forced
            r = self.rng.random()
            acc = 0.0
            for fault, p in self.rates.items():
                acc += p
                if r < acc:
                    return fault
            return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _error(self, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
                self._send(code, json.dumps({"error": {"message": msg, "type": "injected", "code": code}}).encode(),
                           headers)

            def _forward(self, method: str, body: bytes) -> None:
                up = proxy.upstream
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=600)
                with proxy.lock:
                    proxy._upstream_conns.add(conn)
                try:
                    hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(method, self.path, body=body or None, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self._drop()     # upstream gone (the proxy is stopping): drop the client too
                finally:
                    with proxy.lock:
                        proxy._upstream_conns.discard(conn)
                    conn.close()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._forward("GET", b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                auth = self.headers.get("Authorization")
                if auth:
                    with proxy.lock:
                        proxy.auth_seen.add(auth)
                fault = proxy._pick()
                with proxy.lock:
                    proxy.counts[fault or "ok"] += 1
                if fault is None:
                    self._forward("POST", body)
                elif fault == "429":
                    self._error(429, "rate limited (injected)", {"Retry-After": proxy.retry_after})
                elif fault in ("500", "503"):
                    self._error(int(fault), f"server error {fault} (injected)")
                elif fault == "hang":
                    time.sleep(proxy.hang_s)
                    self._drop()
                elif fault == "drop":
                    self._drop()
                elif fault == "empty":
                    self._send(200, b"")
                elif fault == "malformed":
                    self._send(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess')
                else:
                    raise AssertionError(fault)

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close forwarded requests still waiting on the upstream server."""
        with self.lock:
            conns = list(self._upstream_conns)
        for c in conns:
            try:
                if c.sock is not None:
                    c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
