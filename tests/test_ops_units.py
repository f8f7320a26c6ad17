"""Fast unit tests of the operators' pure functions on real GSM8K, BANKING77 and Self-Instruct rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from synthlang.expr import final_number
from synthlang.ops import OPERATORS
from synthlang.ops.base import RowContext, RowFailure
from synthlang.ops.core import extract_answer
from synthlang.ops.methods import (
    SELF_INSTRUCT_BLOCKLIST,
    choose_strategy,
    evolution_failure,
    match_label,
    mean_token_confidence,
    self_instruct_filter,
    sequence_confidence,
)
from synthlang.ops.rowops import response_failure
from synthlang.ops.textsim import rouge_l

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data"


def _gsm(n: int = 30, split: str = "train_first1000") -> list[dict]:
    rows = []
    with open(DATA / "gsm8k" / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            r["gold"] = final_number(r["answer"])
            rows.append(r)
            if len(rows) >= n:
                break
    return rows


def _banking(n: int = 40) -> list[dict]:
    with open(DATA / "banking77" / "test.csv", encoding="utf-8", newline="") as f:
        return [r for _, r in zip(range(n), csv.DictReader(f), strict=False)]


LABELS = json.loads((DATA / "banking77" / "categories.json").read_text())


def _opts(name: str, **over):
    op = OPERATORS[name]
    if op.select is not None:
        op = op.select({**{k: o.default for k, o in op.options.items()}, **over})
    return op, {**{k: o.default for k, o in op.options.items()}, **over}


def test_verify_gold_accepts_the_gsm8k_reasoning_and_rejects_others():
    rows = _gsm()
    op, opts = _opts("verify", field="answer")
    out = op.run_apply(rows, opts)
    assert all(f["verified"] for _, f in out)            # the gold reasoning ends in '#### N'
    wrong = [{**r, "answer": f"The answer is {r['gold'] + 1}."} for r in rows]
    assert not any(f["verified"] for _, f in op.run_apply(wrong, opts))


def test_verify_majority_groups_siblings_by_parent():
    op, opts = _opts("verify", mode="majority", field="final_answer")
    rows = [{"final_answer": a} for a in ("18", "$18", "17", "3", "3")]
    ctx = RowContext(parent_ids=[("p1",), ("p1",), ("p1",), ("p2",), ("p2",)])
    out = op.run_apply(rows, opts, ctx)
    assert [f["verified"] for _, f in out] == [True, True, False, True, True]
    assert out[0][1]["vote_share"] == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.parametrize("text,mode,want", [
    ("so the total is \\boxed{42}.", "boxed", "42"),
    ("Comparing the options, the answer is (C).", "choice", "C"),
    ("Let me think. No, it is not. So: yes", "yesno", "yes"),
    ("Janet makes 9 * 2 = 18.\nThe answer is 18.", "number", 18),
])
def test_extract_answer_modes(text, mode, want):
    assert extract_answer(text, mode) == want


def test_self_instruct_filters_on_real_seed_tasks():
    seeds = [json.loads(x) for x in (DATA / "self_instruct_seed" / "seed_tasks.jsonl").read_text().splitlines()[:50]]
    kept = [s for s in seeds if self_instruct_filter(s["instruction"]) is None]
    assert len(kept) >= 40        # human seed tasks mostly pass
    assert self_instruct_filter("Draw a picture of a cat") is not None
    assert self_instruct_filter("Sum these.") == "fewer than 4 words"
    assert self_instruct_filter(" ".join(["word"] * 151)) == "more than 150 words"
    assert "image" in SELF_INSTRUCT_BLOCKLIST


def test_rouge_l_matches_the_reference_definition():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 tokens; P = 5/6, R = 5/6
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("a b", "c d") == 0.0


def test_dedup_modes_on_gsm8k():
    rows = _gsm(20)
    dup = rows + [{**rows[0], "question": rows[0]["question"].upper() + " "}]
    for mode in ("exact", "minhash", "rouge"):
        op, opts = _opts("dedup", mode=mode, field="question")
        kept = op.run_apply(dup, opts, RowContext())
        assert len(kept) == 20, mode
    # against a pool: rows already in the pool go
    op, opts = _opts("dedup", mode="rouge", field="question", threshold=0.95, against="pool")
    kept = op.run_apply(rows[:5], opts, RowContext(nodes={"pool": rows[:3]}))
    assert [i for (i,), _ in kept] == [3, 4]


def test_decontaminate_drops_test_split_rows_and_keeps_train_rows():
    op, opts = _opts("decontaminate", field="question")
    ctx = RowContext(base_dir=DATA.parent)
    assert op.run_apply(_gsm(20, "test"), opts, ctx) == []
    kept = op.run_apply(_gsm(20), opts, ctx)
    assert len(kept) >= 19


def test_select_quota_topk_and_weighted_sample_are_deterministic():
    from synthlang import ast

    rows = _banking(40)
    op, opts = _opts("select", per="category", quota=2)
    out = op.run_apply(rows, opts, RowContext())
    cats = [rows[i]["category"] for (i,), _ in out]
    assert all(cats.count(c) <= 2 for c in cats)
    w = ast.Call("len", (ast.Arg(None, ast.Name("text")),))
    op, opts = _opts("select", sample=5, weight=w, seed=3)
    a = op.run_apply(rows, opts, RowContext())
    b = op.run_apply(rows, opts, RowContext())
    assert a == b and len(a) == 5


def test_label_matching_and_confidence_on_banking77():
    assert match_label("card_arrival", LABELS) == "card_arrival"
    assert match_label("The intent is: Card Arrival.", LABELS) == "card_arrival"
    assert match_label("zzz", LABELS) is None
    assert sequence_confidence([-0.1, -0.2]) == pytest.approx(0.7408, abs=1e-4)
    assert mean_token_confidence([-0.1, -0.3]) == pytest.approx(0.8187, abs=1e-4)
    op = OPERATORS["label"]
    row = {**_banking(1)[0], "labels": LABELS}
    out = op.post(row, "card_arrival", {"mode": "class", "field": "text"}, [-0.05, -0.05])
    assert out["label"] == "card_arrival" and 0.9 < out["label_confidence"] < 0.91
    with pytest.raises(RowFailure):
        op.post(row, "no idea", {"mode": "class", "field": "text"}, None)


def test_label_spans_schema_and_grounding():
    op, opts = _opts("label", mode="spans", entity_types=["card", "money"], max_items=3)
    schema = op.json_schema(opts)
    assert schema["properties"]["entities"]["items"]["properties"]["type"]["enum"] == ["card", "money"]
    assert schema["properties"]["entities"]["maxItems"] == 3          # a small model cannot loop to max_tokens
    row = {"text": "My card was charged 5 dollars twice."}
    reply = json.dumps({"entities": [{"text": "card", "type": "card"}, {"text": "a spaceship", "type": "card"}]})
    out = op.post(row, reply, opts, None)
    assert out["entities"] == [{"text": "card", "type": "card"}]
    assert [o.name for o in op.outputs] == ["entities", "label_confidence"]


def test_probe_correctness_on_gsm8k_and_banking77():
    op = OPERATORS["probe"]
    g = _gsm(1)[0]
    out = op.post({**g, "labels": []}, f"Work... The answer is {g['gold']}.", {"gold": "gold", "extract": "number"}, [-0.2] * 4)
    assert out["probe_correct"] and out["probe_confidence"] == pytest.approx(0.8187, abs=1e-4)
    b = _banking(1)[0]
    out = op.post({**b, "labels": LABELS}, "card_linking", {"gold": "category"}, [-1.0])
    assert out["probe_answer"] == "card_linking" and not out["probe_correct"]


def test_judge_parses_structured_output():
    op, opts = _opts("judge", mode="score", scale=10)
    assert op.post({}, '{"score": 7, "reason": "ok"}', opts)["score"] == 7.0
    pw, pw_opts = _opts("judge", mode="pairwise")
    assert pw.post({}, '{"winner": "B", "reason": "r"}', pw_opts) == {"winner": "B", "judge_reason": "r"}
    assert op.json_schema({**opts, "scale": 5})["properties"]["score"]["maximum"] == 5


def test_evolution_elimination_rules():
    q = _gsm(1)[0]["question"]
    assert evolution_failure(q, q.upper()) == "no change from the parent prompt"
    assert evolution_failure(q, "ok") == "near-empty evolved prompt"
    assert "leaks" in evolution_failure(q, "#Rewritten Prompt#: " + q + " with a twist")
    assert evolution_failure(q, q + " Answer in exactly three sentences.") is None
    assert response_failure("Sorry, as an AI I cannot help.") == "apology or refusal"
    assert response_failure("...") == "near-empty response"


def test_evolve_methods_are_seeded_per_round():
    op, opts = _opts("evolve", field="question")
    rows = _gsm(10)
    a = op.prepare(rows, opts, RowContext(round=0))
    assert a == op.prepare(rows, opts, RowContext(round=0))
    assert a != op.prepare(rows, opts, RowContext(round=1))


def test_new_question_few_shot_and_filters():
    op, opts = _opts("new_question", field="question", k=3)
    rows = _gsm(6)
    ex = op.prepare(rows, opts, RowContext())
    assert all(len(e["examples"]) == 3 and e["examples"][0] == r["question"] for e, r in zip(ex, rows, strict=True))
    with pytest.raises(RowFailure):
        op.post({**rows[0], **ex[0]}, rows[0]["question"], opts)          # copies its example
    out = op.post({**rows[0], **ex[0]}, "New problem: A farmer has 12 cows and buys 5 more. How many cows now?", opts)
    assert out == {"question": "A farmer has 12 cows and buys 5 more. How many cows now?"}


def test_strategy_thresholds_and_budget_split():
    assert choose_strategy(50, 100) == "answer_augmentation"
    assert choose_strategy(400, 100) == "question_rephrase"
    assert choose_strategy(1000, 100) == "new_question"
    assert choose_strategy(1000, 100, high=20) == "question_rephrase"
    # the budget counts answer calls too: 7 queries over 3 seeds -> rephrase, 3 items of 2 calls (write + answer)
    op, opts = _opts("strategy", budget=7)
    plan = op.prepare(_gsm(3), opts, RowContext())
    assert [p["__n__"] for p in plan] == [1, 1, 1] and plan[0]["strategy"] == "question_rephrase"
    op, opts = _opts("strategy", budget=5)
    plan = op.prepare(_gsm(3), opts, RowContext())
    assert [p["__n__"] for p in plan] == [2, 2, 1] and plan[0]["strategy"] == "answer_augmentation"


def test_curriculum_escalates_per_round_and_balances_tasks():
    from synthlang import ast

    rows = [{"score": s, "task": t} for s, t in [(9, "a"), (2, "a"), (5, "a"), (1, "b"), (6, "b"), (3, "b"), (4, "b")]]
    diff = ast.Binary("-", ast.Literal(10), ast.Name("score"))
    op, opts = _opts("curriculum", difficulty=diff, levels=[0, 5], task="task")
    r0 = op.run_apply(rows, opts, RowContext(round=0))
    r1 = op.run_apply(rows, opts, RowContext(round=1))
    assert all(f["difficulty"] >= 5 for _, f in r1) and len(r1) < len(r0)
    tasks0 = [rows[i]["task"] for (i,), _ in r0]
    assert tasks0.count("a") == tasks0.count("b")
    assert [f["difficulty"] for _, f in r0] == sorted(f["difficulty"] for _, f in r0)


def test_report_per_class_on_banking77():
    from synthlang import ast

    rows = [{**r, "ok": i % 2 == 0} for i, r in enumerate(_banking(12))]
    op, opts = _opts("report", by="category", metric=ast.Name("ok"))
    out = op.run_apply(rows, opts, RowContext())
    assert sum(f["class_rows"] for _, f in out) == 12
    assert all(len(idx) == f["class_rows"] for idx, f in out)
    assert not op.inherit
    op2, opts2 = _opts("report", by="category", metric=ast.Name("ok"), per_row=True)
    assert op2.inherit and len(op2.run_apply(rows, opts2, RowContext())) == 12


def test_embedding_dedup_errors_clearly_without_the_extra():
    pytest.importorskip("synthlang")
    try:
        import sentence_transformers  # noqa: F401
        pytest.skip("the embeddings extra is installed")
    except ImportError:
        pass
    from synthlang.errors import ConfigError

    op, opts = _opts("dedup", mode="embedding", field="question")
    with pytest.raises(ConfigError, match="synthlang\\[embeddings\\]"):
        op.run_apply(_gsm(2), opts, RowContext())
