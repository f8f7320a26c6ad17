"""Inference engines behind one interface (:class:`synthlang.engines.base.Engine`).

Each engine imports its library lazily, so ``import synthlang`` needs none of
llama_cpp, vllm or openai. :func:`create_engine` is the registry; :data:`ENGINE_OPTIONS` lists the
options each engine accepts in a ``model`` declaration (the checker validates names against it).
"""

from __future__ import annotations

from typing import Any

from synthlang.engines.base import Engine, Request, Result, SamplingParams
from synthlang.errors import ConfigError

ENGINE_KINDS = ("embedded", "openai", "vllm", "fake")

# Engine options (besides sampling params and `revision`) accepted per engine: name -> type(s).
# None of them changes outputs, so none enters a cache key. See docs/engines.md.
ENGINE_OPTIONS: dict[str, dict[str, tuple[type, ...]]] = {
    "embedded": {"n_ctx": (int,), "threads": (int,), "backend": (str,)},
    "openai": {
        "base_url": (str,), "api_key_env": (str,), "concurrency": (int,), "adaptive": (bool,),
        "timeout": (int, float), "max_retries": (int,), "rpm": (int, float), "tpm": (int, float),
        "price_input": (int, float), "price_output": (int, float), "structured": (str,), "reask": (int,),
        "batch": (bool,), "batch_poll_s": (int, float), "rate_limit_deadline_s": (int, float), "context": (int,),
    },
    "vllm": {
        "tensor_parallel_size": (int,), "gpu_memory_utilization": (float, int), "max_model_len": (int,),
        "dtype": (str,), "max_num_seqs": (int,), "enable_prefix_caching": (bool,), "enforce_eager": (bool,),
        "chunk_size": (int,), "enable_chunked_prefill": (bool,),
    },
    "fake": {},
}


def create_engine(kind: str, model_id: str, options: dict[str, Any]) -> Engine:
    """Build an engine from a resolved ``model`` declaration.

    Args:
        kind: one of :data:`ENGINE_KINDS`.
        model_id: the model id (GGUF path for embedded, HF id or folder for vllm, API model for openai).
        options: engine options that do not change outputs (see :data:`ENGINE_OPTIONS`).

    Raises:
        ConfigError: for an unknown engine kind or option.
    """
    unknown = set(options) - set(ENGINE_OPTIONS.get(kind, {}))
    if kind in ENGINE_OPTIONS and unknown:
        raise ConfigError(f"engine '{kind}' has no option(s) {', '.join(sorted(unknown))}; "
                          f"options: {', '.join(ENGINE_OPTIONS[kind]) or 'none'}")
    if kind == "embedded":
        from synthlang.engines.embedded import DEFAULT_MODEL_ID, make_embedded

        return make_embedded(model_id or DEFAULT_MODEL_ID, n_ctx=int(options.get("n_ctx", 2048)),
                             n_threads=options.get("threads"), backend=str(options.get("backend", "auto")))
    if kind == "openai":
        from synthlang.engines.openai import OpenAIEngine

        return OpenAIEngine(model_id, **options)
    if kind == "vllm":
        from synthlang.engines.vllm import VLLMEngine

        return VLLMEngine(model_id, **options)
    if kind == "fake":
        from synthlang.engines.fake import FakeEngine

        return FakeEngine(model_id or "fake")
    raise ConfigError(f"unknown engine '{kind}'; use one of: {', '.join(ENGINE_KINDS)}")


__all__ = ["Engine", "Request", "Result", "SamplingParams", "create_engine", "ENGINE_KINDS", "ENGINE_OPTIONS"]
