"""First operators: generate, rephrase, answer (LLM) and verify against gold (row).

Sources:
    rephrase, answer — "Balancing Cost and Effectiveness of Synthetic Data
    Generation Strategies for LLMs" (2024): Question Rephrase and Answer
    Augmentation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from synthlang.expr import final_number, parse_number
from synthlang.ops.base import (
    EXTRACT_MODES,
    KIND_CHOICE,
    KIND_FIELD,
    KIND_FLOAT,
    LLM_OPTIONS,
    VERIFY_MODES,
    Operator,
    Option,
    OutputField,
    RowFailure,
    options,
)

_PREFIX = re.compile(
    r"^\s*(?:\*\*)?(?:here(?:'s| is) (?:the |a )?rewritten question:?|rewritten question:|rephrased question:|"
    r"new question:|question:|rewritten:|paraphrase:)(?:\*\*)?\s*",
    re.IGNORECASE,
)


def _input_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    f = opts.get("field")
    return {"input": row.get(f, "") if f else ""}


def _generate_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    text = text.strip()
    if not text:
        raise RowFailure("empty completion")
    return {"text": text}


def _rephrase_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = text.strip()
    s = _PREFIX.sub("", s).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    if not s:
        raise RowFailure("empty rephrasing")
    return {"rephrased": s}


def extract_answer(text: str, mode: str) -> Any:
    """Extract the final answer from reasoning.

    Args:
        text: the model's reasoning.
        mode: ``number`` (last number, ``####``, "answer is"), ``boxed``
            (content of the last ``\\boxed{}``), ``choice`` (a letter A–E),
            ``yesno`` (``yes``/``no``) or ``text`` (the last line).

    Returns:
        The answer, or ``None`` when nothing can be extracted.
    """
    if mode == "number":
        return final_number(text)
    if mode == "boxed":
        hits = re.findall(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}", text)
        return hits[-1].strip() if hits else None
    if mode == "choice":
        m = re.findall(r"(?:answer is|answer:)\s*\(?([A-E])\)?", text, flags=re.IGNORECASE)
        if m:
            return m[-1].upper()
        m = re.findall(r"\(([A-E])\)|\b([A-E])\)", text)
        if m:
            last = m[-1]
            return (last[0] or last[1]).upper()
        return None
    if mode == "yesno":
        m = re.findall(r"\b(yes|no)\b", text, flags=re.IGNORECASE)
        return m[-1].lower() if m else None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _answer_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = text.strip()
    if not s:
        raise RowFailure("empty completion")
    return {"reasoning": s, "final_answer": extract_answer(s, opts.get("extract") or "number")}


def numbers_equal(a: Any, b: Any, rel_tol: float = 1e-6) -> bool:
    """Numeric equivalence: ``1,000`` = ``1000``, ``$18`` = ``18``, ``0.5`` = ``1/2``."""
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return False
    return abs(x - y) <= rel_tol * max(1.0, abs(x), abs(y))


def _verify_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any]) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """Gold mode: ``math-verify`` numeric and symbolic equivalence, with our own timeout per row."""
    from synthlang.ops.mathcheck import equivalent

    out: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    f, g = opts["field"], opts["gold"]
    timeout = float(opts.get("timeout") or 5.0)
    for i, row in enumerate(rows):
        pred, gold = row.get(f), row.get(g)
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            verdict, reason = False, f"gold field '{g}' is empty"
        elif pred is None or (isinstance(pred, str) and not pred.strip()):
            verdict, reason = False, f"field '{f}' is empty"
        else:
            eq = equivalent(gold, pred, timeout)
            if eq is None:
                verdict, reason = False, f"comparison timed out after {timeout} s"
            elif eq:
                verdict, reason = True, f"{pred!s:.60} equals gold {gold}"
            else:
                verdict, reason = False, f"{pred!s:.60} differs from gold {gold}"
        out.append(((i,), {"verified": verdict, "verify_reason": reason}))
    return out


GENERATE = Operator(
    name="generate",
    doc="Free generation from a template; n samples per row.",
    source="—",
    options=options(*LLM_OPTIONS, Option("field", KIND_FIELD, doc="field exposed to the prompt as {{ input }}")),
    outputs=(OutputField("text", "str", "the completion"),),
    uses_model=True,
    default_prompt="generate.j2",
    postprocess=_generate_post,
    prompt_vars=_input_vars,
)

REPHRASE = Operator(
    name="rephrase",
    doc="Paraphrase a question; the row keeps every other field, so its gold label carries over.",
    source="Question Rephrase, 'Balancing Cost and Effectiveness of Synthetic Data Generation Strategies for LLMs' (2024)",
    options=options(*LLM_OPTIONS, Option("field", KIND_FIELD, "question", doc="the field to paraphrase")),
    outputs=(OutputField("rephrased", "str", "the paraphrased question"),),
    uses_model=True,
    default_prompt="rephrase.j2",
    postprocess=_rephrase_post,
    prompt_vars=_input_vars,
)

ANSWER = Operator(
    name="answer",
    doc="Reasoning followed by an extracted final answer; n samples per row.",
    source="Answer Augmentation, 'Balancing Cost and Effectiveness of Synthetic Data Generation Strategies for LLMs' (2024)",
    options=options(
        *LLM_OPTIONS,
        Option("field", KIND_FIELD, "question", doc="the field holding the question"),
        Option("extract", KIND_CHOICE, "number", choices=EXTRACT_MODES,
               doc="how the final answer is extracted from the reasoning", post=True),
    ),
    outputs=(OutputField("reasoning", "str", "the full reasoning"),
             OutputField("final_answer", "any", "the extracted final answer, null if none")),
    uses_model=True,
    default_prompt="answer.j2",
    postprocess=_answer_post,
    prompt_vars=_input_vars,
)

VERIFY = Operator(
    name="verify",
    doc="Check answers: against gold (math-verify numeric/symbolic equivalence), by self-consistency majority "
        "over sibling samples, or by an LLM consistency check (RevThink). The verdict becomes a column.",
    source="Balancing Cost (2024); RevThink (2024); self-consistency (Wang et al., 2022)",
    options=options(
        Option("mode", KIND_CHOICE, "gold", choices=VERIFY_MODES,
               doc="gold: compare with a gold field; majority: vote over samples of the same parent; llm: ask a model"),
        Option("field", KIND_FIELD, "final_answer", doc="the predicted answer", post=True),
        Option("gold", KIND_FIELD, "gold", doc="the gold answer (mode=gold)", post=True),
        Option("timeout", KIND_FLOAT, 5.0, doc="seconds allowed per comparison (mode=gold); slower counts as a mismatch", post=True),
        Option("tolerance", KIND_FLOAT, 1e-6, doc="kept for compatibility; math-verify rounds floats to 6 places", post=True),
    ),
    outputs=(OutputField("verified", "bool", "whether the answer equals the gold"),
             OutputField("verify_reason", "str", "why")),
    uses_model=False,
    apply=_verify_apply,
)
