"""math-verify behind ``ops/mathcheck`` (issue 9's per-row costs): the exact integer path agrees with
math-verify on real GSM8K answers, verdicts are memoised per pair, and a slow comparison is not started twice."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from synthlang.expr import final_number
from synthlang.ops import mathcheck

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data" / "gsm8k" / "train_first1000.jsonl"


def _golds(n: int) -> list[int]:
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines()[:n]:
        g = final_number(json.loads(line)["answer"])
        if type(g) is int:
            out.append(g)
    return out


def test_integer_path_agrees_with_math_verify_on_gsm8k_answers():
    golds = _golds(120)
    assert len(golds) > 100
    pairs = [(g, p) for g in golds for p in (g, g + 1, g - 1, -g, g * 10)] + [(0, 0), (0, -0), (7, 70), (10**14, 10**14 + 1)]
    for g, p in pairs:
        assert mathcheck.equivalent(g, p) is mathcheck._compare(str(g), str(p)), (g, p)


def test_big_ints_and_non_ints_still_go_through_math_verify():
    # 15+ digit ints are left to math-verify's own precision rules; floats, fractions, text always are
    assert mathcheck.equivalent(10**16, 10**16) is True
    assert mathcheck.equivalent(18, 18.0) is True
    assert mathcheck.equivalent(0.5, "1/2") is True
    assert mathcheck.equivalent("$1,000", 1000) is True
    assert mathcheck.equivalent(3, "4") is False


def test_a_pair_is_compared_once_then_answered_from_the_memo(monkeypatch):
    calls = []
    real = mathcheck._compare

    def counting(gold, pred):
        calls.append((gold, pred))
        return real(gold, pred)

    monkeypatch.setattr(mathcheck, "_compare", counting)
    gold, pred = "0.25", "\\frac{1}{4} of the cake"
    mathcheck._memo.pop((gold, pred), None)
    first = mathcheck.equivalent(gold, pred)
    t = time.perf_counter()
    again = [mathcheck.equivalent(gold, pred) for _ in range(200)]
    assert (time.perf_counter() - t) < 0.5   # 200 memo hits, no sympy
    assert first is True and again == [True] * 200
    assert calls == [(gold, pred)]


def test_a_slow_comparison_times_out_and_the_next_ask_waits_on_the_same_thread(monkeypatch):
    started = []
    real = mathcheck._compare

    def slow(gold, pred):
        started.append(threading.current_thread().name)
        time.sleep(0.6)
        return real(gold, pred)

    monkeypatch.setattr(mathcheck, "_compare", slow)
    gold, pred = "2/3", "0.6666667"
    mathcheck._memo.pop((gold, pred), None)
    assert mathcheck.equivalent(gold, pred, timeout_s=0.05) is None   # timed out: counts as a mismatch
    assert mathcheck.equivalent(gold, pred, timeout_s=5.0) is True    # waited on the running comparison
    assert len(started) == 1
    assert mathcheck.equivalent(gold, pred, timeout_s=0.0) is True    # now memoised


@pytest.mark.parametrize("gold,pred", [(None, 1), (1, None)])
def test_a_missing_side_is_not_equal(gold, pred):
    assert mathcheck.equivalent(gold, pred) is False
