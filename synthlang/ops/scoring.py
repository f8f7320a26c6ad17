"""Teacher forcing: ``score`` (per-token logprobs and sequence NLL of a given text) and ``divergence``.

* ``score(rows, model=teacher, field=text, context=question)`` asks the model for the log-probability of each
  token of ``field``'s text as its reply to the prompt (by default the ``context`` field as the user turn).
  One call per row, no sampling: llama.cpp evaluates the chat prompt and the text in one ``logits_all`` pass,
  vLLM returns ``prompt_logprobs``. Outputs: ``tokens`` (list of token strings), ``token_logprobs`` (natural
  log, one per token), ``nll`` (mean negative logprob per token, nats), ``nll_sum`` (nats) and ``n_tokens``.
  OpenAI-compatible APIs do not score arbitrary text; ``synth check`` names such a model's engine.
  Sources: DDK (2024) per-domain teacher/student loss on a validation set; Multi-Granularity Semantic Revision
  (SCRG, 2024) teacher scoring of the student's sequence.
* ``divergence(rows, tokens=tokens, logprobs=token_logprobs, threshold=-2.3)`` finds the first token the teacher
  finds unlikely (logprob below ``threshold``) and gives the text before it as ``prefix`` (for
  ``generate(prefix=...)``/``answer(prefix=...)``), the token, its index and whether there is one (SCRG's
  error-token detection; the teacher's own continuation from the prefix replaces the token and the rest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from synthlang.engines.base import with_directive
from synthlang.ops.base import (
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_MODEL,
    KIND_TEMPLATE,
    LOCALITY_ROW,
    Operator,
    Option,
    OutputField,
    RowContext,
    RowFailure,
    options,
)


def _score_prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    f = opts["field"]
    return [{"__schema__": with_directive(None, "score", "" if r.get(f) is None else str(r.get(f)))} for r in rows]


def _score_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    c = opts.get("context")
    return {"input": "" if not c or row.get(c) is None else row.get(c)}


def _score_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    try:
        got = json.loads(text)
        toks, lps = list(got["tokens"]), [float(x) for x in got["logprobs"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise RowFailure("the engine's score reply is not {tokens, logprobs} JSON") from None
    if not lps or len(toks) != len(lps):
        raise RowFailure("the engine scored no tokens")
    total = -sum(lps)
    return {"tokens": toks, "token_logprobs": lps, "nll": total / len(lps), "nll_sum": total, "n_tokens": len(lps)}


SCORE = Operator(
    name="score",
    doc="Teacher forcing: the model's log-probability of each token of a given text as its reply to the prompt "
        "(one call per row, nothing sampled); per-token list and sequence NLL. Embedded (llama.cpp logits) and vLLM "
        "(prompt_logprobs) engines only.",
    source="DDK (Liu et al., 2024): per-domain teacher/student loss; SCRG (Multi-Granularity Semantic Revision, 2024): "
           "teacher scores the student's sequence token by token",
    options=options(
        Option("model", KIND_MODEL, doc="the scoring model (default: the first declared model)"),
        Option("prompt", KIND_TEMPLATE, doc="the user turn the text answers (default: the context field as {{ input }})"),
        Option("system", KIND_TEMPLATE, doc="an optional system prompt template"),
        Option("field", KIND_FIELD, "text", doc="the field holding the text to score (the assistant's reply)", post=False),
        Option("context", KIND_FIELD, None, doc="the field shown as {{ input }} in the default prompt (e.g. question); "
                                                 "none: an empty user turn"),
    ),
    outputs=(OutputField("tokens", "list[str]", "the text's tokens, as the model splits it"),
             OutputField("token_logprobs", "list[float]", "natural-log probability of each token given the prompt and the tokens before it"),
             OutputField("nll", "float", "mean negative log-likelihood per token (nats)"),
             OutputField("nll_sum", "float", "total negative log-likelihood of the text (nats)"),
             OutputField("n_tokens", "int", "number of scored tokens")),
    uses_model=True,
    default_prompt="score.j2",
    postprocess=_score_post,
    prompt_vars=_score_vars,
    prepare=_score_prepare,
    extra={"directives": lambda opts: ("score",)},
    locality_=LOCALITY_ROW,
)


def _divergence_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any]) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    tf, lf, thr = opts["tokens"], opts["logprobs"], float(opts["threshold"])
    skip = int(opts.get("skip") or 0)
    out: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    for i, r in enumerate(rows):
        toks, lps = r.get(tf), r.get(lf)
        if not isinstance(toks, list) or not isinstance(lps, list) or len(toks) != len(lps):
            out.append(((i,), {"prefix": None, "diverged": False, "diverge_index": None, "diverge_token": None,
                               "diverge_logprob": None}))
            continue
        at = next((k for k in range(skip, len(lps)) if lps[k] is not None and float(lps[k]) < thr), None)
        out.append(((i,), {
            "prefix": "".join(str(t) for t in toks[:at]) if at is not None else None,
            "diverged": at is not None, "diverge_index": at,
            "diverge_token": toks[at] if at is not None else None,
            "diverge_logprob": float(lps[at]) if at is not None else None,
        }))
    return out


DIVERGENCE = Operator(
    name="divergence",
    doc="The first token a scoring model finds unlikely (logprob below a threshold): the text before it becomes "
        "`prefix`, for regeneration from the corrected point with generate/answer(prefix=...).",
    source="SCRG, Multi-Granularity Semantic Revision for LLM Distillation (2024): detect the error token by the "
           "teacher-student difference, correct it, re-generate the rest",
    options=options(
        Option("tokens", KIND_FIELD, "tokens", doc="the list of token strings (from score)"),
        Option("logprobs", KIND_FIELD, "token_logprobs", doc="their logprobs under the teacher (from score)"),
        Option("threshold", KIND_FLOAT, math.log(0.1), doc="a token is divergent when its teacher logprob is below this "
                                                           "(nats; default ln 0.1 = -2.303: the teacher gives it < 10%)"),
        Option("skip", KIND_INT, 0, doc="tokens at the start that never count as divergent", range=(0, None)),
    ),
    outputs=(OutputField("prefix", "str", "the text before the first divergent token (null if none)"),
             OutputField("diverged", "bool", "whether some token is below the threshold"),
             OutputField("diverge_index", "int", "0-based index of the first divergent token"),
             OutputField("diverge_token", "str", "that token"),
             OutputField("diverge_logprob", "float", "its teacher logprob")),
    uses_model=False,
    apply=_divergence_apply,
    locality_=LOCALITY_ROW,
)

SCORING = (SCORE, DIVERGENCE)
