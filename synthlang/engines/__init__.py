"""Inference engines behind one interface (:class:`synthlang.engines.base.Engine`).

Each engine imports its library lazily, so ``import synthlang`` needs none of
llama_cpp, vllm or openai.
"""

from __future__ import annotations

from typing import Any

from synthlang.engines.base import Engine, Request, Result, SamplingParams
from synthlang.errors import ConfigError

ENGINE_KINDS = ("embedded", "openai", "vllm", "fake")


def create_engine(kind: str, model_id: str, options: dict[str, Any]) -> Engine:
    """Build an engine from a resolved ``model`` declaration.

    Args:
        kind: one of :data:`ENGINE_KINDS`.
        model_id: the model id (GGUF path for embedded, HF id for vllm, API id for openai).
        options: engine options that do not change outputs (threads, base_url, ...).

    Raises:
        ConfigError: for an unknown engine kind.
    """
    if kind == "embedded":
        from synthlang.engines.embedded import DEFAULT_MODEL_ID, EmbeddedEngine

        return EmbeddedEngine(model_id or DEFAULT_MODEL_ID, n_ctx=int(options.get("n_ctx", 2048)),
                              n_threads=options.get("threads"))
    if kind == "fake":
        from synthlang.engines.fake import FakeEngine

        return FakeEngine(model_id or "fake")
    raise ConfigError(f"engine '{kind}' is not available in this version; use one of: embedded, fake")


__all__ = ["Engine", "Request", "Result", "SamplingParams", "create_engine", "ENGINE_KINDS"]
