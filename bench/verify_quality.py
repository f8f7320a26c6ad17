"""Precision and recall of ``verify`` (mode=gold) per answer type, with planted errors built from the shipped data.

Types (each run through the real operator with ``answer_type`` set, and reported apart):

* ``number`` — GSM8K test golds, the variants below (must stay at 1.0);
* ``choice`` — each GSM8K test question turned into a 4-option question (gold value at a seeded letter);
  accept ``B``, ``(B)``, ``b``, ``B) <value>``, "The answer is (B)."; reject every other letter in the same forms
  and "The answer is (C), not (B).";
* ``yesno_bool`` — "Is the answer to this problem N?" for the gold N (gold True) and a wrong N (gold False),
  as bool golds; accept yes/Yes./True/"The answer is yes. There is no doubt about it." when they match, reject the
  opposite in the same forms; ``yesno_text`` — the same with "yes"/"no" string golds, plus the Self-Instruct seed
  tasks whose human answer starts with Yes/No;
* ``label`` — BANKING77 test intents; accept the label, ``Card arrival``, ``CARD-ARRIVAL``; reject the label
  nearest by spelling and a seeded other label;
* ``text`` — short Self-Instruct seed answers (<= 12 words); accept case, trailing period, a leading "The",
  doubled spaces; reject another task's answer, a dropped content word and a changed content word.

Builds, from each gold answer of the GSM8K test split shipped in
recipes/data/gsm8k/test.jsonl:

* equivalent variants that verify must accept: ``1,000`` vs ``1000`` (golds of
  4+ digits), a fraction for a decimal (for each odd gold g, gold g/2 = ``8.5``
  against ``17/2``) and ``2g/2`` for integer golds, ``$18``, ``18.0``, and a trailing sentence after the number;
* planted wrong answers that it must reject: a changed number, off by one
  (both ways), two digits swapped, and the right number in the wrong place
  (the gold appears, but the stated final answer is another number), and a wrong
  fraction for a decimal gold.

It runs the real operator (``synthlang.ops.core._verify_apply`` through the
registry) and writes precision, recall and counts per variant kind to
bench/results/verify_quality.json. Target: precision >= 0.99, recall >= 0.99.

Usage: python bench/verify_quality.py [--limit N]  (N limits the GSM8K-based sets)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from fractions import Fraction
from pathlib import Path

from synthlang.expr import final_number
from synthlang.ops import OPERATORS

REPO = Path(__file__).resolve().parents[1]


def _fmt(x: float | int) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def variants(g: float | int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(equivalent variants, wrong answers) for one gold number, each as (kind, text)."""
    s = _fmt(g)
    good: list[tuple[str, str]] = [("currency", f"${s}"), ("trailing_sentence", f"The answer is {s}. That is the final total.")]
    if float(g).is_integer():
        good.append(("decimal_point", f"{s}.0"))
        good.append(("fraction", f"{2 * int(g)}/2"))
        if abs(g) >= 1000:
            good.append(("thousands", f"{int(g):,}"))
    else:
        fr = Fraction(str(g)).limit_denominator(1000)
        good.append(("fraction", f"{fr.numerator}/{fr.denominator}"))
    bad: list[tuple[str, str]] = [("changed_number", _fmt(g + 7 if g != -7 else g + 8)), ("off_by_one_up", _fmt(g + 1)),
                                  ("off_by_one_down", _fmt(g - 1)),
                                  ("wrong_place", f"She started with {s} and gave some away, so the answer is {_fmt(g + 3)}.")]
    digits = str(int(abs(g))) if float(g).is_integer() else ""
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            sw = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
            bad.append(("swapped_digits", ("-" if g < 0 else "") + str(int(sw))))
            break
    return good, bad


def _numeric_rows(golds: list) -> tuple[list[dict], list[str], list[bool]]:
    rows, kinds, expect = [], [], []
    for g in golds:
        if float(g).is_integer() and int(g) % 2:
            # a fractional gold: g/2 written as a decimal (8.5) must equal the fraction "17/2", not "18/2"
            half = int(g) / 2
            rows += [{"gold": half, "final_answer": f"{int(g)}/2"}, {"gold": half, "final_answer": f"{int(g) + 2}/2"}]
            kinds += ["decimal_vs_fraction", "wrong_fraction"]
            expect += [True, False]
        good, bad = variants(g)
        for kind, text in good:
            rows.append({"gold": g, "final_answer": text})
            kinds.append(kind)
            expect.append(True)
        for kind, text in bad:
            rows.append({"gold": g, "final_answer": text})
            kinds.append(kind)
            expect.append(False)
    return rows, kinds, expect


def _choice_rows(golds: list) -> tuple[list[dict], list[str], list[bool]]:
    rows, kinds, expect = [], [], []
    for i, g in enumerate(golds):
        rng = random.Random(i)
        letters = "ABCD"
        right = letters[rng.randrange(4)]
        opts = {right: _fmt(g)}
        distract = [_fmt(g + 1), _fmt(g * 2 if g else 5), _fmt(g + 10)]
        for L in letters:
            if L not in opts:
                opts[L] = distract.pop()
        for L in letters:
            ok = L == right
            for kind, text in (("letter", L), ("parenthesised", f"({L})"), ("lower_case", L.lower()),
                               ("letter_and_option", f"{L}) {opts[L]}"), ("sentence", f"The answer is ({L}).")):
                rows.append({"gold": right, "final_answer": text})
                kinds.append(kind if ok else f"wrong_{kind}")
                expect.append(ok)
        other = next(L for L in letters if L != right)
        rows.append({"gold": right, "final_answer": f"The answer is ({other}), not ({right})."})
        kinds.append("wrong_then_right_mentioned")
        expect.append(False)
    return rows, kinds, expect


_YES_FORMS = (("word", "{w}"), ("capitalised", "{W}."), ("true_false", "{tf}"),
              ("adversarial_sentence", "The answer is {w}. There is no doubt about it."))


def _yesno_rows(golds: list, as_bool: bool) -> tuple[list[dict], list[str], list[bool]]:
    rows, kinds, expect = [], [], []
    claims = [True, False] * len(golds)
    if not as_bool:
        for line in (REPO / "recipes" / "data" / "self_instruct_seed" / "seed_tasks.jsonl").read_text().splitlines():
            out = json.loads(line)["instances"][0]["output"].strip()
            first = out.split()[0].strip(",.!").lower() if out else ""
            if first in ("yes", "no"):
                claims.append(first == "yes")
    for truth in claims:
        gold: object = truth if as_bool else ("yes" if truth else "no")
        for said in (True, False):
            w = "yes" if said else "no"
            for kind, form in _YES_FORMS:
                text = form.format(w=w, W=w.capitalize(), tf="True" if said else "False")
                rows.append({"gold": gold, "final_answer": text})
                kinds.append(kind if said == truth else f"wrong_{kind}")
                expect.append(said == truth)
    return rows, kinds, expect


def _label_rows() -> tuple[list[dict], list[str], list[bool]]:
    import csv
    import difflib

    labels = json.loads((REPO / "recipes" / "data" / "banking77" / "categories.json").read_text())
    rows, kinds, expect = [], [], []
    with open(REPO / "recipes" / "data" / "banking77" / "test.csv", encoding="utf-8", newline="") as fh:
        golds = [r["category"] for r in csv.DictReader(fh)]
    for i, g in enumerate(golds):
        for kind, text in (("exact", g), ("spaces_and_case", g.replace("_", " ").capitalize()),
                           ("upper_hyphen", g.upper().replace("_", "-"))):
            rows.append({"gold": g, "final_answer": text})
            kinds.append(kind)
            expect.append(True)
        near = difflib.get_close_matches(g, [x for x in labels if x != g], n=1, cutoff=0.0)[0]
        other = random.Random(i).choice([x for x in labels if x != g])
        for kind, text in (("nearest_label", near), ("other_label", other)):
            rows.append({"gold": g, "final_answer": text})
            kinds.append(kind)
            expect.append(False)
    return rows, kinds, expect


_STOP = {"a", "an", "the", "of", "to", "and", "or", "in", "on", "is", "are", "for", "with", "by", "at", "as", "it"}


def _text_rows() -> tuple[list[dict], list[str], list[bool]]:
    answers = []
    for line in (REPO / "recipes" / "data" / "self_instruct_seed" / "seed_tasks.jsonl").read_text().splitlines():
        for inst in json.loads(line)["instances"]:
            out = " ".join(inst["output"].split())
            if 0 < len(out.split()) <= 12 and any(ch.isalpha() for ch in out):
                answers.append(out)
    answers = list(dict.fromkeys(answers))
    rows, kinds, expect = [], [], []
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    for i, g in enumerate(answers):
        body = g.rstrip(".")
        for kind, text in (("case", g.upper()), ("trailing_period", body + "."), ("leading_article", "The " + body),
                           ("double_spaces", g.replace(" ", "  "))):
            rows.append({"gold": g, "final_answer": text})
            kinds.append(kind)
            expect.append(True)
        other = answers[(i + 1 + random.Random(i).randrange(len(answers) - 1)) % len(answers)]
        if norm(other) != norm(g):
            rows.append({"gold": g, "final_answer": other})
            kinds.append("other_answer")
            expect.append(False)
        words = g.split()
        content = [j for j, w in enumerate(words) if any(ch.isalnum() for ch in w) and w.lower().strip(".,") not in _STOP]
        if len(words) >= 2 and content:
            j = content[-1]
            rows.append({"gold": g, "final_answer": " ".join(words[:j] + words[j + 1:])})
            kinds.append("dropped_word")
            expect.append(False)
        if content:
            j = content[0]
            rows.append({"gold": g, "final_answer": " ".join(words[:j] + ["banana"] + words[j + 1:])})
            kinds.append("changed_word")
            expect.append(False)
    return rows, kinds, expect


def _score(rows: list[dict], kinds: list[str], expect: list[bool], answer_type: str) -> dict:
    op = OPERATORS["verify"]
    opts = {name: o.default for name, o in op.options.items()}
    opts["answer_type"] = answer_type
    t0 = time.perf_counter()
    out = op.run_apply(rows, opts)
    secs = time.perf_counter() - t0
    got = [fields["verified"] for _, fields in out]
    tp = sum(1 for e, v in zip(expect, got, strict=True) if e and v)
    fp = sum(1 for e, v in zip(expect, got, strict=True) if not e and v)
    fn = sum(1 for e, v in zip(expect, got, strict=True) if e and not v)
    per: dict[str, dict[str, int]] = {}
    for k, e, v in zip(kinds, expect, got, strict=True):
        d = per.setdefault(k, {"n": 0, "correct": 0, "must_accept": int(e)})
        d["n"] += 1
        d["correct"] += int(e == v)
    errors = [{"gold": r["gold"], "pred": r["final_answer"], "kind": k, "expected": e}
              for r, k, e, v in zip(rows, kinds, expect, got, strict=True) if e != v][:30]
    return {
        "pairs": len(rows), "precision": round(tp / (tp + fp), 5) if tp + fp else None,
        "recall": round(tp / (tp + fn), 5) if tp + fn else None, "true_accepts": tp, "false_accepts": fp,
        "false_rejects": fn, "seconds": round(secs, 2), "per_kind": per, "first_errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="GSM8K gold answers to use (0 = all 1319)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "verify_quality.json"))
    args = ap.parse_args()
    golds = []
    with open(REPO / "recipes" / "data" / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        for line in f:
            g = final_number(json.loads(line)["answer"])
            if g is not None:
                golds.append(g)
    if args.limit:
        golds = golds[: args.limit]
    sets = {
        "number": (_numeric_rows(golds), "number"),
        "choice": (_choice_rows(golds), "choice"),
        "yesno_bool": (_yesno_rows(golds, True), "yesno"),
        "yesno_text": (_yesno_rows(golds, False), "yesno"),
        "label": (_label_rows(), "label"),
        "text": (_text_rows(), "text"),
    }
    per_type = {name: _score(*data, kind) for name, (data, kind) in sets.items()}
    num = per_type["number"]
    result = {
        # the numeric figures stay at the top level, as before
        "golds": len(golds), **{k: num[k] for k in ("pairs", "precision", "recall", "true_accepts", "false_accepts",
                                                     "false_rejects", "seconds", "per_kind", "first_errors")},
        "per_type": {k: {x: v[x] for x in ("pairs", "precision", "recall", "false_accepts", "false_rejects", "seconds",
                                            "per_kind", "first_errors")} for k, v in per_type.items()},
        "target": {"precision": 0.99, "recall": 0.99, "number": 1.0},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: {x: v[x] for x in ("pairs", "precision", "recall", "false_accepts", "false_rejects")}
                      for k, v in per_type.items()}))


if __name__ == "__main__":
    main()
