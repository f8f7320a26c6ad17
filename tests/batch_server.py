"""A small OpenAI Batch API server for tests: real HTTP on loopback, the OpenAI batch file format.

Implements ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``. Each input line's body is sent to an upstream
OpenAI-compatible server (``upstream``: e.g. the session's ``llama_cpp.server``), so the answers
are a real model's. A batch moves validating → in_progress → completed, processing its lines on
the first poll after ``hold`` is cleared (tests set ``hold`` to simulate a long job).

``POST /v1/chat/completions`` answers too, after the injected ``faults`` (429 with
``Retry-After: 1``, any 5xx, or 0 = a dropped connection), for retry tests.

Counters (``files_created``, ``batches_created``, ``polls``) let tests prove a restarted run
resumed the recorded job instead of submitting it again.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class BatchServer:
    """Run with ``start()``; ``base_url`` is ``http://127.0.0.1:PORT/v1``; ``stop()`` shuts it down."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.files_created = 0
        self.batches_created = 0
        self.polls = 0
        self.faults: list[int] = []     # status codes for the next /v1/chat/completions calls (429 adds Retry-After: 1)
        self.chat_calls: list[tuple[float, int]] = []   # (time, status) of each chat call, for tests
        self.hold = threading.Event()   # set: batches stay in_progress
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> BatchServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------ behaviour
    def _file_obj(self, fid: str, name: str, purpose: str) -> dict[str, Any]:
        return {"id": fid, "object": "file", "bytes": len(self.files[fid]), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.upstream is None:
            text = "echo: " + body["messages"][-1]["content"]
            return 200, {"id": "chatcmpl-" + uuid.uuid4().hex[:8], "object": "chat.completion", "created": int(time.time()),
                         "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                               "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 0}}
        body = {k: v for k, v in body.items() if k != "response_format"}
        req = urllib.request.Request(self.upstream + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": {"message": exc.read().decode(errors="replace")[:300]}}

    def _process(self, b: dict[str, Any]) -> None:
        out, err = [], []
        for line in self.files[b["input_file_id"]].decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            status, body = self._answer(item["body"])
            rec = {"id": "batch_req_" + uuid.uuid4().hex[:8], "custom_id": item["custom_id"],
                   "response": {"status_code": status, "request_id": uuid.uuid4().hex[:8], "body": body}, "error": None}
            (out if status == 200 else err).append(json.dumps(rec))
        for kind, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                fid = "file-" + uuid.uuid4().hex[:12]
                self.files[fid] = ("\n".join(lines) + "\n").encode()
                b[kind] = fid
        b["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}
        b["status"], b["completed_at"] = "completed", int(time.time())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, obj: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/v1/files":
                    ctype = self.headers["Content-Type"]
                    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self._body())
                    fields: dict[str, Any] = {}
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        fields[name] = (part.get_filename(), part.get_payload(decode=True))
                    fid = "file-" + uuid.uuid4().hex[:12]
                    with srv.lock:
                        srv.files[fid] = fields["file"][1]
                        srv.files_created += 1
                    return self._send(200, srv._file_obj(fid, fields["file"][0] or "input.jsonl",
                                                         fields.get("purpose", (None, b"batch"))[1].decode()))
                if self.path == "/v1/chat/completions":
                    body = json.loads(self._body())
                    with srv.lock:
                        code = srv.faults.pop(0) if srv.faults else 200
                        srv.chat_calls.append((time.monotonic(), code))
                    if code == 429:
                        data = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode()
                        self.send_response(429)
                        self.send_header("Retry-After", "1")
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return None
                    if code == 0:   # drop the connection without an answer
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return None
                    if code != 200:
                        return self._send(code, {"error": {"message": f"injected {code}"}})
                    status, answer = srv._answer(body)
                    return self._send(status, answer)
                if self.path == "/v1/batches":
                    req = json.loads(self._body())
                    if req.get("input_file_id") not in srv.files:
                        return self._send(400, {"error": {"message": "unknown input_file_id"}})
                    bid = "batch_" + uuid.uuid4().hex[:12]
                    b = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "input_file_id": req["input_file_id"],
                         "completion_window": req.get("completion_window", "24h"), "status": "validating",
                         "created_at": int(time.time()), "output_file_id": None, "error_file_id": None,
                         "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": req.get("metadata")}
                    with srv.lock:
                        srv.batches[bid] = b
                        srv.batches_created += 1
                    return self._send(200, b)
                self._send(404, {"error": {"message": f"no route POST {self.path}"}})

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["v1", "batches"] and parts[2] in srv.batches:
                    with srv.lock:
                        srv.polls += 1
                        b = srv.batches[parts[2]]
                        if b["status"] == "validating":
                            b["status"] = "in_progress"
                        elif b["status"] == "in_progress" and not srv.hold.is_set():
                            srv._process(b)
                        return self._send(200, b)
                if len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content" and parts[2] in srv.files:
                    return self._send(200, None, srv.files[parts[2]])
                self._send(404, {"error": {"message": f"no route GET {self.path}"}})

        return H
