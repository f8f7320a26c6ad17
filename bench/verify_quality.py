"""Precision and recall of ``verify`` (mode=gold) on GSM8K gold answers.

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

Usage: python bench/verify_quality.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="gold answers to use (0 = all 1319)")
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
    op = OPERATORS["verify"]
    opts = {name: o.default for name, o in op.options.items()}
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
    result = {
        "golds": len(golds), "pairs": len(rows), "precision": round(tp / (tp + fp), 5) if tp + fp else None,
        "recall": round(tp / (tp + fn), 5) if tp + fn else None, "true_accepts": tp, "false_accepts": fp,
        "false_rejects": fn, "seconds": round(secs, 2), "per_kind": per, "first_errors": errors,
        "target": {"precision": 0.99, "recall": 0.99},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("golds", "pairs", "precision", "recall", "false_accepts", "false_rejects", "seconds")}))


if __name__ == "__main__":
    main()
