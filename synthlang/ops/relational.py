"""Relational steps: derive, explode, group, pair, join and union.

These are row operators (no LLM calls) that reshape rows the way SQL does, so a
recipe can express a method in one run with full lineage instead of a second run
over a ``sql(...)`` source:

* ``derive(rows, name = expr, ...)`` — new (or replaced) fields from safe
  expressions, like a source's derived fields but on any step's rows
  (``correct = final_answer == gold``; SFT ``messages`` as a list of objects).
* ``explode(rows, field=items)`` — one row per item of a list field
  (SQL ``UNNEST``; Self-Instruct's numbered instruction lists, UniversalNER's
  one turn per entity type).
* ``group(rows, by=key, name = AGG(expr), ...)`` — one row per key with
  aggregates ``count mean sum min max any all list first`` (SQL ``GROUP BY``;
  per-draft accuracy in ARTE/LbT, distractors per question); each output row has
  every member row as a lineage parent.
* ``pair(rows, rank=expr, key=expr)`` — (chosen, rejected) preference pairs
  among rows sharing a parent (default) or a key, ranked by an expression
  (``verified``, ``score``); DPO pairs from n sampled answers. Lineage: both rows.
* ``join(rows, with=other, on=expr, how="inner"|"left")`` — rows of two nodes
  matched on a key expression, or, without ``on``, on common ancestry (they
  descend from one common row, e.g. the same seed). Lineage: both rows.
* ``union(rows, with=other)`` — the rows of both nodes (SQL ``UNION ALL BY
  NAME``: a field missing on one side is null).

Null semantics follow SQL: a null key never matches in ``join`` (``NULL = NULL`` is
not true), rows whose ``rank`` is null are not paired, aggregates skip nulls
(``count(x)`` counts non-null values, ``count()`` counts rows), ``list`` keeps them.

Results name their parents with index tuples: an ``int`` is a row of the input,
a ``(node, j)`` pair is row ``j`` of another node (a ``node`` option); the runner
writes a lineage edge to each.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from synthlang import ast
from synthlang.expr import ExprError, evaluate
from synthlang.ops.base import (
    KIND_CHOICE,
    KIND_EXPR,
    KIND_FIELD,
    KIND_FLOAT,
    KIND_NODE,
    KIND_STR,
    Operator,
    Option,
    OutputField,
    RowContext,
    options,
)

Index = int | tuple[str, int]
KIND_OTHER_EXPR = "other_expr"  # an expression over the rows of the step's `with` node (checked in check/relational.py)
Out = list[tuple[tuple[Index, ...], dict[str, Any]]]

# Aggregates of `group`: name -> result type ("arg" = the argument's type).
AGGREGATES: dict[str, str] = {
    "count": "int", "sum": "number", "mean": "float", "min": "arg", "max": "arg",
    "any": "bool", "all": "bool", "list": "list", "first": "arg",
}


def _eval(e: Any, row: dict[str, Any], ctx: RowContext) -> Any:
    try:
        return evaluate(e, row, {**ctx.params, "round": ctx.round})
    except ExprError:
        return None


def ancestors(up: dict[str, tuple[str, ...]], rid: str) -> set[str]:
    """A row and all its ancestors, given the upward parent map of :attr:`RowContext.lineage`."""
    seen, stack = {rid}, [rid]
    while stack:
        for p in up.get(stack.pop(), ()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def sibling_groups(row_ids: Sequence[str], up: dict[str, tuple[str, ...]]) -> list[str]:
    """Each row's group for ``pair``: its nearest ancestor (first-parent chain) shared with another input row.

    The n samples of one LLM step share their parent; after a 1:1 step (derive, verify)
    they share their grandparent, and so on. A row that shares no ancestor is its own group.
    """
    chains = []
    for rid in row_ids:
        chain, node = [], rid
        while up.get(node):
            node = up[node][0]
            chain.append(node)
        chains.append(chain)
    shared: dict[str, int] = defaultdict(int)
    for chain in chains:
        for a in chain:
            shared[a] += 1
    return [next((a for a in chain if shared[a] > 1), rid) for rid, chain in zip(row_ids, chains, strict=True)]


def _free(opts: dict[str, Any]) -> list[tuple[str, Any]]:
    """The step's free keyword arguments (new fields), in the order written."""
    return list(opts.get("__fields__") or ())


# ------------------------------------------------------------------- derive
def _derive_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    out: Out = []
    for i, r in enumerate(rows):
        row = dict(r)
        new: dict[str, Any] = {}
        for name, e in _free(opts):
            new[name] = row[name] = _eval(e, row, ctx)   # later fields see earlier ones
        out.append(((i,), new))
    return out


DERIVE = Operator(
    name="derive",
    doc="New fields from safe expressions on each row: derive(rows, correct = final_answer == gold, ...). "
        "Later fields see earlier ones; a field of the same name is replaced (the new expression says so). "
        "A run-time error in an expression (1 / 0) gives null.",
    source="SQL SELECT expressions; the product brief's derived fields",
    options={}, outputs=(), uses_model=False, apply=_derive_apply, takes_context=True,
    extra={"free": "expr"},
)


# ------------------------------------------------------------------ explode
def _explode_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    f = opts["field"]
    out: Out = []
    for i, r in enumerate(rows):
        items = r.get(f)
        if isinstance(items, dict):
            items = list(items.items())
        if not isinstance(items, (list, tuple)):
            continue  # null or not a list: no rows (SQL UNNEST of NULL)
        for k, item in enumerate(items):
            out.append(((i,), {"item": item, "item_index": k}))
    return out


EXPLODE = Operator(
    name="explode",
    doc="One row per item of a list field (SQL UNNEST): adds `item` and `item_index` (0-based); a null or "
        "empty list gives no row. Rename with -> (explode(drafts, field=questions) -> question, question_index).",
    source="SQL UNNEST; Self-Instruct (2022) numbered instruction lists; UniversalNER (2023) per-type turns",
    options=options(Option("field", KIND_FIELD, None, doc="the list field to explode (required)")),
    outputs=(OutputField("item", "any", "one item of the list"), OutputField("item_index", "int", "its 0-based position")),
    uses_model=False, apply=_explode_apply, takes_context=True,
)


# -------------------------------------------------------------------- group
def group_key_fields(by: Any) -> list[tuple[str, Any]]:
    """The output key fields of ``group(by=...)``: a name keeps its name, a list of names each, else ``key``."""
    if by is None:
        return []
    if isinstance(by, ast.Name):
        return [(by.id, by)]
    if isinstance(by, ast.ListExpr) and by.items and all(isinstance(i, ast.Name) for i in by.items):
        return [(i.id, i) for i in by.items]  # type: ignore[union-attr]
    return [("key", by)]


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return ("__list__", tuple(_hashable(x) for x in v))
    if isinstance(v, dict):
        return ("__dict__", tuple(sorted((k, _hashable(x)) for k, x in v.items())))
    return v


def aggregate(fn: str, values: list[Any], n_rows: int) -> Any:
    """One aggregate over a group's values (SQL semantics: nulls are skipped except by ``list``).

    Args:
        fn: a name in :data:`AGGREGATES`.
        values: the argument evaluated on each member row (empty for ``count()``).
        n_rows: the group's row count (``count()`` without an argument).
    """
    if fn == "list":
        return list(values)
    vals = [v for v in values if v is not None]
    if fn == "count":
        return len(vals) if values or n_rows == 0 else n_rows
    if fn == "first":
        return vals[0] if vals else None
    if not vals:
        return None
    if fn == "any":
        return any(bool(v) for v in vals)
    if fn == "all":
        return all(bool(v) for v in vals)
    if fn == "min":
        return min(vals)
    if fn == "max":
        return max(vals)
    nums = [float(v) if isinstance(v, bool) else v for v in vals]
    if not all(isinstance(v, (int, float)) for v in nums):
        return None
    total = math.fsum(nums)
    if fn == "sum":
        return int(total) if all(isinstance(v, int) for v in vals) else total
    return total / len(nums)  # mean


def _group_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    keys = group_key_fields(opts.get("by"))
    groups: dict[Any, list[int]] = {}
    key_vals: dict[Any, list[Any]] = {}
    for i, r in enumerate(rows):
        kv = [_eval(e, r, ctx) for _, e in keys]
        h = tuple(_hashable(v) for v in kv)
        groups.setdefault(h, []).append(i)
        key_vals.setdefault(h, kv)
    out: Out = []
    for h, members in groups.items():  # first-seen order of keys
        fields = {name: v for (name, _), v in zip(keys, key_vals[h], strict=True)}
        for name, call in _free(opts):
            arg = call.args[0].value if call.args else None
            values = [_eval(arg, rows[i], ctx) for i in members] if arg is not None else []
            fields[name] = aggregate(call.func, values, len(members))
        out.append((tuple(members), fields))
    return out


GROUP = Operator(
    name="group",
    doc="One row per key (SQL GROUP BY): group(rows, by=question, n=count(), accuracy=mean(probe_correct), "
        "answers=list(final_answer)). `by` is a field, a list of fields, or an expression (then the field is `key`); "
        "without `by` the whole input is one group. Aggregates: count() count(x) sum mean min max any all list first; "
        "nulls are skipped except by list. Every member row is a lineage parent of its group's row.",
    source="SQL GROUP BY; per-draft accuracy in ARTE (2024) and LbT (2024); distractors per question",
    options=options(Option("by", KIND_EXPR, None, doc="the group key: a field, [field, ...] or an expression")),
    outputs=(), uses_model=False, apply=_group_apply, takes_context=True, inherit=False,
    extra={"free": "aggregate"},
)


# --------------------------------------------------------------------- pair
def _pair_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    groups: dict[Any, list[int]] = defaultdict(list)
    siblings = sibling_groups(ctx.row_ids, ctx.lineage(list(ctx.row_ids))) \
        if opts.get("key") is None and ctx.lineage is not None else [str(i) for i in range(len(rows))]
    for i, r in enumerate(rows):
        if opts.get("key") is not None:
            k = _hashable(_eval(opts["key"], r, ctx))
            if k is None:
                continue  # a null key pairs with nothing
        else:
            k = siblings[i]
        groups[k].append(i)
    f = opts["field"]
    margin = float(opts.get("margin") or 0.0)
    every = opts.get("mode") == "all"
    out: Out = []
    for members in groups.values():
        scored = []
        for i in members:
            s = _eval(opts["rank"], rows[i], ctx)
            if s is None or not isinstance(s, (int, float)):
                continue
            scored.append((float(s), i))
        if len(scored) < 2:
            continue
        scored.sort(key=lambda t: (-t[0], t[1]))  # best first; ties keep input order
        cands = [(a, b) for x, a in enumerate(scored) for b in scored[x + 1:]] if every else [(scored[0], scored[-1])]
        for (sa, a), (sb, b) in cands:
            if sa - sb > margin or (margin == 0 and sa > sb):
                out.append(((a, b), {"chosen": rows[a].get(f), "rejected": rows[b].get(f),
                                     "chosen_score": sa, "rejected_score": sb}))
    return out


PAIR = Operator(
    name="pair",
    doc="(chosen, rejected) preference pairs among sibling rows (default: the n samples of one row, found through "
        "lineage, also after 1:1 steps such as derive or verify) or rows sharing a "
        "`key`, ranked by `rank` (true > false, higher scores first). mode=\"best_worst\" (default) makes one pair per "
        "group, best against worst; mode=\"all\" makes every pair whose ranks differ by more than `margin`. Output rows "
        "keep the chosen row's fields; both rows are lineage parents. Rows whose rank is null are left out.",
    source="DPO (Rafailov et al., 2023) preference data from n verified samples; RLAIF-style best-vs-worst pairs",
    options=options(
        Option("rank", KIND_EXPR, None, doc="the ranking expression (required), e.g. verified or score"),
        Option("field", KIND_FIELD, None, doc="the field whose values become `chosen` and `rejected` (required)"),
        Option("key", KIND_EXPR, None, doc="pair rows with the same key (default: rows with the same parent)"),
        Option("mode", KIND_CHOICE, "best_worst", choices=("best_worst", "all"), doc="one pair per group, or every pair"),
        Option("margin", KIND_FLOAT, 0.0, doc="chosen must outrank rejected by more than this"),
    ),
    outputs=(OutputField("chosen", "str", "the better row's `field`"), OutputField("rejected", "str", "the worse row's `field`"),
             OutputField("chosen_score", "float", "the chosen row's rank"),
             OutputField("rejected_score", "float", "the rejected row's rank")),
    uses_model=False, apply=_pair_apply, takes_context=True, extra={"needs_lineage": True},
)


# --------------------------------------------------------------------- join
def _join_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    other = opts["with"]
    right = ctx.nodes.get(other, [])
    prefix = opts.get("prefix") or "right_"
    left_fields = set().union(*(r.keys() for r in rows)) if rows else set()
    matches: dict[int, list[int]] = defaultdict(list)
    if opts.get("on") is not None:
        r_on = opts.get("right_on") if opts.get("right_on") is not None else opts["on"]
        index: dict[Any, list[int]] = defaultdict(list)
        for j, r in enumerate(right):
            k = _eval(r_on, r, ctx)
            if k is not None:
                index[_hashable(k)].append(j)
        for i, r in enumerate(rows):
            k = _eval(opts["on"], r, ctx)
            if k is not None:
                matches[i] = index.get(_hashable(k), [])
    else:  # common ancestry: both rows descend from (or are) one common row
        ids = ctx.node_ids.get(other, [])
        up = ctx.lineage(list(ctx.row_ids) + list(ids)) if ctx.lineage is not None else {}
        by_anc: dict[str, list[int]] = defaultdict(list)
        for j, rid in enumerate(ids):
            for a in ancestors(up, rid):
                by_anc[a].append(j)
        for i, rid in enumerate(ctx.row_ids):
            near: set[int] = set()
            for a in ancestors(up, rid):
                near.update(by_anc.get(a, ()))
            matches[i] = sorted(near)
    left_join = opts.get("how") == "left"
    right_names = sorted(set().union(*(r.keys() for r in right))) if right else []
    out: Out = []
    for i in range(len(rows)):
        found = matches.get(i, [])
        for j in found:
            out.append(((i, (other, j)), {(prefix + k if k in left_fields else k): v for k, v in right[j].items()}))
        if not found and left_join:
            out.append(((i,), {(prefix + k if k in left_fields else k): None for k in right_names}))
    return out


JOIN = Operator(
    name="join",
    doc="Rows of the input matched with rows of `with` (another source or step): on a key expression `on` "
        "(evaluated on both sides, or `right_on` on the other side), or, without `on`, on common ancestry (the two "
        "rows descend from one common row, such as the same seed). how=\"inner\" (default) keeps matches only; "
        "how=\"left\" also keeps an unmatched input row with the other side's fields null. A field of the other side "
        "whose name the input already has is renamed with `prefix` (default right_). Both rows are lineage parents.",
    source="SQL JOIN; RevThink (2024) forward/backward consistency; the product brief's join(correct, back_ans)",
    options=options(
        Option("with", KIND_NODE, None, doc="the other source or step (required)"),
        Option("on", KIND_EXPR, None, doc="the join key, evaluated on both sides (default: common ancestry)"),
        Option("right_on", KIND_OTHER_EXPR, None, doc="the key on the other side, when it differs from `on`"),
        Option("how", KIND_CHOICE, "inner", choices=("inner", "left"), doc="inner or left join"),
        Option("prefix", KIND_STR, "right_", doc="prefix for the other side's fields whose names clash"),
    ),
    outputs=(), uses_model=False, apply=_join_apply, takes_context=True,
    extra={"needs_lineage": True},
)


# -------------------------------------------------------------------- union
def _union_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    other = opts["with"]
    right = ctx.nodes.get(other, [])
    names = list(dict.fromkeys([k for r in rows for k in r] + [k for r in right for k in r]))
    out: Out = [((i,), {k: r.get(k) for k in names}) for i, r in enumerate(rows)]
    out += [(((other, j),), {k: r.get(k) for k in names}) for j, r in enumerate(right)]
    return out


UNION = Operator(
    name="union",
    doc="The rows of the input followed by the rows of `with` (SQL UNION ALL BY NAME): a field only one side has "
        "is null on the other side's rows; a field both sides have must have one type. Each row keeps its own lineage.",
    source="SQL UNION ALL BY NAME",
    options=options(Option("with", KIND_NODE, None, doc="the other source or step (required)")),
    outputs=(), uses_model=False, apply=_union_apply, takes_context=True, inherit=False,
)

RELATIONAL = (DERIVE, EXPLODE, GROUP, PAIR, JOIN, UNION)
REQUIRED: dict[str, tuple[str, ...]] = {"explode": ("field",), "pair": ("rank", "field"), "join": ("with",), "union": ("with",)}
