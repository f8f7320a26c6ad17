"""Lineage-safe splits: every example of one seed ancestor lands in the same split.

A seed's rephrasings, answers and samples are near-copies of it; splitting rows independently would
put one in train and another in test, and the test score would measure memorisation. The unit of a
split is therefore the *group* of examples that share a seed ancestor (found by a recursive query
over the ``lineage`` table, :func:`synthlang.outputs.read.seed_ancestors`), as scikit-learn's
``GroupShuffleSplit`` does with explicit groups. Groups are ordered by a seeded hash and cut by the
fractions (largest remainder, every split at least one group when there are enough), within each
stratum when ``stratify=`` names a field (a group's stratum is its first example's value).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from synthlang.outputs.read import Row


@dataclass
class SplitResult:
    """Examples per split, with counts.

    Attributes:
        examples: split name -> examples, input order kept within a split.
        groups: split name -> number of seed-ancestor groups.
        rows: split name -> number of examples.
        ancestors: split name -> the seed ancestor ids (for leakage checks).
    """

    examples: dict[str, list[dict[str, Any]]]
    groups: dict[str, int]
    rows: dict[str, int]
    ancestors: dict[str, set[str]] = field(default_factory=dict)


def _counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    raw = {k: n * f for k, f in fractions.items()}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    if n >= len(fractions):   # no empty split when there are enough groups: take one from the largest
        for k in fractions:
            if out[k] == 0:
                big = max(out, key=lambda x: out[x])
                out[big] -= 1
                out[k] = 1
    return out


def split_examples(examples: list[dict[str, Any]], origin: list[Row], ancestors: dict[str, str],
                   fractions: dict[str, float], stratify: str | None = None, seed: int = 0) -> SplitResult:
    """Split examples by seed ancestor.

    Args:
        examples: the training examples.
        origin: the row each example came from (same length).
        ancestors: row id -> seed ancestor id.
        fractions: split name -> fraction of groups (they add up to 1).
        stratify: a field of the rows; groups are cut per value of it.
        seed: changes which groups land where (same seed, same split).

    Returns:
        A :class:`SplitResult`; no seed ancestor is in two splits.
    """
    group_of = [ancestors.get(r.row_id, r.row_id) for r in origin]
    first: dict[str, int] = {}
    for i, g in enumerate(group_of):
        first.setdefault(g, i)
    strata: dict[str, list[str]] = {}
    for g, i in first.items():
        key = repr(origin[i].data.get(stratify)) if stratify else ""
        strata.setdefault(key, []).append(g)
    where: dict[str, str] = {}
    for _, groups in sorted(strata.items()):
        groups.sort(key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        counts = _counts(len(groups), fractions)
        i = 0
        for name in fractions:
            for g in groups[i:i + counts[name]]:
                where[g] = name
            i += counts[name]
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in fractions}
    anc: dict[str, set[str]] = {k: set() for k in fractions}
    for ex, g in zip(examples, group_of, strict=True):
        out[where[g]].append(ex)
        anc[where[g]].add(g)
    return SplitResult(out, {k: len(v) for k, v in anc.items()}, {k: len(v) for k, v in out.items()}, anc)
