"""Operator implementations, one registry (:data:`OPERATORS`).

See docs/operators.md for every operator's options, defaults, fields and source.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from synthlang.ops.base import LLM_OPTIONS, Operator, Option, OutputField, RowFailure, options
from synthlang.ops.core import ANSWER, GENERATE, REPHRASE, VERIFY
from synthlang.ops.methods import EVOLVE, JUDGE, LABEL, NEW_QUESTION, PROBE, REVERSE, STRATEGY, VERIFY_LLM, verify_llm_for
from synthlang.ops.relational import RELATIONAL
from synthlang.ops.rowops import ADAPTIVE, CURRICULUM, DECONTAMINATE, DEDUP, ELIMINATE, FILTER, REPORT, SELECT, VERIFY_MAJORITY

_VERIFY_GOLD = VERIFY


def _verify_select(opts: dict[str, Any]) -> Operator:
    mode = opts.get("mode") or "gold"
    if mode == "llm":
        return verify_llm_for(opts)
    return {"gold": _VERIFY_GOLD, "majority": VERIFY_MAJORITY}[mode]


# verify accepts the union of its modes' options; the checker picks the mode's implementation.
VERIFY = replace(_VERIFY_GOLD, options={**{o.name: o for o in LLM_OPTIONS}, **VERIFY_LLM.options, **VERIFY_MAJORITY.options,
                                        **_VERIFY_GOLD.options}, select=_verify_select)


def _report_select(opts: dict[str, Any]) -> Operator:
    return replace(REPORT, inherit=bool(opts.get("per_row")))


REPORT_SELECTING = replace(REPORT, inherit=False, select=_report_select)

OPERATORS: dict[str, Operator] = {op.name: op for op in (
    GENERATE, REPHRASE, ANSWER, NEW_QUESTION, EVOLVE, REVERSE, VERIFY, LABEL, JUDGE, FILTER, SELECT, DEDUP,
    DECONTAMINATE, PROBE, CURRICULUM, REPORT_SELECTING, ELIMINATE, STRATEGY, ADAPTIVE)}
OPERATORS.update({op.name: op for op in RELATIONAL})  # derive, explode, group, pair, join, union (ops/relational.py)

# papersa (issue 15): generate/answer gain n_from= and prefix= (generate also schema=); score, divergence, mixture.
from synthlang.ops import structured as _structured  # noqa: E402
from synthlang.ops.dialogue import DIALOGUE_OPS  # noqa: E402
from synthlang.ops.mixture import MIXTURE  # noqa: E402
from synthlang.ops.scoring import SCORING  # noqa: E402

OPERATORS["generate"] = _structured.extend(OPERATORS["generate"], with_schema=True)
OPERATORS["answer"] = _structured.extend(OPERATORS["answer"], with_schema=False)
OPERATORS.update({op.name: op for op in (*SCORING, MIXTURE, *DIALOGUE_OPS)})
# end papersa
# papersb (issue 15): the sampled cross product, dedup within each parent's samples, BM25 retrieval
from synthlang.ops.crossing import CROSSING  # noqa: E402
from synthlang.ops.retrieval import RETRIEVE  # noqa: E402

OPERATORS.update({op.name: op for op in (*CROSSING, RETRIEVE)})  # cross, dedup (+ within=), retrieve

__all__ = ["OPERATORS", "Operator", "Option", "OutputField", "RowFailure", "options"]
