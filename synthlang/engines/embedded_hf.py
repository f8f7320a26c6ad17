"""Fallback for the embedded engine when ``llama_cpp`` cannot be imported: transformers on CPU.

It loads the same GGUF (``from_pretrained(dir, gguf_file=...)``, which dequantizes it; needs the
``gguf`` package) and runs ``generate`` one request at a time, with the chat template from the
GGUF. Slower than llama.cpp, but a recipe still runs with no compiler toolchain. Install with
``pip install 'synthlang[hf]'`` (pins ``torch==2.13.0``: an unpinned torch pulls GBs of CUDA wheels).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthlang.engines.base import Request, Result
from synthlang.engines.embedded import DEFAULT_MODEL_ID, default_gguf_path
from synthlang.errors import EngineUnavailable


class TransformersEngine:
    """transformers + torch on CPU over a GGUF file; the embedded engine's fallback.

    Args:
        model_id: a GGUF path, or ``SmolLM2-135M-Instruct.Q4_1.gguf`` for the shipped model.
        n_ctx: context length, in tokens.
        n_threads: torch CPU threads (default: all cores).

    Raises:
        EngineUnavailable: transformers/torch/gguf missing, or the GGUF cannot be read.
    """

    kind = "embedded"

    def __init__(self, model_id: str = DEFAULT_MODEL_ID, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self._model: Any = None
        self._tok: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Dequantize the GGUF into a float32 torch model (about 20 s for SmolLM2-135M)."""
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise EngineUnavailable(f"the embedded engine needs llama-cpp-python, or transformers+torch+gguf for its "
                                    f"fallback ({exc}): pip install 'synthlang[hf]'") from None
        path = default_gguf_path() if self.model_id == DEFAULT_MODEL_ID else Path(self.model_id)
        if not path.exists():
            raise EngineUnavailable(f"model file not found: {path}")
        torch.set_num_threads(self.n_threads)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            self._model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                               dtype=torch.float32).eval()
        except (ValueError, OSError, RuntimeError, ImportError) as exc:
            raise EngineUnavailable(f"transformers could not load {path}: {exc}") from None
        self._torch = torch

    def count_tokens(self, messages: Iterable[dict[str, str]]) -> int:
        """Prompt length in tokens, chat template applied."""
        self.load()
        return int(self._encode(messages).shape[-1])

    def _encode(self, messages: Iterable[dict[str, str]]) -> Any:
        enc = self._tok.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        return enc["input_ids"]

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Run each request in turn; yield its result as soon as it is done."""
        self.load()
        for req in requests:
            yield self._one(req)

    def _one(self, req: Request) -> Result:
        torch, sp = self._torch, req.sampling
        t0 = time.perf_counter()
        from synthlang.engines.base import split_directives

        if split_directives(req.json_schema)[1]:   # issue 15: score / prefix continuation are llama.cpp's and vLLM's
            return Result(req.key, finish_reason="error", error="the transformers fallback of the embedded engine does "
                          "not score text or continue a prefix; pip install llama-cpp-python")
        ids = self._encode(req.messages)
        n = int(ids.shape[-1])
        if n + 1 > self.n_ctx:
            return Result(req.key, finish_reason="error", prompt_tokens=n, meta={"failure": "context"},
                          error=f"prompt is {n} tokens, longer than the context of {self.n_ctx} tokens")
        kw: dict[str, Any] = {"max_new_tokens": max(1, min(sp.max_tokens, self.n_ctx - n)),
                              "pad_token_id": self._tok.pad_token_id or self._tok.eos_token_id}
        if sp.temperature > 0:
            kw.update(do_sample=True, temperature=sp.temperature, top_p=sp.top_p)
            if sp.top_k is not None:
                kw["top_k"] = sp.top_k
            if sp.min_p is not None:
                kw["min_p"] = sp.min_p
        else:
            kw["do_sample"] = False
        if sp.repetition_penalty is not None:
            kw["repetition_penalty"] = sp.repetition_penalty
        if sp.stop:
            kw["stop_strings"] = list(sp.stop)
            kw["tokenizer"] = self._tok
        if req.logprobs is not None:
            kw.update(output_scores=True, return_dict_in_generate=True)
        try:
            with self._lock, torch.no_grad():
                torch.manual_seed(req.seed % (2**63))
                out = self._model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        except (RuntimeError, ValueError) as exc:
            return Result(req.key, finish_reason="error", error=f"transformers: {exc}", latency_s=time.perf_counter() - t0)
        seq = out.sequences if req.logprobs is not None else out
        new = seq[0, n:]
        eos = self._tok.eos_token_id
        hit_eos = eos is not None and len(new) > 0 and int(new[-1]) == eos
        text = self._tok.decode(new, skip_special_tokens=True)
        lps = None
        if req.logprobs is not None:
            lps = [float(torch.log_softmax(s[0], -1)[int(t)]) for s, t in zip(out.scores, new, strict=False)]
        stopped = hit_eos or any(s in text for s in sp.stop)
        for s in sp.stop:
            if s in text:
                text = text[:text.index(s)]
        return Result(req.key, text=text, finish_reason="stop" if stopped or len(new) < kw["max_new_tokens"] else "length",
                      prompt_tokens=n, completion_tokens=int(len(new)), latency_s=time.perf_counter() - t0,
                      logprobs=lps, meta={"backend": "transformers", "n_threads": self.n_threads})

    def close(self) -> None:
        self._model = None
