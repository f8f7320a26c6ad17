"""Funnel shape of each shipped method recipe (issue 12): which rows each step reads, what it passes on, what the
export holds, and how many calls it makes.

The shipped recipe file runs on the real shipped data, through the real checker, runner and DuckDB store. The
models are scripted engines (the fake engine's idea with per-prompt rules), so each funnel is known exactly; the
real embedded model runs every recipe in tests/test_recipes_real.py.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import duckdb
import pytest

import synthlang
from synthlang.engines.base import Request, Result
from synthlang.expr import final_number

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
GSM = [json.loads(x) for x in (RECIPES / "data/gsm8k/train_first1000.jsonl").read_text().splitlines()[:8]]
GOLD = {r["question"]: final_number(r["answer"]) for r in GSM}


class Scripted:
    """An engine whose reply is ``rule(model_name, prompt, schema)``; counts calls per model."""

    kind = "fake"

    def __init__(self, rule: Callable[[str, str, dict | None], str]) -> None:
        self.rule = rule
        self.calls: Counter[str] = Counter()
        self.model_id = "scripted"

    def for_model(self, spec):
        engine = self

        class _One:
            kind = "fake"
            model_id = "scripted"

            def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
                for req in requests:
                    engine.calls[spec.name] += 1
                    text = engine.rule(spec.name, req.messages[-1]["content"], req.json_schema)
                    yield Result(req.key, text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=10,
                                 latency_s=0.0,
                                 logprobs=engine.logprobs(text + req.messages[-1]["content"]) if req.logprobs is not None else None)

            def close(self) -> None:
                pass

        return _One()

    @staticmethod
    def logprobs(text: str) -> list[float]:
        return [-0.1 * (1 + len(text) % 7)]


def _run(name: str, tmp: Path, rule, params: dict[str, str]) -> tuple[Scripted, duckdb.DuckDBPyConnection]:
    shutil.copytree(RECIPES / "data", tmp / "data")
    shutil.copytree(RECIPES / "templates", tmp / "templates")
    shutil.copy(RECIPES / f"{name}.synth", tmp / f"{name}.synth")
    eng = Scripted(rule)
    prog = synthlang.check_file(tmp / f"{name}.synth", params)
    s = synthlang.run(prog, db=tmp / "db.duckdb", engine_factory=eng.for_model)
    assert s.status == "finished"
    return eng, duckdb.connect(str(tmp / "db.duckdb"), read_only=True)


def _rows(con, step: str, status: str = "ok") -> list[dict]:
    return [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM rows WHERE step = ? AND status = ? ORDER BY row_id", [step, status]).fetchall()]


def _count(con, step: str) -> int:
    return con.execute("SELECT count(*) FROM rows WHERE step = ? AND status = 'ok'", [step]).fetchone()[0]


def _question(prompt: str) -> str | None:
    return next((q for q in GOLD if q in prompt), None)


# ------------------------------------------------------------------ RevThink
def _revthink_rule(model: str, prompt: str, schema) -> str:
    if prompt.startswith("Write a backward version"):
        q = prompt.rsplit("INPUT:", 1)[1].strip()
        leak = " The correct answer is 5." if "Natalia" in q else ""
        return f"Given the total of '{q[:30]}', how many were there at the start?{leak}"
    if "Q1:" in prompt and "A2:" in prompt:
        return "Check: A2 is found in Q1.\nTrue" if "Weng" not in prompt.rsplit("Q1:", 1)[1] else "Check: no.\nFalse"
    q = _question(prompt)
    if q is not None:                                   # forward: right on 3 of 4 seeds
        g = GOLD[q]
        return f"Step by step... The answer is {g if 'Betty' not in q else g + 1}."
    return "Working backwards... The answer is 7."     # backward reasoning


def test_revthink_funnel(tmp_path):
    eng, con = _run("revthink", tmp_path, _revthink_rule, {"limit": "4", "max_tokens": "64"})
    assert _count(con, "forward") == 4
    assert [r["forward_correct"] for r in _rows(con, "forward_checked")].count(True) == 3
    assert _count(con, "correct") == 3 and _count(con, "backward") == 3        # only correct rows are reversed
    backs = [r["backward_question"] for r in _rows(con, "backward")]
    assert not any("correct answer" in b for b in backs)                        # the answer leak is cut off
    assert _count(con, "consistent") == 3 and _count(con, "kept") == 2          # Weng's check says False
    assert eng.calls["teacher"] == 4 + 3 + 3 + 3
    kept = _rows(con, "kept")
    for r in kept:      # the three training views the paper trains on
        assert r["question"] and r["forward_reasoning"] and r["backward_question"] and r["backward_reasoning"]
    plan = synthlang.plan(synthlang.check_file(tmp_path / "revthink.synth", {"limit": "4"}))
    assert next(s for s in plan["steps"] if s["name"] == "forward_checked")["answer_type"] == "number"
    # the three training views the paper's student learns from, as rows: 3 per kept seed
    views = _rows(con, "views")
    assert len(views) == 3 * len(kept)
    by_view = {v: [r for r in views if r["view"] == v] for v in ("forward_reasoning", "backward_question", "backward_reasoning")}
    assert all(len(rows) == len(kept) for rows in by_view.values())
    for k in kept:
        assert any(r["input"] == k["question"] and r["output"] == k["forward_reasoning"] for r in by_view["forward_reasoning"])
        assert any(r["input"].endswith(k["question"]) and r["output"] == k["backward_question"] for r in by_view["backward_question"])
        assert any(r["input"] == k["backward_question"] and r["output"] == k["backward_reasoning"] for r in by_view["backward_reasoning"])
    # the SFT export loads with `datasets` as conversational data
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out/revthink_sft.jsonl"), split="train")
    assert len(ds) == 3 * len(kept)
    assert all([m["role"] for m in msgs] == ["user", "assistant"] and msgs[1]["content"] for msgs in ds["messages"])


# -------------------------------------------------------------- new question
def _nq_rule(model: str, prompt: str, schema) -> str:
    if "Example" in prompt or "example" in prompt and "new" in prompt:
        n = len(prompt) % 7
        return f"A farmer has {n + 3} cows and buys {n + 11} more at the market on Monday. How many cows now?"
    return f"Counting... The answer is {len(prompt) % 3}."


def test_new_question_costs_one_question_and_one_answer_call(tmp_path):
    eng, con = _run("new_question", tmp_path, _nq_rule, {"limit": "3", "max_tokens": "64"})
    written, answered = _count(con, "written"), _count(con, "answered")
    assert written >= 1 and answered == _count(con, "clean")
    assert eng.calls["teacher"] == 3 + answered                     # 1 question call per seed + 1 answer call each
    assert _count(con, "kept") == answered                          # one vote always has a majority


def test_a_one_one_tie_passes_no_majority(tmp_path):
    votes = iter(range(10_000))

    def rule(model, prompt, schema):
        if "Example" in prompt:
            return _nq_rule(model, prompt, schema)
        return f"The answer is {next(votes)}."                     # every vote differs: 1-1 ties

    eng, con = _run("new_question", tmp_path, rule, {"limit": "2", "votes": "2", "max_tokens": "64"})
    assert _count(con, "answered") >= 2 and _count(con, "kept") == 0
    assert all("tie" in r["verify_reason"] for r in _rows(con, "voted"))


# ------------------------------------------------------------ strategy auto
def _strategy_rule(model: str, prompt: str, schema) -> str:
    if prompt.startswith("Rewrite the question"):
        return "In other words: " + (_question(prompt) or "A question about numbers and things?")
    q = _question(prompt)
    return f"Solving... The answer is {GOLD[q] if q else 0}."


@pytest.mark.parametrize("budget,limit,strategy", [(4, 2, "question_rephrase"), (3, 2, "answer_augmentation")])
def test_strategy_budget_counts_every_call(tmp_path, budget, limit, strategy):
    eng, con = _run("strategy_auto", tmp_path, _strategy_rule, {"limit": str(limit), "budget": str(budget), "max_tokens": "64"})
    assert eng.calls["teacher"] <= budget                           # budget=4 used to make 8 calls
    aug = _rows(con, "augmented")
    assert {r["strategy"] for r in aug} == {strategy}
    if strategy == "question_rephrase":
        assert eng.calls["teacher"] == len(aug) + _count(con, "answered") == budget
        assert _count(con, "kept") == _count(con, "answered")      # the rephrase keeps the gold and is right
    else:
        assert _count(con, "aa_kept") == len(aug) == budget
    # one answered export for every strategy: question, reasoning, an answer, and whether the gold checked it
    out = [json.loads(x) for x in (tmp_path / "out/strategy_auto.jsonl").read_text().splitlines()]
    assert len(out) == _count(con, "aa_kept") + _count(con, "kept") > 0
    assert {r["strategy"] for r in out} == {strategy}
    assert all(r["question"] and r["reasoning"] and r["final_answer"] is not None for r in out)
    assert all(r["checked_against_gold"] is True and r["final_answer"] == r["gold"] for r in out)


def test_strategy_new_questions_are_answered_and_exported_with_the_others(tmp_path):
    made = iter(range(10_000))

    def rule(model, prompt, schema):
        if "Write one new problem" in prompt:                          # every new problem differs
            return f"A baker makes {next(made) + 12} loaves and sells 5 of them. How many loaves are left?"
        if "A baker makes" in prompt:
            m = re.search(r"makes (\d+) loaves", prompt)
            return f"Subtract the sold loaves. The answer is {int(m.group(1)) - 5}."
        return _strategy_rule(model, prompt, schema)

    eng, con = _run("strategy_auto", tmp_path, rule, {"limit": "2", "budget": "40", "max_tokens": "64"})
    aug = _rows(con, "augmented")
    assert {r["strategy"] for r in aug} == {"new_question"}             # 20 calls per seed: above `high`
    out = [json.loads(x) for x in (tmp_path / "out/strategy_auto.jsonl").read_text().splitlines()]
    assert out and all(r["strategy"] == "new_question" and r["checked_against_gold"] is False for r in out)
    for r in out:                                                       # answered: 1 answer call each
        assert r["final_answer"] == int(re.search(r"makes (\d+) loaves", r["question"]).group(1)) - 5
    assert len(out) == _count(con, "answered") and eng.calls["teacher"] == len(aug) + len(out) <= 40


# ------------------------------------------------------------ Evol-Instruct
def _evol_rule(model: str, prompt: str, schema) -> str:
    if schema and "equal" in (schema.get("properties") or {}):
        return json.dumps({"equal": "dance" in prompt.split("Second prompt:")[1], "reason": "r"})
    if prompt.startswith("You create prompts") or prompt.startswith("You rewrite prompts"):
        body = prompt.split("Prompt:\n", 1)[1].strip()
        return body + (" Explain it to a child in two steps." if len(body) % 3 else " Also dance.")
    if "dance" in prompt:
        return "Sorry, I cannot help with that."
    return "Here is a complete, careful answer with the details asked for."


def test_evol_instruct_funnel(tmp_path):
    eng, con = _run("evol_instruct", tmp_path, _evol_rule, {"limit": "6", "rounds": "2", "max_tokens": "64"})
    r0 = con.execute("SELECT step, count(*) FROM rows WHERE round = 0 AND status = 'ok' GROUP BY step").fetchall()
    by0 = dict(r0)
    assert by0["evolved"] == 6 and by0["gain"] == 6
    assert by0["informative"] == by0["responded"] == by0["survived"]   # the "dance" ones go at the equal check
    survivors0 = by0["survived"]
    assert 0 < survivors0 < 6
    # a failed evolution returns its parent to the pool (WizardLM): round 0's failures come back unchanged
    assert by0["failed"] == by0["returned"] == 6 - survivors0 and by0["next_pool"] == 6
    seeds = {json.loads(x)["instruction"] for x in
             (RECIPES / "data/self_instruct_seed/seed_tasks.jsonl").read_text().splitlines()[:6]}
    returned0 = con.execute("SELECT data FROM rows WHERE step = 'returned' AND round = 0").fetchall()
    assert {json.loads(d)["instruction"] for (d,) in returned0} <= seeds
    assert all(json.loads(d)["evol_method"] == "returned" for (d,) in returned0)
    by1 = dict(con.execute("SELECT step, count(*) FROM rows WHERE round = 1 GROUP BY step").fetchall())
    assert by1["evolved"] == survivors0 + by0["returned"]              # round 1 reads round 0's survivors + returns
    assert all(r["evol_parent"] != r["instruction"] for r in _rows(con, "evolved"))
    # every LLM row is its own call: round 1's re-evolution of a returned parent is not round 0's cached call
    llm_rows = con.execute("SELECT count(*) FROM rows WHERE step IN ('evolved', 'gain', 'responded')").fetchone()[0]
    assert eng.calls["teacher"] == llm_rows
    # the export holds the survivors of every round, with their responses
    out = [json.loads(x) for x in (tmp_path / "out/evol_instruct.jsonl").read_text().splitlines()]
    assert len(out) == _count(con, "survived") and all(r["response"] for r in out)


def test_evol_instruct_returns_every_parent_when_nothing_survives(tmp_path):
    def rule(model, prompt, schema):
        if schema and "equal" in (schema.get("properties") or {}):
            return json.dumps({"equal": True, "reason": "no gain"})          # every evolution fails rule 1
        return _evol_rule(model, prompt, schema)

    eng, con = _run("evol_instruct", tmp_path, rule, {"limit": "3", "rounds": "2", "max_tokens": "64"})
    by0 = dict(con.execute("SELECT step, count(*) FROM rows WHERE round = 0 AND status = 'ok' GROUP BY step").fetchall())
    assert "survived" not in by0 and by0["returned"] == 3
    seeds = {json.loads(x)["instruction"] for x in
             (RECIPES / "data/self_instruct_seed/seed_tasks.jsonl").read_text().splitlines()[:3]}
    evolved1 = con.execute("SELECT data FROM rows WHERE step = 'evolved' AND round = 1").fetchall()
    assert {json.loads(d)["evol_parent"] for (d,) in evolved1} == seeds      # round 1 evolves the parents again


# ------------------------------------------------------------------- TAPIR
def _tapir_rule(model: str, prompt: str, schema) -> str:
    if schema and "score" in (schema.get("properties") or {}):
        weak = "STUDENT-ANSWER" in prompt.split("Response:", 1)[1]
        return json.dumps({"score": 2 if weak else 9, "reason": "r"})
    if prompt.startswith("You create prompts"):
        return "A new, rarer task in the same domain: " + prompt.split("Prompt:\n", 1)[1].strip()[:80]
    return "STUDENT-ANSWER idk" if model == "student" else "TEACHER-ANSWER: a careful, complete response."


def test_tapir_funnel_uses_the_teacher_student_gap(tmp_path):
    eng, con = _run("tapir_curriculum", tmp_path, _tapir_rule, {"limit": "4", "rounds": "1", "max_tokens": "64"})
    assert eng.calls["student"] == 4
    judged = _rows(con, "judged")
    assert len(judged) == 4 and all(r["teacher_score"] - r["student_score"] == 7 for r in judged)   # MFD
    assert _count(con, "hard") == 4
    answered = _rows(con, "answered")
    assert answered and all(r["teacher_response"].startswith("TEACHER-ANSWER") for r in answered)  # data has responses
    assert all(r["instruction"].startswith("A new, rarer task") for r in answered)
    # task categories are a derived field; math/reasoning/code are expanded `upweight` times, the rest once
    cats = {r["instruction"]: r["category"] for r in _rows(con, "categorized")}
    assert set(cats.values()) <= {"classification", "math", "reasoning", "code", "other"}
    hardest = _rows(con, "hardest")
    up = sum(1 for r in hardest if r["category"] in ("math", "reasoning", "code"))
    assert _count(con, "expanded") == 2 * up + (len(hardest) - up)


def test_tapir_categories_balance_the_curriculum():
    from synthlang.ops import OPERATORS
    from synthlang.ops.base import RowContext

    prog = synthlang.check_file(RECIPES / "tapir_curriculum.synth", {"limit": "175"})
    body = {st.name: st for st in prog.loops[0].steps}
    derive = body["categorized"]
    seeds = [json.loads(x) for x in (RECIPES / "data/self_instruct_seed/seed_tasks.jsonl").read_text().splitlines()]
    rows = [{"instruction": r["instruction"], "is_classification": r["is_classification"],
             "text": r["instruction"].lower()} for r in seeds]
    out = derive.op.run_apply(rows, derive.opts, RowContext())
    cats = [f["category"] for _, f in out]
    counts = {c: cats.count(c) for c in set(cats)}
    assert set(counts) == {"classification", "math", "reasoning", "code", "other"}, counts
    assert counts["classification"] == sum(r["is_classification"] for r in seeds)
    # the curriculum keeps the same number of the hardest rows of every category
    cur = OPERATORS["curriculum"]
    opts = {k: o.default for k, o in cur.options.items()} | {"difficulty": body["hardest"].opts["difficulty"],
                                                              "levels": [0.0], "task": "category"}
    scored = [{**r, "category": c, "teacher_score": 9, "student_score": i % 5} for i, (r, c) in enumerate(zip(rows, cats, strict=True))]
    kept = [scored[i] for (i,), _ in cur.run_apply(scored, opts, RowContext())]
    per = {c: sum(1 for r in kept if r["category"] == c) for c in counts}
    assert len(set(per.values())) == 1 and min(per.values()) == min(counts.values())


# -------------------------------------------------------------------- LLKD
def test_llkd_adaptive_per_class_thresholds_and_weights(tmp_path):
    labels = json.loads((RECIPES / "data/banking77/categories.json").read_text())

    def rule(model, prompt, schema):
        msg = prompt.split("Message:", 1)[1]
        return json.dumps(labels[len(msg) % 2])          # two classes, confidences vary with the reply and row

    eng, con = _run("llkd", tmp_path, rule, {"limit": "12"})
    probed, selected = _rows(con, "probed"), _rows(con, "selected")
    assert len(probed) == 12 and 0 < len(selected) < 12
    for r in selected:
        assert r["label_confidence"] >= r["teacher_threshold"] and r["probe_confidence"] <= r["student_threshold"]
        assert r["sample_weight"] > 0
    assert {r["label"] for r in selected} <= {labels[0], labels[1]}
    assert set(eng.calls) == {"teacher", "student"}


def test_every_changed_recipe_cites_its_paper_and_paper_defaults():
    for name in ("revthink", "new_question", "strategy_auto", "evol_instruct", "tapir_curriculum", "llkd", "llm2llm",
                 "self_instruct", "pgkd"):
        text = (RECIPES / f"{name}.synth").read_text()
        assert re.search(r"\([^)]*20\d\d\)", text), f"{name} cites no paper"
        assert "Defaults (ours | paper)" in text, f"{name} states no defaults beside the paper's"
        assert "Models:" in text, f"{name} does not say which model is which"


def test_blocklist_is_for_open_instructions_not_math_problems():
    from synthlang.ops import OPERATORS
    from synthlang.ops.methods import self_instruct_filter

    qs = [json.loads(x)["question"] for x in (RECIPES / "data/gsm8k/train_first1000.jsonl").read_text().splitlines()]
    assert sum(1 for q in qs if (self_instruct_filter(q) or "").startswith("mentions")) == 29
    op = OPERATORS["new_question"]
    opts = {k: o.default for k, o in op.options.items()} | {"blocklist": []}
    q = next(q for q in qs if (self_instruct_filter(q) or "").startswith("mentions"))
    assert op.post({"examples": []}, q, opts) == {"question": q}        # blocklist=[] keeps it


def test_label_relations_are_grounded_and_capped():
    from synthlang.ops import OPERATORS

    op = OPERATORS["label"]
    opts = {k: o.default for k, o in op.options.items()} | {"mode": "relations", "max_items": 2}
    op = op.select(opts)
    schema = op.json_schema(opts)
    assert schema["properties"]["relations"]["maxItems"] == 2
    assert schema["properties"]["relations"]["items"]["required"] == ["drug", "effect"]
    row = {"text": "After starting ibuprofen she developed a rash and nausea; aspirin caused nothing."}
    reply = json.dumps({"relations": [{"drug": "ibuprofen", "effect": "rash"}, {"drug": "ibuprofen", "effect": "nausea"},
                                      {"drug": "aspirin", "effect": "hair loss"}, {"drug": "ibuprofen", "effect": "rash"}]})
    out = op.post(row, reply, opts, [-0.1, -0.1])
    assert out["relations"] == [{"drug": "ibuprofen", "effect": "rash"}, {"drug": "ibuprofen", "effect": "nausea"}]


def test_report_gives_per_class_precision_recall_f1_on_banking77():
    import csv

    from synthlang.ops import OPERATORS
    from synthlang.ops.base import RowContext

    with open(RECIPES / "data/banking77/test.csv", encoding="utf-8", newline="") as fh:
        rows = [r for _, r in zip(range(80), csv.DictReader(fh), strict=False)]
    cats = sorted({r["category"] for r in rows})
    # a planted confusion: every third row is predicted as the next class
    for i, r in enumerate(rows):
        r["pred"] = cats[(cats.index(r["category"]) + 1) % len(cats)] if i % 3 == 0 else r["category"]
    op = OPERATORS["report"].select({"per_row": False})
    opts = {k: o.default for k, o in op.options.items()} | {"by": "category", "predicted": "pred"}
    out = {f["class"]: f for _, f in op.run_apply(rows, opts, RowContext())}
    for c in cats:
        gold_c = [r for r in rows if r["category"] == c]
        pred_c = [r for r in rows if r["pred"] == c]
        tp = sum(1 for r in gold_c if r["pred"] == c)
        assert out[c]["class_recall"] == round(tp / len(gold_c), 4)
        assert out[c]["class_precision"] == round(tp / len(pred_c) if pred_c else 0.0, 4)
        assert out[c]["class_accuracy"] == out[c]["class_recall"]


# ------------------------------------------------- missing inputs per (operator, mode)
MISSING_BASE = """model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {
  question: str
  answer: str
  gold = final_number(answer)
}
step a = answer(seeds, model=m, field=question)
"""

# (step line, option the error must point at or None for the call); every LLM and row operator whose mode needs an
# input it has no default for
MISSING = [
    ('step j = judge(a, model=m, mode="pairwise", field=question, response=reasoning)', None, "response_b"),
    ('step c = curriculum(a, levels=[0, 1])', None, "difficulty"),
    ('step s = select(a, sample=2)', "sample", "weight"),
    ('step s = filter(a, weight=1)', "weight", "sample"),
    ('step s = select(a, quota=3)', "quota", "per"),
    ('step s = select(a, min=2)', "min", "by"),
    ('step l = label(a, model=m, field=question, mode="relations", relation=["drug"])', "relation", "two role names"),
]


@pytest.mark.parametrize("line,at,says", MISSING)
def test_a_missing_input_of_an_operator_mode_is_a_positioned_check_error(tmp_path, line, at, says):
    from synthlang.errors import Diagnostics

    shutil.copytree(RECIPES / "data", tmp_path / "data")
    path = tmp_path / "r.synth"
    path.write_text(MISSING_BASE + line + "\n", encoding="utf-8")
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(path)
    errs = [e for e in ei.value.errors if e.code == "missing-option"]
    assert len(errs) == 1, [str(e) for e in ei.value.errors]
    e = errs[0]
    assert e.span.line == 8 and says in e.message and e.hint
    col = line.index(f"{at}=") + 1 if at else line.index("(") - len(line.split("=", 1)[1].split("(")[0].strip()) + 1
    assert e.span.col == col, (e.span.col, col, str(e))
    assert str(e.span.path).endswith("r.synth") and "r.synth:8:" in ei.value.render()


def test_pairwise_judge_with_both_responses_checks_and_shows_both():
    from synthlang.ops import OPERATORS

    op = OPERATORS["judge"].select({"mode": "pairwise"})
    opts = {k: o.default for k, o in op.options.items()} | {"mode": "pairwise", "response": "a", "response_b": "b"}
    assert op.missing_inputs(opts) == []
    assert op.missing_inputs({**opts, "response_b": None})[0][0] == "response_b"
    # the other modes need no response_b
    assert OPERATORS["judge"].select({"mode": "score"}).missing_inputs({"response_b": None}) == []


# ------------------------------------------------------------------ LLM2LLM
def _llm2llm_rule(model: str, prompt: str, schema) -> str:
    if model == "student":
        q = _question(prompt)
        return f"The answer is {GOLD[q] if 'Natalia' in q else -1}."          # right on Natalia only
    real = prompt.split("Now the real task.", 1)[1]
    q = _question(real)
    assert q is not None and "#### " in real                                      # question + gold rationale
    if "Weng" in q:
        return "1. Question: Lena earns $15 an hour. How much for 3 hours?\nAnswer: 15 * 3 = 45.\nThe total is 45."  # no ####
    if "Betty" in q:
        return "1. Question: Betty saves for a bag. How much more?\nAnswer: some\n#### a lot"                     # no number
    if "Julie" in q:
        return f"1. Question: {q}\nAnswer: the same problem.\n#### 42"           # a copy: ROUGE-L 1.0 against the seeds
    return f"Sure!\n1. Question: A new problem about {len(q)} apples shared by 2 friends?\nAnswer: {len(q)} / 2 = {len(q) / 2}\n#### {len(q) / 2}"


def test_llm2llm_funnel(tmp_path):
    eng, con = _run("llm2llm", tmp_path, _llm2llm_rule, {"limit": "5", "rounds": "2", "max_tokens": "64"})
    per_round = dict(con.execute("SELECT round, count(*) FROM rows WHERE step = 'probed' AND status = 'ok' GROUP BY 1").fetchall())
    assert per_round == {0: 5, 1: 5}                            # every seed, every round; never a synthetic item
    assert eng.calls["student"] == 10
    wrong = _count(con, "wrong")
    assert wrong == 8                                           # 4 wrong seeds x 2 rounds
    assert eng.calls["teacher"] == _count(con, "written") == wrong   # round 2 asks anew: no cached round-1 reply
    good = _rows(con, "well_formed")
    assert len(good) == 4 and all(isinstance(r["gold"], (int, float)) for r in good)     # Weng/Betty replies dropped
    for r in good:
        assert r["answer"].endswith(f"#### {r['answer_number']}") and "Question" not in r["question"]
    fresh = _rows(con, "fresh")
    assert not any(r["question"] in GOLD for r in fresh)        # the copy of a seed is dropped (ROUGE-L >= 0.95)
    train = [json.loads(x) for x in (tmp_path / "out/llm2llm_train.jsonl").read_text().splitlines()]
    assert sum(r["origin"] == "seed" for r in train) == 5       # D_i keeps every seed ...
    assert {r["question"] for r in train if r["origin"] == "synthetic"} == {r["question"] for r in fresh}   # ... + new


# -------------------------------------------------------------------- PGKD
def _pgkd_rule(model: str, prompt: str, schema) -> str:
    if model == "student":                                      # always says card_arrival: card_linking is weak
        return json.dumps("card_arrival")
    m = re.search(r'intent "([a-z_]+)"', prompt)
    msg = prompt.split("Message:", 1)[1].split("\n\n", 1)[0].strip()
    return f"New {m.group(1)} message, unlike: {msg}"


def test_pgkd_funnel_validation_split_report_and_confidence_ranked_hard_negatives(tmp_path):
    import csv

    eng, con = _run("pgkd", tmp_path, _pgkd_rule, {"limit": "80", "rounds": "2", "hard_per_class": "3"})
    with open(RECIPES / "data/banking77/test.csv", encoding="utf-8", newline="") as fh:
        rows = [r for _, r in zip(range(80), csv.DictReader(fh), strict=False)]
    held = [r for r in rows if len(r["text"]) % 5 == 0]
    assert {r["category"] for r in rows} == {"card_arrival", "card_linking"}
    # the student is scored on the fixed validation split only, every round
    per_round = dict(con.execute("SELECT round, count(*) FROM rows WHERE step = 'probed' AND status = 'ok' GROUP BY 1").fetchall())
    assert per_round[0] == len(held) and set(per_round.values()) == {len(held)}
    assert {r["text"] for r in _rows(con, "probed")} == {r["text"] for r in held}
    # per-class precision / recall / F1 on it
    by = {r["category"]: r for r in _rows(con, "by_class")}
    n_a = sum(r["category"] == "card_arrival" for r in held)
    assert by["card_arrival"]["class_recall"] == 1.0 and by["card_linking"]["class_recall"] == 0.0
    assert by["card_arrival"]["class_precision"] == round(n_a / len(held), 4) and by["card_linking"]["class_f1"] == 0.0
    assert by["card_linking"]["class_weak"] and not by["card_arrival"]["class_weak"]
    # hard negatives: the weak class's misses, most confident first, at most 3 per class and round
    misses = _rows(con, "weak_misses")
    hard = _rows(con, "hardest")
    r0 = con.execute("SELECT count(*) FROM rows WHERE step = 'hardest' AND round = 0").fetchone()[0]
    assert r0 == 3 and all(r["category"] == "card_linking" for r in hard)
    def conf(step):
        return sorted((float(c) for (c,) in con.execute(
            "SELECT CAST(data->>'probe_confidence' AS DOUBLE) FROM rows WHERE step = ? AND round = 0 AND status = 'ok'",
            [step]).fetchall()), reverse=True)

    assert len(misses) > 3 and conf("hardest") == conf("weak_misses")[:3]    # the 3 most confident mistakes
    assert eng.calls["teacher"] == _count(con, "negatives") == len(hard)
    train = [json.loads(x) for x in (tmp_path / "out/pgkd_train.jsonl").read_text().splitlines()]
    assert sum(r["origin"] == "seed" for r in train) == len(rows) - len(held)      # validation never trains
    assert {r["text"] for r in train if r["origin"] == "hard_negative"} == {r["text"] for r in _rows(con, "fresh")}
    report = _rows(con, "class_report")
    assert {r["class"] for r in report} == {"card_arrival", "card_linking"} and all("class_f1" in r for r in report)


# ------------------------------------------------------------- Self-Instruct
SEED_TASKS = [json.loads(x) for x in (RECIPES / "data/self_instruct_seed/seed_tasks.jsonl").read_text().splitlines()]
TOPICS = iter(["volcanoes erupting near old villages", "budget travel across northern Europe", "training a young puppy",
               "choosing winter tyres for a car", "brewing green tea properly", "planning a school science fair",
               "repairing a leaking kitchen tap", "learning chess openings quickly"] * 10)


def _self_instruct_rule(model: str, prompt: str, schema) -> str:
    if prompt.startswith("Here is a numbered list of tasks"):
        a, b = next(TOPICS), next(TOPICS)
        return (f" Give three practical tips about {a}.\n10. Draw a picture of a cat on a map.\n"
                f"11. Write a program that sorts numbers.\n12. Is the following remark about {b} sarcastic or sincere?\n"
                f"13. Hi there\n14. {SEED_TASKS[0]['instruction']}\n15. ")
    if prompt.rstrip().endswith("Classification:"):
        task = prompt.rsplit("Task:", 1)[1]
        return "Yes" if "sarcastic" in task else "No"
    if "Class label:" in prompt.split("Task:", 1)[0] and "Output:" not in prompt:
        return "Class label: Sarcastic\nInput: Oh great, another Monday."
    return "Input: none\nOutput: First, read the guide. Second, practise. Third, ask an expert."


def test_self_instruct_funnel(tmp_path):
    eng, con = _run("self_instruct", tmp_path, _self_instruct_rule, {"limit": "20", "rounds": "2", "max_tokens": "128"})
    listed = {r: json.loads(d) for r, d in con.execute("SELECT round, data FROM rows WHERE step = 'listed'").fetchall()}
    humans20 = {t["instruction"] for t in SEED_TASKS[:20]}
    assert len(listed[0]["tasks"]) == 6 and set(listed[0]["tasks"]) <= humans20          # round 0: no machine task yet
    machine0 = {json.loads(d)["instruction"] for (d,) in con.execute("SELECT data FROM rows WHERE step = 'machine' AND round = 0").fetchall()}
    assert len(listed[1]["tasks"]) == 8 and len(set(listed[1]["tasks"]) & machine0) == 2  # 6 human + 2 machine
    assert eng.calls["writer"] == 2                                                        # one request per round
    items = _rows(con, "items")
    assert len(items) == 2 * 6                                                             # 6 list items per reply
    reasons = {r["instruction"]: r["rejected"] for r in _rows(con, "checked")}
    assert reasons["Draw a picture of a cat on a map."].startswith("mentions 'picture'")
    assert reasons["Write a program that sorts numbers."] == "starts with 'Write a program'"
    assert reasons["Hi there"].startswith("2 words")
    novel = _rows(con, "novel")
    assert SEED_TASKS[0]["instruction"].capitalize() not in {r["instruction"] for r in novel}   # ROUGE-L vs the pool
    assert len(novel) == 4 and eng.calls["teacher"] == 2 * len(novel)                   # classify + instance each
    done = {r["instruction"]: r for r in _rows(con, "complete")}
    for ins, r in done.items():
        if "sarcastic" in ins:
            assert r["is_classification"] and r["instance_output"] == "Sarcastic" and r["instance_input"].startswith("Oh great")
        else:
            assert not r["is_classification"] and r["instance_input"] == "none" and r["instance_output"].startswith("First")
    assert len(done) == 4
    out = [json.loads(x) for x in (tmp_path / "out/self_instruct_instances.jsonl").read_text().splitlines()]
    assert sorted(out[0]) == ["instance_input", "instance_output", "instruction", "is_classification", "row_id"]


def test_numbered_items_and_the_official_filters():
    from synthlang.expr import numbered_items, self_instruct_filter

    assert numbered_items(" Write a poem.\n10. Give two tips.\n11.  sum   it up \n12. ") == ["Write a poem.", "Give two tips.", "Sum it up"]
    assert self_instruct_filter("Name three rivers in Europe.") is None
    for bad in ("Too short here", "Plot the sales per month", "Write a program that prints hello",
                "(Optional) list five fruits please", "Ünïcode starts this instruction here", " ".join(["word"] * 151)):
        assert self_instruct_filter(bad) is not None, bad
    # the 29 GSM8K questions the longer Alpaca list rejects: the official 13 keywords are the ones applied here
    qs = [json.loads(x)["question"] for x in (RECIPES / "data/gsm8k/train_first1000.jsonl").read_text().splitlines()]
    assert sum(1 for q in qs if (self_instruct_filter(q) or "").startswith("mentions")) <= 29
