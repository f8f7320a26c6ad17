"""Prompts over a model's context window, found by ``synth plan`` before any call (issue 11 item 14).

A model's context comes from its declaration: ``n_ctx=`` on ``embedded`` (default 2048),
``max_model_len=`` on ``vllm``, ``context=`` on ``openai``. For every LLM step that reads a source
(its input rows are known before any call), each row's prompt is rendered as the runner renders it
and its size estimated at one token per 4 UTF-8 bytes, rounded up (English text with an LLM
tokenizer runs 3.5 to 4.5 bytes a token; the check is an early warning, and the embedded and vLLM
engines still refuse an over-long prompt per row with its exact token count). A row is *over* when
the estimated prompt plus the step's ``max_tokens`` exceeds the context.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

BYTES_PER_TOKEN = 4
"""UTF-8 bytes per token in the estimate."""
DEFAULT_N_CTX = 2048
"""The embedded engine's context when ``n_ctx`` is not declared (engines/__init__.py)."""


def context_limit(model: Any) -> int | None:
    """The declared context of a :class:`~synthlang.plan.program.ModelSpec`, in tokens, or ``None``."""
    opts = getattr(model, "options", {}) or {}
    if model.kind == "embedded":
        return int(opts.get("n_ctx") or DEFAULT_N_CTX)
    if model.kind == "vllm" and opts.get("max_model_len"):
        return int(opts["max_model_len"])
    if model.kind == "openai" and opts.get("context"):
        return int(opts["context"])
    return None


def estimate_tokens(messages: list[dict[str, str]] | tuple[dict[str, str], ...]) -> int:
    """Estimated prompt tokens of chat messages: UTF-8 bytes / :data:`BYTES_PER_TOKEN`, rounded up, plus 4 a message."""
    return sum(math.ceil(len((m.get("content") or "").encode("utf-8")) / BYTES_PER_TOKEN) + 4 for m in messages)


def over_context(program: Any, load: Callable[[Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Steps with rows whose prompt plus ``max_tokens`` exceeds the model's declared context.

    Args:
        program: the checked :class:`~synthlang.plan.program.Program`.
        load: ``source spec -> rows`` (``execute.sources.load_source`` with the params); a source that
            cannot be read is skipped (``synth run`` reports it).

    Returns:
        One dict per step with rows over: ``step``, ``model``, ``context`` (tokens), ``max_tokens``,
        ``rows`` (checked), ``over`` (how many), ``largest`` (estimated prompt tokens of the largest),
        ``first`` (1-based index of the first row over, among the source's rows after offset/limit).
    """
    from synthlang.templates import TemplateError, render

    out: list[dict[str, Any]] = []
    cache: dict[str, list[dict[str, Any]] | None] = {}
    for st in program.steps:
        m = st.model
        if m is None or not st.op.uses_model or st.op.prepare is not None or st.input not in program.sources:
            continue
        limit = context_limit(m)
        if limit is None:
            continue
        if st.input not in cache:
            try:
                cache[st.input] = load(program.sources[st.input])
            except Exception:  # noqa: BLE001 - plan never fails on data; `run` reports the real error
                cache[st.input] = None
        rows = cache[st.input]
        if not rows:
            continue
        max_tokens = int(st.opts.get("max_tokens") or m.sampling.max_tokens)
        over = largest = 0
        first = None
        for i, row in enumerate(rows, start=1):
            values = {**program.params, "round": 0, **row}
            if st.op.prompt_vars:
                values.update(st.op.prompt_vars(row, st.opts))
            try:
                msgs = [{"content": render(st.opts[k], values, f"{st.name}.{k}")} for k in ("system", "prompt")
                        if st.opts.get(k)]
            except TemplateError:
                continue   # the run fails this row with its reason
            need = estimate_tokens(msgs)
            if need + max_tokens > limit:
                over += 1
                largest = max(largest, need)
                first = first or i
        if over:
            out.append({"step": st.name, "model": m.name, "context": limit, "max_tokens": max_tokens,
                        "rows": len(rows), "over": over, "largest": largest, "first": first})
    return out


def describe(found: list[dict[str, Any]]) -> list[str]:
    """One warning line per entry of :func:`over_context`."""
    return [f"step '{f['step']}': {f['over']} of {f['rows']} rows need more than model '{f['model']}''s context of "
            f"{f['context']} tokens (prompt ~{f['largest']} tokens at most, estimated, + max_tokens {f['max_tokens']}); "
            f"first: row {f['first']}. Shorten the prompt, lower max_tokens or declare a larger context"
            for f in found]
