"""Answer extraction and comparison by answer type (issue 12 items 1-3): adversarial replies per extract mode,
one comparison shared by verify(mode="gold") and probe, the answer type fixed at check time and stated in the plan,
and a yes/no recipe with a bool gold that keeps exactly its correct rows."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import synthlang
from synthlang.ops import OPERATORS
from synthlang.ops.answers import as_yesno, compare, extract_answer, infer_type, resolve_type

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data"

# (reply, mode, expected): each reply has a distractor that the old last-match rules picked
ADVERSARIAL = [
    ("The answer is yes. There is no doubt about it.", "yesno", "yes"),
    ("Yes. No doubt about it.", "yesno", "yes"),
    ("No, 9 is not prime, because 3 divides it. Yes, I am sure.", "yesno", "no"),
    ("Answer: no\nThere is no way it is true; yes, really.", "yesno", "no"),
    ("The statement is False.", "yesno", "no"),
    ("Let me think. No, it is not. So: yes", "yesno", "yes"),
    ("The answer is 18. Earlier I thought 20 was right.", "number", 18),
    ("#### 72\nCheck: 70 + 2 = 72, not 75.", "number", 72),
    ("Janet makes 9 * 2 = 18 dollars a day.", "number", 18),
    ("so the total is \\boxed{\\frac{1}{2}} and 7 more", "boxed", "\\frac{1}{2}"),
    ("The answer is 42, not \\boxed{41} as I first wrote.", "boxed", "41"),
    ("No box. The answer is 12.", "boxed", "12"),
    ("The answer is (B) Mercury. Option (A) is wrong.", "choice", "B"),
    ("The answer is B. (A) would be wrong.", "choice", "B"),
    ("I think the answer is Mercury (C), not (D).", "choice", "C"),
    ("A dog barks. Still, the correct option is (D).", "choice", "D"),
    ("I believe (A) fits best.", "choice", "A"),
    ("C", "choice", "C"),
    ("The answer is Paris. It is also the largest city.", "text", "Paris"),
    ("Thinking about capitals...\nParis", "text", "Paris"),
]


@pytest.mark.parametrize("reply,mode,want", ADVERSARIAL)
def test_extract_prefers_the_explicit_answer(reply, mode, want):
    assert extract_answer(reply, mode) == want


def test_extract_gives_none_when_the_mode_finds_nothing():
    assert extract_answer("I cannot tell.", "yesno") is None
    assert extract_answer("No number here.", "number") is None
    assert extract_answer("All options look fine to me, really.", "choice") is None
    with pytest.raises(ValueError):
        extract_answer("x", "poem")


@pytest.mark.parametrize("gold,pred,kind,want", [
    (True, "yes", "yesno", True), (False, "no", "yesno", True), (True, "no", "yesno", False),
    ("yes", "The answer is yes.", "yesno", True), ("no", "true", "yesno", False),
    ("A", "A", "choice", True), ("(B)", "B) Mercury", "choice", True), ("B", "C", "choice", False),
    ("card_arrival", "card_arrival", "label", True), ("card_arrival", "Card arrival", "label", True),
    ("card_arrival", "card_linking", "label", False),
    ("The Eiffel Tower", "eiffel tower.", "text", True), ("Paris", "Lyon", "text", False),
    (18, "$18.00", "number", True), ("1,000", "1000", "number", True), (18, "17", "number", False),
    (True, "1", "number", False),
])
def test_compare_by_answer_type(gold, pred, kind, want):
    verdict, reason = compare(gold, pred, kind)
    assert verdict is want
    assert ("equals" in reason) is want or "not" in reason


def test_answer_type_resolution_order():
    assert resolve_type("text", "number", 5) == "text"             # explicit wins
    assert resolve_type("auto", "number", True) == "yesno"          # a bool gold is yes/no
    assert resolve_type("auto", "choice", "B") == "choice"
    assert resolve_type(None, None, "card_arrival") == "label"
    assert [infer_type(g) for g in (True, 3, "18", "(C)", "No", "card_arrival", "Paris")] == \
        ["yesno", "number", "number", "choice", "yesno", "label", "text"]
    assert as_yesno(False) == "no" and as_yesno("TRUE") == "yes" and as_yesno("maybe") is None


def _opts(name: str, **over):
    op = OPERATORS[name]
    if op.select is not None:
        op = op.select({**{k: o.default for k, o in op.options.items()}, **over})
    return op, {**{k: o.default for k, o in op.options.items()}, **over}


def _yesno_rows() -> list[dict]:
    """Real Self-Instruct seed tasks whose human answer starts with Yes or No: (instruction, bool gold)."""
    rows = []
    for line in (DATA / "self_instruct_seed" / "seed_tasks.jsonl").read_text().splitlines():
        t = json.loads(line)
        out = t["instances"][0]["output"].strip()
        first = out.split()[0].strip(",.!").lower() if out else ""
        if first in ("yes", "no"):
            rows.append({"question": t["instruction"], "gold": first == "yes", "reply": out})
    return rows


def test_verify_and_probe_give_the_same_verdict_on_yes_no_with_bool_gold():
    rows = _yesno_rows()
    assert len(rows) >= 3
    # the seed task's own answer ("Yes, you can have ...") against the bool gold: all correct; flipped: all wrong
    flipped = [{**r, "gold": not r["gold"]} for r in rows]
    v, vopts = _opts("verify", field="reply", gold="gold")
    p, popts = _opts("probe", field="question", gold="gold", extract="yesno")
    for data, want in ((rows, True), (flipped, False)):
        verdicts = [f["verified"] for _, f in v.run_apply(data, vopts)]
        probed = [p.post({**r, "labels": []}, r["reply"], popts, None)["probe_correct"] for r in data]
        assert verdicts == probed == [want] * len(data)


def test_probe_compares_choice_and_label_like_verify():
    p, popts = _opts("probe", field="question", gold="gold", extract="choice")
    assert p.post({"question": "q", "gold": "B", "labels": []}, "Mercury is closest. The answer is (B).", popts)["probe_correct"]
    assert not p.post({"question": "q", "gold": "B", "labels": []}, "The answer is (C), not (B).", popts)["probe_correct"]
    p2, popts2 = _opts("probe", field="question", gold="gold")       # extract=auto: the bool gold makes it yes/no
    assert p2.post({"question": "q", "gold": False, "labels": []}, "No. It is not.", popts2)["probe_correct"]


YESNO_RECIPE = """
recipe yn "yes/no answers against a bool gold"
model m = fake(temperature=0.0, max_tokens=16)
source tasks = jsonl("tasks.jsonl") {
  question: str
  reply: str
  gold: bool
}
step checked = verify(tasks, field=reply, gold=gold)
step kept = filter(checked, where=verified)
export kept to "out/kept.jsonl" as jsonl
"""


def test_yes_no_recipe_with_bool_gold_keeps_the_correct_rows(tmp_path):
    rows = _yesno_rows()
    wrong = [{**r, "reply": ("No. " if r["gold"] else "Yes. ") + "There is no doubt about it."} for r in rows]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + wrong))
    (tmp_path / "yn.synth").write_text(YESNO_RECIPE)
    prog = synthlang.check_file(tmp_path / "yn.synth")
    assert prog.steps[0].opts["answer_type"] == "yesno"               # fixed at check time from the bool gold field
    plan = synthlang.plan(prog)
    assert next(s for s in plan["steps"] if s["name"] == "checked")["answer_type"] == "yesno"
    s = synthlang.run(prog, db=tmp_path / "db.duckdb")
    assert s.status == "finished"
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    kept = [json.loads(d) for (d,) in con.execute("SELECT data FROM rows WHERE step = 'kept' AND status = 'ok'").fetchall()]
    assert sorted(k["reply"] for k in kept) == sorted(r["reply"] for r in rows)


ANSWER_TYPE_RECIPE = """
recipe t "answer type from the extract mode"
model m = fake(temperature=0.0, max_tokens=16)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {
  question: str
  answer: str
  gold = final_number(answer)
}
step a = answer(seeds, model=m, field=question, extract="choice") -> r, letter
step v = verify(a, field=letter, gold=answer)
step w = verify(a, field=letter, gold=answer, answer_type="text") -> v2, why2
"""


def test_answer_type_comes_from_the_producing_step_and_is_overridable(project):
    (project / "t.synth").write_text(ANSWER_TYPE_RECIPE)
    prog = synthlang.check_file(project / "t.synth")
    by = {s.name: s for s in prog.steps}
    assert by["v"].opts["answer_type"] == "choice" and by["v"].opts["extract"] == "choice"
    assert by["w"].opts["answer_type"] == "text"


YESNO_ANSWER_RECIPE = """
recipe yn2 "answer yes/no questions, keep answers that match a bool gold"
model teacher = fake(temperature=0.0, max_tokens=32)
source tasks = jsonl("tasks.jsonl") {
  question: str
  gold: bool
}
step answered = answer(tasks, model=teacher, field=question, extract="yesno")
step checked = verify(answered, field=final_answer, gold=gold)
step kept = filter(checked, where=verified)
export kept to "out/kept.jsonl" as jsonl
"""


def test_answer_verify_recipe_on_yes_no_keeps_the_rows_whose_answer_matches_the_bool_gold(tmp_path):
    from test_method_recipes import Scripted

    rows = _yesno_rows()
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps({"question": r["question"], "gold": r["gold"]}) + "\n" for r in rows))
    (tmp_path / "yn2.synth").write_text(YESNO_ANSWER_RECIPE)
    right = {r["question"] for r in rows[::2]}           # the teacher is right on every other question

    def rule(model, prompt, schema):
        assert '"The answer is yes."' in prompt            # the default prompt asks for a yes/no final line
        q = next(r for r in rows if r["question"] in prompt)
        said = q["gold"] if q["question"] in right else not q["gold"]
        return f"Thinking it over.\nThe answer is {'yes' if said else 'no'}. There is no doubt about it."

    eng = Scripted(rule)
    prog = synthlang.check_file(tmp_path / "yn2.synth")
    assert {s.name: s.opts.get("answer_type") for s in prog.steps}["checked"] == "yesno"
    s = synthlang.run(prog, db=tmp_path / "db.duckdb", engine_factory=eng.for_model)
    assert s.status == "finished"
    out = [json.loads(x) for x in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    assert sorted(o["question"] for o in out) == sorted(right)
