"""The OpenAI-compatible engine: ``openai.AsyncOpenAI`` against any ``base_url``.

One asyncio loop runs in a background thread for the engine's lifetime; :meth:`OpenAIEngine.generate`
is synchronous and yields each :class:`Result` as its call completes (handed over through a queue),
so the runner stores it at once.

Per call: our own retries (the client's ``max_retries`` is 0 so they don't stack) with full-jitter
exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter", 2015) on 5xx, timeouts
and dropped connections, up to ``max_retries``; a per-request timeout. A 429 (rate limited) is not
counted against ``max_retries``: it is retried, honouring ``Retry-After`` (else the same backoff),
until ``rate_limit_deadline_s`` (default 600 s) after the call's first attempt, and only then does
the row fail (a rate limit is the provider asking us to wait, not a fault of the request). Concurrency adapts (see :mod:`synthlang.engines.adaptive`) up to the user's ``concurrency``.
Optional RPM/TPM limits (token buckets). Usage tokens are recorded for every call and priced with an
optional price table. Structured output uses ``response_format={"type": "json_schema"}`` and falls
back to JSON mode (``json_object``) plus validation and a bounded re-ask when the server refuses it.

Batch mode (``batch=true``) sends a step's calls through ``/v1/batches`` instead
(:mod:`synthlang.engines.openai_batch`).

The API key is read from the environment variable the recipe names (``api_key_env``, default
``OPENAI_API_KEY``) and never stored: not in DuckDB, not in ``Result.meta``. Every error text this
engine returns or raises is passed through :func:`redact` first, so a server that echoes the
``Authorization`` header in an error body cannot put the key into ``calls.error`` or onto a terminal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from synthlang.engines.adaptive import AdaptiveLimit
from synthlang.engines.base import Request, Result
from synthlang.engines.jsonschema import schema_errors
from synthlang.errors import ConfigError, EngineUnavailable

_DONE = object()


class _Buckets:
    """Requests-per-minute and tokens-per-minute token buckets (``None`` = unlimited)."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.req = float(rpm or 0)
        self.tok = float(tpm or 0)
        self.t = time.monotonic()

    async def take(self, tokens: int) -> None:
        while True:
            now = time.monotonic()
            dt, self.t = now - self.t, now
            if self.rpm:
                self.req = min(float(self.rpm), self.req + dt * self.rpm / 60.0)
            if self.tpm:
                self.tok = min(float(self.tpm), self.tok + dt * self.tpm / 60.0)
            need_r = 1.0 - self.req if self.rpm else 0.0
            need_t = min(float(tokens), float(self.tpm)) - self.tok if self.tpm else 0.0
            if need_r <= 0 and need_t <= 0:
                if self.rpm:
                    self.req -= 1.0
                if self.tpm:
                    self.tok -= tokens
                return
            wait = max(need_r * 60.0 / self.rpm if self.rpm else 0.0, need_t * 60.0 / self.tpm if self.tpm else 0.0)
            await asyncio.sleep(min(max(wait, 0.01), 5.0))


class OpenAIEngine:
    """Chat completions against an OpenAI-compatible server.

    Args:
        model_id: the model name the server knows (``gpt-4o-mini``, a vLLM served name, an alias).
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (default: the OpenAI API).
        api_key_env: name of the environment variable holding the key (default ``OPENAI_API_KEY``);
            a local server without auth may leave it unset (a dummy key is sent).
        concurrency: most requests in flight; the adaptive limit stays at or under it.
        adaptive: adapt concurrency to measured tokens/s (429 cuts apply either way).
        timeout: per-request timeout, in seconds.
        max_retries: retries per call on 429, 5xx, timeouts and dropped connections.
        rpm, tpm: optional limits, in requests and tokens per minute.
        price_input, price_output: USD per million prompt / completion tokens; cost goes to ``meta``.
        structured: ``auto`` (json_schema, falling back to JSON mode on refusal), ``json_schema`` or
            ``json_object``.
        reask: how many times a reply that is not valid JSON for the schema is asked again.
        batch: send calls through ``/v1/batches`` (see :mod:`synthlang.engines.openai_batch`).
        batch_poll_s: seconds between batch status polls.
        rate_limit_deadline_s: how long, in seconds from a call's first attempt, 429 responses are
            retried before the call fails (default 600).
        context: the model's context window, in tokens; ``synth plan`` flags rows whose prompt plus
            ``max_tokens`` exceeds it, before any call (see :mod:`synthlang.plan.context`).

    Raises:
        EngineUnavailable: the ``openai`` package is missing, or the server refuses the key or model.
        ConfigError: a bad option value.
    """

    kind = "openai"

    #: ``generate`` pulls requests one at a time as slots free up, off its event loop (unless it was handed a
    #: list), so the runner may hand it a request stream that blocks while upstream steps are still making rows
    streams_requests = True

    def __init__(self, model_id: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, adaptive: bool = True, timeout: float = 120.0, max_retries: int = 5,
                 rpm: float | None = None, tpm: float | None = None, price_input: float | None = None,
                 price_output: float | None = None, structured: str = "auto", reask: int = 2,
                 batch: bool = False, batch_poll_s: float = 10.0, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 30.0, rate_limit_deadline_s: float = 600.0,
                 context: int | None = None) -> None:
        if not model_id:
            raise ConfigError("openai(...) needs a model id, e.g. openai(\"gpt-4o-mini\")")
        if structured not in ("auto", "json_schema", "json_object"):
            raise ConfigError(f"openai: structured must be auto, json_schema or json_object, not {structured!r}")
        if int(concurrency) < 1:
            raise ConfigError(f"openai: concurrency must be at least 1, not {concurrency}")
        self.model_id = model_id
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.price_input, self.price_output = price_input, price_output
        self.structured = structured
        self.reask = int(reask)
        self.batch = bool(batch)
        self.batch_poll_s = float(batch_poll_s)
        self.backoff_base_s, self.backoff_max_s = float(backoff_base_s), float(backoff_max_s)
        if float(rate_limit_deadline_s) < 0:
            raise ConfigError(f"openai: rate_limit_deadline_s must be 0 or more, not {rate_limit_deadline_s}")
        self.rate_limit_deadline_s = float(rate_limit_deadline_s)
        self.context = context
        self._secrets: tuple[str, ...] = ()
        self.limiter = AdaptiveLimit(cap=self.concurrency, adaptive=bool(adaptive))
        self._buckets = _Buckets(rpm, tpm) if (rpm or tpm) else None
        self._schema_ok = structured != "json_object"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._openai: Any = None
        self._store: Any = None
        self._fatal: BaseException | None = None

    # ------------------------------------------------------------- lifecycle
    def attach_store(self, store: Any) -> None:
        """Give batch mode a place to keep job ids (any object with ``get_batch_job``/``put_batch_job``)."""
        self._store = store

    def load(self) -> None:
        """Create the client and start the event-loop thread (no network traffic yet)."""
        if self._client is not None:
            return
        try:
            import openai
        except ImportError as exc:
            raise EngineUnavailable(f"the openai engine needs the 'openai' package ({exc}): pip install openai") from None
        self._openai = openai
        key = os.environ.get(self.api_key_env)
        if not key:
            if self.base_url is None:
                raise ConfigError(f"openai engine: environment variable {self.api_key_env} is not set "
                                  f"(set it, or name another with api_key_env=\"...\")")
            key = "sk-no-key"   # local servers (vLLM, llama_cpp.server) accept any key
        self._secrets = (key,) if len(key) >= 8 else ()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="synth-openai", daemon=True)
        self._thread.start()

        async def make() -> Any:
            return openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)

        self._client = asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread."""
        if self._loop is None:
            return
        if self._client is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop, self._thread, self._client = None, None, None

    @property
    def endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    # -------------------------------------------------------------- generate
    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Send every request (at most ``limit`` in flight); yield each result as it completes.

        Raises:
            EngineUnavailable: the server refused the key or does not know the model.
        """
        # `requests` is read lazily, one request each time a slot is free: the runner's admission
        # (interrupt flag, budget) decides per request, so Ctrl-C stops new sends at once. A list is read on
        # the event loop; any other iterable in a worker thread, since it may block (a streaming scheduler's
        # request stream waits for upstream rows) and the calls in flight must keep going meanwhile.
        blocking = not isinstance(requests, (list, tuple))
        it = iter(requests)
        first = next(it, None)
        if first is None:
            return
        self.load()
        assert self._loop is not None
        if self.batch:
            from synthlang.engines.openai_batch import run_batch

            try:
                for res in run_batch(self, [first, *it]):
                    yield self._redact_result(res)
            except Exception as exc:   # noqa: BLE001 - re-raised with the key taken out of its text
                raise self._redact_exc(exc) from None
            return
        q: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        fut = asyncio.run_coroutine_threadsafe(self._run_all(itertools.chain([first], it), q, stop, blocking),
                                               self._loop)
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise self._redact_exc(item) from None
                yield self._redact_result(item)
            fut.result()
        finally:
            if not fut.done():
                stop.set()
                fut.cancel()

    async def _run_all(self, reqs: Iterator[Request], q: queue.Queue[Any], stop: threading.Event,
                       blocking: bool = True) -> None:
        cond = asyncio.Condition()
        in_flight = 0
        self.limiter.begin()

        async def one(req: Request) -> None:
            nonlocal in_flight
            try:
                res = await self._call(req)
                q.put(res)
            except BaseException as exc:   # noqa: BLE001 - handed to the consumer thread
                q.put(exc if isinstance(exc, Exception) else EngineUnavailable(f"openai engine stopped: {exc!r}"))
                raise
            finally:
                async with cond:
                    in_flight -= 1
                    cond.notify_all()

        def room() -> bool:   # reads in_flight late on purpose: the limit and the count both move
            return in_flight < self.limiter.limit or stop.is_set()

        tasks: set[asyncio.Task[None]] = set()   # the calls in flight (a finished one leaves the set)
        loop = asyncio.get_running_loop()
        try:
            while True:
                async with cond:
                    await cond.wait_for(room)
                    if stop.is_set() or self._fatal is not None:
                        break
                # pulled only once a slot is free; a stream that may block is pulled off the event loop
                req = await loop.run_in_executor(None, next, reqs, None) if blocking else next(reqs, None)
                if req is None:
                    break
                async with cond:
                    in_flight += 1
                task = asyncio.ensure_future(one(req))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for t in list(tasks):
                t.cancel()
            q.put(_DONE)

    # ------------------------------------------------------------------ call
    def _body(self, req: Request, response_format: dict[str, Any] | None,
              messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
        sp = req.sampling
        body: dict[str, Any] = {
            "model": self.model_id, "messages": messages or [dict(m) for m in req.messages],
            "temperature": sp.temperature, "top_p": sp.top_p, "max_tokens": sp.max_tokens,
            "seed": req.seed % (2**31),
        }
        if sp.stop:
            body["stop"] = list(sp.stop)
        if sp.presence_penalty is not None:
            body["presence_penalty"] = sp.presence_penalty
        if sp.frequency_penalty is not None:
            body["frequency_penalty"] = sp.frequency_penalty
        extra = {k: v for k, v in (("top_k", sp.top_k), ("min_p", sp.min_p),
                                   ("repetition_penalty", sp.repetition_penalty)) if v is not None}
        if extra:   # non-OpenAI sampling knobs, understood by vLLM and llama_cpp.server
            body["extra_body"] = extra
        if req.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = int(req.logprobs)
        if response_format is not None:
            body["response_format"] = response_format
        return body

    def _response_format(self, req: Request) -> dict[str, Any] | None:
        if req.json_schema is None:
            return None
        if self._schema_ok:
            return {"type": "json_schema", "json_schema": {"name": "output", "schema": req.json_schema, "strict": False}}
        return {"type": "json_object"}

    async def _call(self, req: Request) -> Result:
        """One logical call: structured-output fallback and re-asks around :meth:`_send`."""
        t0 = time.perf_counter()
        messages = [dict(m) for m in req.messages]
        if req.json_schema is not None and not self._schema_ok:
            messages = _with_schema_hint(messages, req.json_schema)
        pt = ct = attempts = 0
        res: Result | None = None
        for ask in range(self.reask + 1):
            fmt = self._response_format(req)
            res = await self._send(req, self._body(req, fmt, messages))
            if res.error and req.json_schema is not None and fmt and fmt["type"] == "json_schema" \
                    and res.meta.get("status") in ("format", 400, 422) and self.structured == "auto":
                self._schema_ok = False   # the server refuses json_schema: JSON mode from now on
                attempts += int(res.meta.get("attempts", 1))
                messages = _with_schema_hint(messages, req.json_schema)
                res = await self._send(req, self._body(req, {"type": "json_object"}, messages))
            pt += res.prompt_tokens
            ct += res.completion_tokens
            attempts += int(res.meta.get("attempts", 1))
            if res.error or req.json_schema is None or res.finish_reason == "length":
                break
            problems = _json_problems(res.text, req.json_schema)
            if not problems:
                break
            res.meta["schema_errors"] = problems
            if ask == self.reask:
                res.error = f"reply does not follow the JSON schema after {self.reask} re-asks: {problems[0]}"
                res.finish_reason = "error"
                break
            messages = [*messages, {"role": "assistant", "content": res.text},
                        {"role": "user", "content": "That reply is not valid JSON for the schema "
                         f"({'; '.join(problems[:3])}). Reply with only the corrected JSON object."}]
        assert res is not None
        res.prompt_tokens, res.completion_tokens = pt, ct
        res.latency_s = time.perf_counter() - t0
        res.meta.update(endpoint=self.endpoint, concurrency=self.limiter.limit, attempts=attempts)
        res.meta.pop("status", None)
        cost = self._cost(pt, ct)
        if cost is not None:
            res.meta["cost_usd"] = cost
        return res

    def _cost(self, pt: int, ct: int) -> float | None:
        if self.price_input is None and self.price_output is None:
            return None
        return round(pt * (self.price_input or 0.0) / 1e6 + ct * (self.price_output or 0.0) / 1e6, 8)

    async def _send(self, req: Request, body: dict[str, Any]) -> Result:
        """One HTTP request with retries; never raises for a per-call failure.

        5xx, timeouts, dropped connections and malformed replies are retried ``max_retries`` times;
        429s are retried until ``rate_limit_deadline_s`` after the first attempt, honouring ``Retry-After``.
        """
        oa = self._openai
        last = ""
        status: int | str | None = None
        t_first = time.monotonic()
        attempt = faults = 0
        while True:
            attempt += 1
            if self._buckets is not None:
                await self._buckets.take(_estimate_tokens(body))
            wait: float | None = None
            limited = False
            epoch = self.limiter.on_sent()
            try:
                # The client's documented generic POST (openai-python README, "Undocumented endpoints") with the
                # body already in wire form: the same request as chat.completions.create, without its per-call
                # transform of the params and pydantic build of the reply (~25 % of the client's CPU per call at
                # 64 in flight, issue 9). Errors are raised as by create(): APIStatusError subclasses, etc.
                resp = await self._client.post("/chat/completions", cast_to=object, body=_wire(body),
                                               options={"timeout": self.timeout})
            except oa.RateLimitError as exc:
                self.limiter.on_rate_limited()
                last, status = f"429 rate limited: {_msg(exc)}", 429
                wait, limited = _retry_after(exc), True
            except (oa.AuthenticationError, oa.PermissionDeniedError) as exc:
                self._fatal = exc
                raise EngineUnavailable(f"{self.endpoint} refused the API key from ${self.api_key_env}: {_msg(exc)}") from None
            except oa.NotFoundError as exc:
                self._fatal = exc
                raise EngineUnavailable(f"{self.endpoint} does not serve model '{self.model_id}': {_msg(exc)}") from None
            except oa.APIStatusError as exc:
                status = exc.status_code
                last = f"HTTP {exc.status_code}: {_msg(exc)}"
                if "response_format" in body and "response_format" in last:
                    status = "format"   # the server refuses this response_format (llama_cpp.server says 500)
                    break
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    break   # a client error does not get better by asking again
                wait = _retry_after(exc)
            except oa.APITimeoutError:
                last, status = f"timed out after {self.timeout:g} s", None
            except oa.APIConnectionError as exc:
                last, status = f"connection failed: {_msg(exc)}", None
            except (oa.APIResponseValidationError, json.JSONDecodeError) as exc:
                # an empty or malformed 200 body (a proxy or server fault): retried like a 5xx
                last, status = f"malformed response from the server: {_msg(exc)}", None
            else:
                try:
                    return self._result(req, resp, attempt, epoch)
                except (AttributeError, IndexError, KeyError, TypeError) as exc:
                    last, status = f"malformed response from the server: {type(exc).__name__}: {exc}", None
            if wait is None:
                wait = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** min(faults, 16)))
            wait = min(wait, 300.0)
            if limited:
                left = self.rate_limit_deadline_s - (time.monotonic() - t_first)
                if wait > left:
                    last += f" (still rate limited {self.rate_limit_deadline_s:g} s after the first attempt: " \
                            "rate_limit_deadline_s)"
                    break
            else:
                faults += 1
                if faults > self.max_retries:
                    break
            await asyncio.sleep(wait)
        return Result(req.key, finish_reason="error", error=last or "request failed",
                      meta={"attempts": attempt, "status": status})

    # -------------------------------------------------------------- secrets
    def _redact(self, text: str | None) -> str | None:
        return redact(text, self._secrets)

    def _redact_result(self, res: Result) -> Result:
        if res.error:
            res.error = self._redact(res.error)
        return res

    def _redact_exc(self, exc: BaseException) -> BaseException:
        text = str(exc)
        clean = self._redact(text)
        if clean == text:
            return exc
        try:
            return type(exc)(clean)
        except Exception:   # noqa: BLE001 - an exception type that takes other arguments
            return EngineUnavailable(clean or "")

    def _result(self, req: Request, resp: Any, attempts: int, epoch: int | None = None) -> Result:
        """A :class:`Result` from a chat completion body (the parsed JSON object).

        Raises:
            AttributeError, IndexError, KeyError, TypeError: a body that is not a chat completion
                (retried by :meth:`_send` as a malformed response).
        """
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        pt = int(usage.get("prompt_tokens") or 0)
        ct = int(usage.get("completion_tokens") or 0)
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        self.limiter.on_success(ct, epoch=epoch)
        lps = None
        if req.logprobs is not None and choice.get("logprobs") is not None:
            content = choice["logprobs"].get("content") or []
            lps = [float(c["logprob"]) for c in content]
        return Result(req.key, text=text, finish_reason=choice.get("finish_reason") or "stop",
                      prompt_tokens=pt, completion_tokens=ct, logprobs=lps, meta={"attempts": attempts})


_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)(?!bearer\b)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk-)[A-Za-z0-9_-]{8,}"),
)


def redact(text: str | None, secrets: tuple[str, ...] | list[str] = ()) -> str | None:
    """``text`` with API keys replaced by ``[REDACTED]``.

    Removes each of ``secrets`` (the key this engine sent) wherever it appears, and anything that
    looks like a credential: ``Bearer TOKEN``, ``api_key=...`` / ``"Authorization": "..."`` values
    and ``sk-...`` keys. ``None`` stays ``None``.
    """
    if not text:
        return text
    for s in secrets:
        if s:
            text = text.replace(s, "[REDACTED]")
    for pat in _SECRET_PATTERNS:
        text = pat.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return text


def _wire(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a request built by ``_body``: ``extra_body`` knobs merged in at the top level, as
    ``chat.completions.create(extra_body=...)`` sends them."""
    if "extra_body" not in body:
        return body
    out = {k: v for k, v in body.items() if k != "extra_body"}
    out.update(body["extra_body"])
    return out


def _msg(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc)[:300]


def _retry_after(exc: Any) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header, if the response had one."""
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000.0
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def _estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt chars / 4 plus max_tokens: the TPM bucket's charge before the real usage is known."""
    chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
    return chars // 4 + int(body.get("max_tokens") or 0)


def _with_schema_hint(messages: list[dict[str, str]], schema: dict[str, Any]) -> list[dict[str, str]]:
    hint = "Reply with only a JSON object that follows this JSON schema:\n" + json.dumps(schema)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + hint}, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


def _json_problems(text: str, schema: dict[str, Any]) -> list[str]:
    s = text.strip()
    if s.startswith("```"):
        s = s.strip("`")
        s = s[s.find("\n") + 1:] if "\n" in s else s
    try:
        value = json.loads(s)
    except json.JSONDecodeError as exc:
        return [f"not JSON ({exc.msg} at char {exc.pos})"]
    return schema_errors(value, schema)
