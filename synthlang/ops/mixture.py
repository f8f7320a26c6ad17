"""``mixture``: sample a corpus by group with quotas from weights held in another node (DDK's data side).

``mixture(corpus, weights=gaps, by=domain, key=domain, weight=gap, total=100, transform="softmax",
smoothing=0.5, seed=0)``:

1. one weight per group from the ``weights`` node (its ``key`` field names the group, its ``weight`` field the
   value); a group without a weight row gets none (quota 0) and a negative or non-number weight is an error
   naming the row;
2. the weights become a distribution: ``proportional`` (w / sum w) or ``softmax`` (exp w / sum exp w, DDK's
   domain discrepancy factor over the student/teacher loss ratio);
3. smoothed toward uniform: ``p = smoothing * p + (1 - smoothing) / N`` (DDK's factor-smooth update keeps every
   domain sampled; ``smoothing=1`` turns it off);
4. quotas ``total * p`` rounded by largest remainder (they sum to ``total``), capped by each group's size (a
   short group's surplus is re-dealt to the others in proportion, as long as rows remain);
5. that many rows of each group, drawn without replacement by a seeded hash order (stable across runs; the
   round enters the seed, so a loop re-draws each round).

Adds ``mixture_weight`` (the group's final probability) and ``mixture_quota`` to each kept row. Global: it needs
every row and the whole weights node.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from synthlang.errors import DataError
from synthlang.ops.base import (
    KIND_CHOICE,
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_NODE,
    KIND_STR,
    LOCALITY_GLOBAL,
    Operator,
    Option,
    OutputField,
    RowContext,
    options,
)


def distribution(weights: dict[Any, float], transform: str, smoothing: float) -> dict[Any, float]:
    """Group -> probability from raw weights (``proportional`` or ``softmax``), smoothed toward uniform.

    Args:
        weights: group -> weight (>= 0 for proportional; any real for softmax).
        transform: ``proportional`` or ``softmax``.
        smoothing: alpha in ``alpha * p + (1 - alpha) / N`` (1: no smoothing).

    Returns:
        group -> probability, summing to 1 (uniform when every proportional weight is 0).
    """
    if not weights:
        return {}
    n = len(weights)
    if transform == "softmax":
        m = max(weights.values())
        ex = {g: math.exp(w - m) for g, w in weights.items()}
        z = sum(ex.values())
        p = {g: v / z for g, v in ex.items()}
    else:
        z = sum(weights.values())
        p = {g: (w / z if z > 0 else 1 / n) for g, w in weights.items()}
    return {g: smoothing * v + (1 - smoothing) / n for g, v in p.items()}


def quotas(p: dict[Any, float], sizes: dict[Any, int], total: int) -> dict[Any, int]:
    """Largest-remainder quotas summing to ``min(total, sum sizes)``, each capped by its group's size."""
    quota = {g: 0 for g in p}
    left = min(total, sum(sizes.get(g, 0) for g in p))
    open_ = {g for g in p if sizes.get(g, 0) > 0}
    while left > 0 and open_:
        z = sum(p[g] for g in open_) or 1.0
        share = {g: left * (p[g] / z if z else 1 / len(open_)) for g in open_}
        give = {g: min(int(math.floor(share[g])), sizes[g] - quota[g]) for g in open_}
        rest = left - sum(give.values())
        for g in sorted(open_, key=lambda g: (-(share[g] - math.floor(share[g])), str(g))):
            if rest <= 0:
                break
            if quota[g] + give[g] < sizes[g]:
                give[g] += 1
                rest -= 1
        if sum(give.values()) == 0:
            break
        for g, k in give.items():
            quota[g] += k
        left = min(total, sum(sizes.get(g, 0) for g in p)) - sum(quota.values())
        open_ = {g for g in open_ if quota[g] < sizes[g]}
    return quota


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _mixture_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    node = opts["weights"]
    wrows = ctx.nodes.get(node, [])
    weights: dict[str, float] = {}
    for j, w in enumerate(wrows):
        v = w.get(opts["weight"])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or \
                (opts["transform"] == "proportional" and v < 0):
            raise DataError(f"weight must be a number{' >= 0' if opts['transform'] == 'proportional' else ''}, got {v!r}",
                            f"mixture weights '{node}'", row=j + 1, field=opts["weight"])
        weights[_key(w.get(opts.get("key") or opts["by"]))] = float(v)
    members: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        members[_key(r.get(opts["by"]))].append(i)
    p = distribution({g: weights[g] for g in weights}, opts["transform"], float(opts["smoothing"]))
    q = quotas(p, {g: len(members.get(g, [])) for g in p}, int(opts["total"]))
    seed = f"{opts.get('seed') or 0}:{ctx.round}"
    out: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    for g, k in q.items():
        order = sorted(members.get(g, []), key=lambda i: hashlib.sha256(f"{seed}:{_key(rows[i])}:{i}".encode()).hexdigest())
        for i in sorted(order[:k]):
            out.append(((i,), {"mixture_weight": p[g], "mixture_quota": k}))
    out.sort(key=lambda x: x[0][0])
    return out


MIXTURE = Operator(
    name="mixture",
    doc="Sample rows by group with quotas from weights in another node: weights -> distribution (proportional or "
        "softmax) -> smoothed toward uniform -> largest-remainder quotas of `total` -> a seeded draw per group.",
    source="DDK (Liu et al., 2024): domain-knowledge-guided sampling with factor-smooth updating",
    options=options(
        Option("weights", KIND_NODE, None, doc="the node holding one weight row per group (required)"),
        Option("by", KIND_FIELD, None, doc="the group field of the input rows (required)"),
        Option("key", KIND_STR, None, doc="the group field in the weights node (default: the same name as by)"),
        Option("weight", KIND_STR, "weight", doc="the weight field in the weights node"),
        Option("total", KIND_INT, 100, doc="rows to draw in all (fewer if the groups hold fewer)", range=(0, None)),
        Option("transform", KIND_CHOICE, "proportional", choices=("proportional", "softmax"),
               doc="proportional: w / sum w; softmax: exp(w) / sum exp(w) (DDK's discrepancy factor)"),
        Option("smoothing", KIND_FLOAT, 1.0, doc="alpha of alpha * p + (1 - alpha) / N (1: none; DDK smooths toward "
                                                 "uniform so no domain starves)", range=(0.0, 1.0)),
        Option("seed", KIND_INT, 0, doc="seed of the draw within each group (the loop round is mixed in)", range=(0, None)),
    ),
    outputs=(OutputField("mixture_weight", "float", "the group's final sampling probability"),
             OutputField("mixture_quota", "int", "rows drawn from the group")),
    uses_model=False,
    apply=_mixture_apply,
    takes_context=True,
    locality_=LOCALITY_GLOBAL,
    extra={"required": ("weights", "by"), "node_fields": {"weights": (("weight", "weight"), ("key", "by"))}},
)
