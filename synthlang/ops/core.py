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

from synthlang.expr import parse_number
from synthlang.ops.answers import ANSWER_TYPES, EXTRACT_TYPE, compare, extract_answer, resolve_type
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


# How each extract mode's default prompt asks for the final line (ops/templates/answer.j2).
ANSWER_FORMAT = {
    "number": 'Finish with a last line of the form "The answer is N." where N is a number.',
    "boxed": "Finish with the final answer inside \\boxed{}.",
    "choice": 'Finish with a last line of the form "The answer is (X)." where X is the letter of one option.',
    "yesno": 'Finish with a last line that is either "The answer is yes." or "The answer is no."',
    "text": 'Finish with a last line of the form "The answer is ..." giving the short final answer.',
}


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


def _answer_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = text.strip()
    if not s:
        raise RowFailure("empty completion")
    return {"reasoning": s, "final_answer": extract_answer(s, opts.get("extract") or "number")}


def _answer_vars(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """``input`` plus ``answer_format``: how the default prompt asks for the final line, by extract mode."""
    f = opts.get("field")
    return {"input": row.get(f, "") if f else "", "answer_format": ANSWER_FORMAT[opts.get("extract") or "number"]}


def numbers_equal(a: Any, b: Any, rel_tol: float = 1e-6) -> bool:
    """Numeric equivalence: ``1,000`` = ``1000``, ``$18`` = ``18``, ``0.5`` = ``1/2``."""
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return False
    return abs(x - y) <= rel_tol * max(1.0, abs(x), abs(y))


def _verify_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any]) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """Gold mode: compare by answer type (:func:`synthlang.ops.answers.compare`), with a timeout per numeric comparison."""
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
            kind = resolve_type(opts.get("answer_type"), opts.get("extract"), gold)
            eq, reason = compare(gold, pred, kind, timeout)
            verdict = bool(eq)
        out.append(((i,), {"verified": verdict, "verify_reason": reason}))
    return out


def _verify_resolve(opts: dict[str, Any], fields: dict[str, str], producer: Any) -> dict[str, Any]:
    """Fix ``answer_type=auto`` at check time: the extract mode of the step that made ``field``, or a bool gold field.

    Args:
        opts: the step's options (defaults filled in).
        fields: the input rows' field types by name.
        producer: ``field -> options of the step that produced it`` (or ``None``).

    Returns:
        ``opts`` with ``answer_type`` and ``extract`` set; ``answer_type`` stays
        ``auto`` (decided per row from the gold's value) when nothing fixes it.
    """
    out = dict(opts)
    if out.get("answer_type") not in (None, "auto"):
        return out
    gold_type = fields.get(str(out.get("gold")))
    made_by = producer(str(out.get("field"))) if producer else None
    extract = made_by.get("extract") if isinstance(made_by, dict) else None
    if extract in EXTRACT_TYPE:
        out["extract"] = extract
    if gold_type == "bool":
        out["answer_type"] = "yesno"
    elif extract in EXTRACT_TYPE:
        out["answer_type"] = EXTRACT_TYPE[extract]
    elif gold_type in ("int", "float", "number"):
        out["answer_type"] = "number"
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
               doc="the answer type: how the final answer is extracted (explicit 'The answer is'/boxed first, "
                   "then the mode's fallback), and which final line the default prompt asks for"),
    ),
    outputs=(OutputField("reasoning", "str", "the full reasoning"),
             OutputField("final_answer", "any", "the extracted final answer, null if none")),
    uses_model=True,
    default_prompt="answer.j2",
    postprocess=_answer_post,
    prompt_vars=_answer_vars,
    template_vars=("answer_format",),
)

VERIFY = Operator(
    name="verify",
    doc="Check answers: against gold by answer type (number: math-verify numeric/symbolic equivalence; choice letter; "
        "yes/no, where a bool gold equals yes/no; label; normalised text), by self-consistency majority over sibling "
        "samples, or by an LLM consistency check (RevThink). The verdict becomes a column.",
    source="Balancing Cost (2024); RevThink (2024); self-consistency (Wang et al., 2022)",
    options=options(
        Option("mode", KIND_CHOICE, "gold", choices=VERIFY_MODES,
               doc="gold: compare with a gold field; majority: vote over samples of the same parent; llm: ask a model"),
        Option("field", KIND_FIELD, "final_answer", doc="the predicted answer", post=True),
        Option("gold", KIND_FIELD, "gold", doc="the gold answer (mode=gold)", post=True),
        Option("answer_type", KIND_CHOICE, "auto", choices=("auto", *ANSWER_TYPES), post=True,
               doc="mode=gold: how answers compare. auto: from the extract mode of the step that made `field`, else "
                   "yesno for a bool gold field, number for a numeric one, else per row from the gold's value; "
                   "the plan states the result"),
        Option("extract", KIND_CHOICE, None, choices=EXTRACT_MODES, post=True,
               doc="mode=gold: the extract mode that produced `field` (filled in by the checker when it can tell)"),
        Option("timeout", KIND_FLOAT, 5.0, doc="seconds allowed per comparison (mode=gold); slower counts as a mismatch", post=True),
        Option("tolerance", KIND_FLOAT, 1e-6, doc="kept for compatibility; math-verify rounds floats to 6 places", post=True),
    ),
    outputs=(OutputField("verified", "bool", "whether the answer equals the gold"),
             OutputField("verify_reason", "str", "why")),
    uses_model=False,
    apply=_verify_apply,
    resolve=_verify_resolve,
)
