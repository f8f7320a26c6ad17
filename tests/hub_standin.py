"""A STAND-IN for the Hugging Face Hub on loopback, implementing only the endpoints ``synth push`` uses.

It is not the Hub: it answers ``huggingface_hub``'s ``create_repo`` (``POST /api/repos/create``) and the
legacy single-commit path of ``upload_folder`` (``POST .../preupload/{rev}``, every file "regular", and
``POST .../commit/{rev}`` with base64 file contents in NDJSON), and keeps the committed files in a folder.
Clients reach it through ``HF_ENDPOINT``; ``HF_HUB_DISABLE_XET=1`` keeps ``upload_folder`` on the path it
implements (the real Hub also takes Xet uploads, which this stand-in does not). ``POST /api/validate-yaml``
parses the card's front matter with PyYAML. Anything else is answered 404 and recorded in ``unknown``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class HubStandIn:
    """``start()``; ``endpoint`` is ``http://127.0.0.1:PORT``; files land in ``root/ORG/NAME/``; ``stop()``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.repos: dict[str, dict] = {}
        self.auth: list[str] = []
        self.unknown: list[str] = []
        self.validated: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _reply(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_POST(self):  # noqa: N802 - http.server's naming
                outer.auth.append(self.headers.get("Authorization") or "")
                if self.path == "/api/validate-yaml":   # the card's front matter must be YAML holding a mapping
                    import yaml

                    text = json.loads(self._body()).get("content", "")
                    parts = text.split("---", 2)
                    try:
                        meta = yaml.safe_load(parts[1]) if text.startswith("---") and len(parts) == 3 else None
                    except yaml.YAMLError as exc:
                        return self._reply(400, {"errors": [{"message": str(exc)}]})
                    if not isinstance(meta, dict):
                        return self._reply(400, {"errors": [{"message": "no YAML metadata block"}]})
                    outer.validated.append(meta)
                    return self._reply(200, {"errors": [], "warnings": []})
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                body = self._body()
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}"
                    outer.repos.setdefault(repo, {"type": req.get("type"), "private": req.get("visibility") == "private" or bool(req.get("private")), "commits": []})
                    return self._reply(200, {"url": f"{outer.endpoint}/datasets/{repo}"})
                m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)(\?.*)?", self.path)
                if not m or m.group(1) not in outer.repos:
                    outer.unknown.append(f"POST {self.path}")
                    return self._reply(404, {"error": f"stand-in: no route POST {self.path}"})
                repo, kind = m.group(1), m.group(2)
                if kind == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
                written = []
                for line in body.decode().splitlines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item["key"] == "file":
                        v = item["value"]
                        dest = outer.root / repo / v["path"]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(base64.b64decode(v["content"]))
                        written.append(v["path"])
                oid = hashlib.sha1(body).hexdigest()
                outer.repos[repo]["commits"].append(written)
                return self._reply(200, {"commitUrl": f"{outer.endpoint}/datasets/{repo}/commit/{oid}", "commitOid": oid,
                                         "success": True})

            def do_GET(self):  # noqa: N802
                outer.unknown.append(f"GET {self.path}")
                return self._reply(404, {"error": f"stand-in: no route GET {self.path}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> HubStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
