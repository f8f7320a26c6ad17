"""A sampled cross product of two nodes, and dedup within each parent's samples (issue 15, papersb).

* ``cross(rows, with=probes, k=3, key=question, seed=0)`` — each input row paired with ``k`` rows of
  another node drawn without replacement (all of them when ``k=0`` or ``k`` is at least that node's size).
  The draw is seeded by ``seed`` and the row's ``key`` (default: the whole row), so it is deterministic,
  does not depend on the order or batching of the input, and rows with equal keys get the *same* right
  rows: in ARTE every draft written for one seed question is scored on the same probe questions, which
  makes the drafts' accuracies comparable. Output rows keep the input row's fields plus every field of
  the other row under ``prefix`` (default ``right_``: ``exam_question``, ``exam_gold`` with
  ``prefix="exam_"``), so the two sides never mix; both rows are lineage parents.
  Papers: ARTE (Liu et al., 2024, "Aligning Teacher with Student Preferences for Tailored Training
  Data Generation"): each teacher draft is tried by the student on probe questions; LbT (Ning et al.,
  2024, "Can LLMs Learn by Teaching for Better Reasoning?"): each rationale is given to students on
  exam problems.
* ``dedup(rows, field=final_answer, within="parent")`` — the existing ``dedup`` with a new option:
  near-duplicates are dropped only among the samples of one parent (found through lineage like
  ``pair``: the nearest ancestor the rows share, so also after 1:1 steps such as ``derive``), never
  across parents. MalAlgoQA (Sonkar et al., 2024): each question needs *distinct* wrong options, while
  two questions may share a wrong value. Locality ``group`` (one parent's samples), so it streams.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from synthlang import ast
from synthlang.ops.base import (
    KIND_CHOICE,
    KIND_EXPR,
    KIND_INT,
    KIND_NODE,
    KIND_STR,
    LOCALITY_GLOBAL,
    LOCALITY_GROUP,
    Operator,
    Option,
    RowContext,
    options,
)
from synthlang.ops.relational import _eval, _hashable, sibling_groups
from synthlang.ops.rowops import DEDUP

if TYPE_CHECKING:
    from synthlang.check.checker import _Checker

Index = int | tuple[str, int]
Out = list[tuple[tuple[Index, ...], dict[str, Any]]]


# -------------------------------------------------------------------- cross
def draw(n: int, k: int, seed: int, key: Any) -> list[int]:
    """Indexes of ``k`` of ``n`` rows, drawn without replacement, in ascending order.

    Args:
        n: rows on the other side.
        k: how many to draw; ``0`` or ``k >= n`` takes all ``n`` (the full cross product).
        seed: the step's sampling seed.
        key: the input row's key (any JSON-able value); equal keys draw equal rows.

    Returns:
        sorted indexes in ``range(n)``; the same arguments always give the same list
        (the generator is seeded by a SHA-256 of ``seed`` and the key's canonical JSON,
        never by Python's salted ``hash``).
    """
    if k <= 0 or k >= n:
        return list(range(n))
    h = hashlib.sha256(f"{seed}|{json.dumps(key, sort_keys=True, default=str)}".encode()).digest()
    return sorted(random.Random(int.from_bytes(h[:8], "big")).sample(range(n), k))


MAX_CROSS_ROWS = 1_000_000
"""Most rows one ``cross`` step may make (a shared recipe's ``k=0`` between two large nodes is an unbounded product)."""


def _cross_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    """Each row × its ``k`` drawn rows of ``with``.

    Raises:
        DataError: the product would exceed :data:`MAX_CROSS_ROWS` rows (checked before any row is built).
    """
    from synthlang.errors import DataError

    other = opts["with"]
    right = ctx.nodes.get(other, [])
    prefix = opts["prefix"] if opts.get("prefix") is not None else "right_"
    k = int(opts.get("k") or 0)
    seed = int(opts.get("seed") or 0)
    per = len(right) if k == 0 or k >= len(right) else k
    if len(rows) * per > MAX_CROSS_ROWS:
        raise DataError(f"cross would make {len(rows)} x {per} = {len(rows) * per} rows, over the limit of "
                        f"{MAX_CROSS_ROWS} per step; draw fewer rows of '{other}' with k=, or narrow the inputs",
                        "cross")
    out: Out = []
    for i, r in enumerate(rows):
        key = _eval(opts["key"], r, ctx) if opts.get("key") is not None else r
        for j in draw(len(right), k, seed, _hashable(key)):
            out.append(((i, (other, j)), {prefix + f: v for f, v in right[j].items()}))
    return out


def _check_cross(ck: _Checker, d: ast.Step, op: Operator, opts: dict[str, Any], fields_in: dict[str, str],
                 free: list[tuple[str, ast.Arg]]) -> dict[str, str] | None:
    """Fields a ``cross`` adds: the other node's, each under ``prefix``; a name the input already has is an error."""
    kw = d.op.kw()
    if "with" not in kw:
        ck.err("cross() needs with=", d.op.span, code="missing-argument", operator="cross", name="with",
               hint="e.g. step tried = cross(drafts, with=probes, k=3, key=question)")
        return None
    if opts.get("with") is None:
        return None  # the option's own error is reported
    other_fields = ck.fields.get(opts["with"], {})
    prefix = opts["prefix"] if opts.get("prefix") is not None else "right_"
    out = {prefix + f: t for f, t in other_fields.items()}
    for f in out:
        if f in fields_in:
            ck.err(f"cross: the other side's field becomes '{f}', which the input already has", kw.get("prefix", kw["with"]).value.span,
                   code="shadowed-field", name=f, hint=f"choose another prefix= (now {prefix!r})")
            return None
    return out


CROSS = Operator(
    name="cross",
    doc="Each input row paired with k rows of another node drawn without replacement (the sampled cross product; "
        "k=0 or k >= that node's size: every row, the full product). The draw is seeded by `seed` and the row's "
        "`key` (default: the whole row): deterministic, independent of input order, and rows with equal keys get "
        "the same rows (the drafts of one question are tried on the same probes). Output rows keep the input's "
        "fields plus every field of the other row under `prefix` (default right_: prefix=\"exam_\" gives exam_question); "
        "both rows are "
        "lineage parents. Reads the whole `with` node (locality global).",
    source="ARTE (Liu et al., 2024): teacher drafts x probe questions; LbT (Ning et al., 2024): rationales x exam problems",
    options=options(
        Option("with", KIND_NODE, None, doc="the other source or step (required)"),
        Option("k", KIND_INT, 0, doc="rows of `with` per input row; 0: all of them", range=(0, None)),
        Option("key", KIND_EXPR, None, doc="rows with equal keys draw the same rows (default: the whole row)"),
        Option("seed", KIND_INT, 0, doc="sampling seed", range=(0, 2**63 - 1)),
        Option("prefix", KIND_STR, "right_", doc="prefix for every field of the other side"),
    ),
    outputs=(), uses_model=False, apply=_cross_apply, takes_context=True,
    extra={"check": _check_cross}, locality_=LOCALITY_GLOBAL,
)


# ------------------------------------------------------- dedup per parent
def _dedup_within_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    """``dedup``'s own rule applied to each parent's samples separately (indexes mapped back)."""
    if opts.get("within") != "parent":
        return DEDUP.run_apply(rows, opts, ctx)  # type: ignore[return-value]
    up = ctx.lineage(list(ctx.row_ids)) if ctx.lineage is not None else {}
    groups_of = sibling_groups(ctx.row_ids, up) if ctx.row_ids else [str(i) for i in range(len(rows))]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups_of):
        groups[g].append(i)
    kept: list[tuple[int, dict[str, Any]]] = []
    for members in groups.values():
        sub_ctx = replace(ctx, row_ids=[ctx.row_ids[i] for i in members] if ctx.row_ids else [],
                          parent_ids=[ctx.parent_ids[i] for i in members] if ctx.parent_ids else [])
        for idx, fields in DEDUP.run_apply([rows[i] for i in members], opts, sub_ctx):
            kept.append((members[idx[0]], fields))
    kept.sort(key=lambda t: t[0])  # input order
    return [((i,), f) for i, f in kept]


WITHIN = Option("within", KIND_CHOICE, "all", choices=("all", "parent"),
                doc="all: across the whole input; parent: only among the samples of one parent (found through "
                    "lineage, as pair does), e.g. distinct wrong options per question (MalAlgoQA)")

DEDUP_PER_PARENT = replace(
    DEDUP, options={**DEDUP.options, "within": WITHIN}, apply=_dedup_within_apply,
    doc=DEDUP.doc + " within=\"parent\" dedups each parent's samples separately (locality group).",
    source=DEDUP.source + "; per parent: MalAlgoQA (Sonkar et al., 2024) distinct distractors per question",
    extra={**DEDUP.extra, "needs_lineage": True}, locality_=LOCALITY_GROUP,
)


def _dedup_select(opts: dict[str, Any]) -> Operator:
    """``dedup(within="parent")`` is group-local; the default stays global (the whole input)."""
    if opts.get("within") == "parent":
        return DEDUP_PER_PARENT
    return replace(DEDUP_PER_PARENT, locality_=LOCALITY_GLOBAL, extra=dict(DEDUP.extra))


DEDUP_WITHIN = replace(DEDUP_PER_PARENT, select=_dedup_select)
"""The registry's ``dedup``: the existing operator plus ``within`` (``select`` picks the locality)."""

CROSSING = (CROSS, DEDUP_WITHIN)
