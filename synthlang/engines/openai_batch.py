"""Batch API mode of the openai engine: upload JSONL, create a batch, poll, download the results.

Follows the OpenAI Batch API (https://platform.openai.com/docs/guides/batch): one input line per call
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; output and error files
hold ``{"custom_id", "response": {"status_code", "body"}, "error"}`` lines. The call key is the
``custom_id``.

Resume: the job is recorded in the store (table ``batch_jobs``) under a key hashed from endpoint,
model and the sorted call keys, right after it is created. A restarted run that sends the same calls
finds the job and polls it instead of submitting (and paying for) it again. A job that ended
``failed``, ``expired`` or ``cancelled`` is submitted anew.

Structured output is requested with ``response_format`` json_schema and validated; there is no
re-ask inside a batch (a reply that misses the schema becomes a failed result).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from synthlang.engines.base import Request, Result
from synthlang.errors import EngineUnavailable, GenerationError

if TYPE_CHECKING:
    from synthlang.engines.openai import OpenAIEngine

TERMINAL = ("completed", "failed", "expired", "cancelled")
RESUBMIT = ("failed", "expired", "cancelled")


def job_key(engine: OpenAIEngine, reqs: list[Request]) -> str:
    """sha256 over endpoint, model and the sorted call keys: the same calls find the same job."""
    h = hashlib.sha256(json.dumps([engine.endpoint, engine.model_id, sorted(r.key for r in reqs)]).encode())
    return h.hexdigest()


def batch_lines(engine: OpenAIEngine, reqs: list[Request]) -> bytes:
    """The JSONL input file: one ``/v1/chat/completions`` body per request, ``custom_id`` = call key."""
    out = []
    for r in reqs:
        body = engine._body(r, engine._response_format(r))
        body.update(body.pop("extra_body", {}))
        out.append(json.dumps({"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": body}))
    return ("\n".join(out) + "\n").encode("utf-8")


def run_batch(engine: OpenAIEngine, reqs: list[Request]) -> Iterator[Result]:
    """Submit (or resume) a batch for ``reqs``, wait for it, and yield one result per request.

    Raises:
        EngineUnavailable: the server has no Batch API or refuses the key.
        GenerationError: the batch ended failed/expired/cancelled.
    """
    assert engine._loop is not None
    loop, client, oa = engine._loop, engine._client, engine._openai

    def run(coro: Any) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        except (oa.AuthenticationError, oa.PermissionDeniedError, oa.NotFoundError) as exc:
            raise EngineUnavailable(f"{engine.endpoint}: the Batch API is not available: {exc}") from None
        except oa.APIError as exc:
            raise GenerationError(f"{engine.endpoint}: Batch API call failed: {exc}", retryable=True) from None

    store = engine._store
    key = job_key(engine, reqs)
    known = store.get_batch_job(key) if store is not None else None
    t0 = time.perf_counter()
    if known and known["status"] not in RESUBMIT:
        batch_id, input_file_id = known["batch_id"], known["input_file_id"]
        resumed = True
    else:
        f = run(client.files.create(file=("synth-batch.jsonl", batch_lines(engine, reqs)), purpose="batch"))
        b = run(client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                      metadata={"synthlang_job": key[:16]}))
        batch_id, input_file_id, resumed = b.id, f.id, False
        if store is not None:
            store.put_batch_job(key, batch_id, input_file_id, engine.endpoint, b.status, len(reqs))
    while True:
        b = run(client.batches.retrieve(batch_id))
        if store is not None:
            store.put_batch_job(key, batch_id, input_file_id, engine.endpoint, b.status, len(reqs))
        if b.status in TERMINAL:
            break
        time.sleep(engine.batch_poll_s)
    if b.status != "completed":
        raise GenerationError(f"batch {batch_id} ended {b.status}; the next run submits it again", retryable=True)
    lines: list[dict[str, Any]] = []
    for fid in (b.output_file_id, b.error_file_id):
        if fid:
            content = run(client.files.content(fid))
            lines += [json.loads(x) for x in content.text.splitlines() if x.strip()]
    by_key = {r.key: r for r in reqs}
    seen: set[str] = set()
    meta = {"endpoint": engine.endpoint, "batch_id": batch_id, "resumed": resumed}
    for line in lines:
        k = line.get("custom_id")
        if k not in by_key or k in seen:
            continue
        seen.add(k)
        yield _line_result(engine, by_key[k], line, dict(meta), time.perf_counter() - t0)
    for k in by_key:
        if k not in seen:
            yield Result(k, finish_reason="error", error=f"batch {batch_id} returned no line for this call", meta=dict(meta))


def _line_result(engine: OpenAIEngine, req: Request, line: dict[str, Any], meta: dict[str, Any], latency: float) -> Result:
    from synthlang.engines.openai import _json_problems

    resp = line.get("response") or {}
    err = line.get("error")
    if err or int(resp.get("status_code") or 0) != 200:
        msg = (err or {}).get("message") if isinstance(err, dict) else err
        body = resp.get("body") or {}
        msg = msg or (body.get("error") or {}).get("message") or f"HTTP {resp.get('status_code')}"
        return Result(req.key, finish_reason="error", error=f"batch line failed: {msg}", latency_s=latency, meta=meta)
    body = resp["body"]
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cost = engine._cost(pt, ct)
    if cost is not None:
        meta["cost_usd"] = cost
    text = (choice.get("message") or {}).get("content") or ""
    lps = None
    if req.logprobs is not None and choice.get("logprobs"):
        lps = [float(c["logprob"]) for c in choice["logprobs"].get("content") or []]
    res = Result(req.key, text=text, finish_reason=choice.get("finish_reason") or "stop", prompt_tokens=pt,
                 completion_tokens=ct, latency_s=latency, logprobs=lps, meta=meta)
    if req.json_schema is not None and res.finish_reason == "stop":
        problems = _json_problems(text, req.json_schema)
        if problems:
            res.error, res.finish_reason = f"reply does not follow the JSON schema: {problems[0]}", "error"
    return res
