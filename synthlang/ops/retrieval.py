"""``retrieve``: top-k BM25 entries of a knowledge-base node for each row (issue 15, papersb).

NesyCD (Liao et al., 2024, "Neural-Symbolic Collaborative Distillation: Advancing Small Language Models
for Complex Reasoning Tasks") keeps the specialised knowledge a teacher states while solving training
problems in a symbolic knowledge base, and at training and inference time puts the entries retrieved
for a question into the small student's prompt. ``retrieve(rows, with=kb, query=question, text=fact,
k=3)`` does that retrieval: the knowledge-base rows are indexed once with Okapi BM25 (the ``rank-bm25``
package, ``BM25Okapi`` with its defaults k1=1.5, b=0.75, epsilon=0.25; tokens are lower-cased
alphanumeric words, as ``dedup`` uses, less English stop words, as bm25s and Lucene's English analyzer
drop them: with a small knowledge base "in" or "of" would otherwise carry a large idf) and each row's query gets the ``k`` best entries with a
positive score, best first. Each output row has the input row and every retrieved entry as lineage
parents, so ``synth lineage`` shows which facts a prompt used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synthlang import ast
from synthlang.ops.base import (
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_NODE,
    LOCALITY_GLOBAL,
    Operator,
    Option,
    OutputField,
    RowContext,
    options,
)
from synthlang.ops.relational import KIND_OTHER_EXPR, _eval
from synthlang.ops.rowops import STOP_WORDS
from synthlang.ops.textsim import tokens

if TYPE_CHECKING:
    from synthlang.check.checker import _Checker

Index = int | tuple[str, int]
Out = list[tuple[tuple[Index, ...], dict[str, Any]]]


def terms(text: str) -> list[str]:
    """BM25 terms of a text: lower-cased alphanumeric words (``textsim.tokens``) that are not stop words."""
    return [t for t in tokens(text) if t not in STOP_WORDS]


class BM25Index:
    """Okapi BM25 over a list of texts (``rank_bm25.BM25Okapi`` with its defaults).

    Args:
        texts: the documents; an empty or token-less document is kept (it never matches).

    ``top(query, k, min_score)`` gives ``[(doc index, score)]``, best first, ties by index,
    only scores above ``min_score``. An empty corpus, or one with no tokens at all, matches nothing.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        from rank_bm25 import BM25Okapi

        self.docs = [terms(t) for t in texts]
        self.bm25 = BM25Okapi(self.docs) if any(self.docs) else None

    def top(self, query: str, k: int, min_score: float = 0.0) -> list[tuple[int, float]]:
        q = terms(query)
        if self.bm25 is None or not q:
            return []
        scores = self.bm25.get_scores(q)
        ranked = sorted(((float(s), j) for j, s in enumerate(scores) if float(s) > min_score), key=lambda t: (-t[0], t[1]))
        return [(j, s) for s, j in ranked[:k]]


def _retrieve_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    other = opts["with"]
    kb = ctx.nodes.get(other, [])
    texts = []
    for r in kb:
        v = _eval(opts["text"], r, ctx)
        texts.append("" if v is None else str(v))
    index = BM25Index(texts)
    k = int(opts.get("k") or 3)
    floor = float(opts.get("min_score") or 0.0)
    out: Out = []
    for i, r in enumerate(rows):
        q = r.get(opts.get("query") or "question")
        hits = index.top("" if q is None else str(q), k, floor)
        out.append(((i, *((other, j) for j, _ in hits)),
                    {"retrieved": [texts[j] for j, _ in hits], "retrieved_scores": [round(s, 4) for _, s in hits]}))
    return out


def _check_retrieve(ck: _Checker, d: ast.Step, op: Operator, opts: dict[str, Any], fields_in: dict[str, str],
                    free: list[tuple[str, ast.Arg]]) -> dict[str, str] | None:
    """``with`` and ``text`` are required; ``text`` is an expression over the knowledge base's fields."""
    kw = d.op.kw()
    for name in ("with", "text"):
        if name not in kw:
            ck.err(f"retrieve() needs {name}=", d.op.span, code="missing-argument", operator="retrieve", name=name,
                   hint="e.g. step grounded = retrieve(questions, with=kb, query=question, text=fact, k=3)")
            return None
    if opts.get("with") is None:
        return None
    t = ck._check_expr(opts["text"], ck.fields.get(opts["with"], {}))
    if t not in ("str", "any", "json"):
        ck.err(f"retrieve's text must be text, not {t}", kw["text"].value.span, code="type-mismatch",
               expected="str", found=t, hint="convert it: text=str(x)")
    return {"retrieved": "list[str]", "retrieved_scores": "list[float]"}


RETRIEVE = Operator(
    name="retrieve",
    doc="The k entries of a knowledge-base node (`with`) that best match each row's `query` field, by Okapi BM25 "
        "(rank-bm25's BM25Okapi, k1=1.5, b=0.75; lower-cased words less English stop words): `retrieved` (texts, best first) and "
        "`retrieved_scores`. Entries scoring at or below `min_score` (default 0: no shared word) are left out, so a "
        "row may get fewer than k, or none. The input row and each retrieved entry are lineage parents. Reads the "
        "whole `with` node (locality global).",
    source="NesyCD (Liao et al., 2024): questions paired with entries of the teacher-built knowledge base; "
           "BM25 (Robertson & Zaragoza, 2009)",
    options=options(
        Option("with", KIND_NODE, None, doc="the knowledge-base source or step (required)"),
        Option("text", KIND_OTHER_EXPR, None, doc="the entry text, an expression over the knowledge base's fields (required)"),
        Option("query", KIND_FIELD, "question", doc="the field searched with"),
        Option("k", KIND_INT, 3, doc="entries per row, at most", range=(1, None)),
        Option("min_score", KIND_FLOAT, 0.0, doc="keep entries scoring above this"),
    ),
    outputs=(OutputField("retrieved", "list[str]", "the retrieved entries, best first"),
             OutputField("retrieved_scores", "list[float]", "their BM25 scores")),
    uses_model=False, apply=_retrieve_apply, takes_context=True,
    extra={"check": _check_retrieve}, locality_=LOCALITY_GLOBAL,
)
