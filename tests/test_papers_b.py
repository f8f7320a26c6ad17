"""Issue 15 (papersb): cross, dedup(within="parent"), retrieve, and the recipes that use them.

Funnel tests run each shipped recipe file on the real shipped data through the real checker, runner and
DuckDB store, with scripted engines (per-prompt rules) so every funnel is known exactly. The real embedded
model (SmolLM2-135M via llama.cpp) runs each recipe at a small size in the ``slow`` tests at the end, and
each export is loaded with ``datasets`` in the shape TRL's trainers take.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from test_method_recipes import Scripted as _Scripted

import synthlang
from synthlang.errors import Diagnostics
from synthlang.expr import final_number
from synthlang.ops.crossing import draw

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
GSM = [json.loads(x) for x in (RECIPES / "data/gsm8k/train_first1000.jsonl").read_text().splitlines()[:40]]
TEST = [json.loads(x) for x in (RECIPES / "data/gsm8k/test.jsonl").read_text().splitlines()[:400]]
GOLD = {r["question"]: final_number(r["answer"]) for r in GSM + TEST}


class Scripted(_Scripted):
    """test_method_recipes' scripted engine with a reply rule of ``(model_name, prompt)`` (no schema)."""

    def __init__(self, rule: Callable[[str, str], str]) -> None:
        super().__init__(lambda model, prompt, schema: rule(model, prompt))


def _copy(name: str, tmp: Path) -> Path:
    shutil.copytree(RECIPES / "data", tmp / "data")
    shutil.copytree(RECIPES / "templates", tmp / "templates")
    shutil.copy(RECIPES / f"{name}.synth", tmp / f"{name}.synth")
    return tmp / f"{name}.synth"


def _run(name: str, tmp: Path, rule, params: dict[str, str]) -> tuple[Scripted, duckdb.DuckDBPyConnection]:
    path = _copy(name, tmp)
    eng = Scripted(rule)
    s = synthlang.run(synthlang.check_file(path, params), db=tmp / "db.duckdb", engine_factory=eng.for_model)
    assert s.status == "finished"
    return eng, duckdb.connect(str(tmp / "db.duckdb"), read_only=True)


def _rows(con, step: str) -> list[dict]:
    return [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM rows WHERE step = ? AND status = 'ok' ORDER BY row_id", [step]).fetchall()]


def _count(con, step: str) -> int:
    return con.execute("SELECT count(*) FROM rows WHERE step = ? AND status = 'ok'", [step]).fetchone()[0]


def _parents(con, step: str) -> dict[str, list[str]]:
    """Each row of a step -> the steps of its lineage parents."""
    out: dict[str, list[str]] = defaultdict(list)
    for rid, pstep in con.execute("SELECT r.row_id, p.step FROM rows r JOIN lineage l ON l.child_id = r.row_id "
                                  "JOIN rows p ON p.row_id = l.parent_id WHERE r.step = ? ORDER BY 1, 2", [step]).fetchall():
        out[rid].append(pstep)
    return out


def _exam_gold(prompt: str) -> float | None:
    """The gold of the GSM8K question after the last 'Question:' of a student prompt."""
    tail = prompt.rsplit("Question:", 1)[-1]
    return next((g for q, g in GOLD.items() if q in tail), None)


def _check_errors(tmp: Path, text: str) -> list[str]:
    (tmp / "data").exists() or shutil.copytree(RECIPES / "data", tmp / "data")
    (tmp / "t.synth").write_text(text)
    with pytest.raises(Diagnostics) as e:
        synthlang.check_file(tmp / "t.synth", {})
    return [x.render() for x in e.value.errors]


# ------------------------------------------------------------------- cross
def test_draw_is_seeded_and_keyed():
    a = draw(50, 3, 0, "q1")
    assert a == draw(50, 3, 0, "q1") and len(set(a)) == 3 and a == sorted(a)
    assert draw(50, 3, 1, "q1") != a or draw(50, 3, 2, "q1") != a          # the seed changes the draw
    assert len({tuple(draw(50, 3, 0, f"q{i}")) for i in range(20)}) > 10    # keys draw different rows
    assert draw(5, 0, 0, "x") == [0, 1, 2, 3, 4] and draw(5, 9, 0, "x") == [0, 1, 2, 3, 4]


CROSS_RECIPE = """
recipe t "t"
param k: int = 2
model m = fake(max_tokens=16)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
}
source exam = jsonl("data/gsm8k/test.jsonl", limit=7) {
  question: str
  answer: str
}
step a = answer(seeds, model=m, n=2)
step x = cross(a, with=exam, k=k, key=question, prefix="exam_")
step all = cross(seeds, with=exam)
export x to "out/x.jsonl" as jsonl
"""


def test_cross_draws_k_rows_shared_by_key_with_lineage(tmp_path, fake_factory):
    shutil.copytree(RECIPES / "data", tmp_path / "data")
    (tmp_path / "t.synth").write_text(CROSS_RECIPE)
    prog = synthlang.check_file(tmp_path / "t.synth", {})
    assert synthlang.run(prog, db=tmp_path / "db.duckdb", engine_factory=fake_factory).status == "finished"
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    rows = _rows(con, "x")
    assert len(rows) == 3 * 2 * 2                                           # 3 seeds x 2 samples x k=2
    for q in {r["question"] for r in rows}:    # both samples of a seed: the same exam questions
        per_sample = {tuple(sorted(r["exam_question"] for r in rows if r["question"] == q and r["reasoning"] == s))
                      for s in {r["reasoning"] for r in rows if r["question"] == q}}
        assert len(per_sample) == 1
    assert all(r["exam_question"] in GOLD and r["exam_answer"] for r in rows)
    assert all(sorted(p) == ["a", "exam"] for p in _parents(con, "x").values())   # both rows are parents
    assert _count(con, "all") == 3 * 7                                      # k=0: the full product
    plan = {st["name"]: st["rows"] for st in synthlang.plan(prog)["steps"]}
    assert plan["x"] == 12 and plan["all"] == 21                           # the plan's row estimate multiplies too
    # the same draw on a re-run from scratch
    con.close()
    synthlang.run(synthlang.check_file(tmp_path / "t.synth", {}), db=tmp_path / "db2.duckdb", engine_factory=fake_factory)
    con2 = duckdb.connect(str(tmp_path / "db2.duckdb"), read_only=True)
    assert sorted(r["exam_question"] for r in _rows(con2, "x")) == sorted(r["exam_question"] for r in rows)


def test_cross_checks_its_options(tmp_path):
    errs = _check_errors(tmp_path, CROSS_RECIPE.replace("cross(a, with=exam, k=k", "cross(a, k=k"))
    assert any("cross() needs with=" in e and "t.synth:14:10" in e for e in errs), errs
    errs = _check_errors(tmp_path, CROSS_RECIPE.replace("k=k,", "k=-1,"))
    assert any("k must be at least 0" in e for e in errs), errs
    errs = _check_errors(tmp_path, CROSS_RECIPE.replace('prefix="exam_"', 'prefix=""'))
    assert any("becomes 'question', which the input already has" in e for e in errs), errs
    errs = _check_errors(tmp_path, CROSS_RECIPE.replace("with=exam, k=k", "with=nowhere, k=k"))
    assert any("'nowhere' is neither" in e for e in errs), errs
    errs = _check_errors(tmp_path, CROSS_RECIPE.replace("key=question", "key=nosuch"))
    assert any("unknown field 'nosuch'" in e for e in errs), errs


# -------------------------------------------------------------------- ARTE
def _arte_rule():
    per_prompt: Counter[str] = Counter()

    def rule(model: str, prompt: str) -> str:
        if model == "teacher":          # drafts: good, bad, malformed, bad (by sample order)
            k = per_prompt[prompt]
            per_prompt[prompt] += 1
            kind = ["GOOD", "BAD", "MALFORMED", "BAD"][k % 4]
            if kind == "MALFORMED":
                return "Here is a problem about apples."
            seed = next(q for q in GOLD if q in prompt)[:24]
            return f"Question: A {kind} draft number {k} like '{seed}'?\nRationale: {kind} steps. The answer is {k}."
        g = _exam_gold(prompt)         # the student is right only after a GOOD draft
        return f"So... The answer is {g if 'GOOD' in prompt else -1}."

    return rule


def test_arte_funnel(tmp_path):
    eng, con = _run("arte", tmp_path, _arte_rule(), {"limit": "3", "drafts": "4", "probes": "3", "max_tokens": "64"})
    assert _count(con, "drafted") == 12 and _count(con, "well_formed") == 9        # the malformed draft is dropped
    assert _count(con, "tried") == 27 and _count(con, "probed") == 27              # 9 drafts x 3 probes
    assert eng.calls == {"teacher": 12, "student": 27}
    tried = _rows(con, "tried")
    for q in {r["question"] for r in tried}:   # every draft of one seed is tried on the same 3 exam questions
        exams = {d: {r["exam_question"] for r in tried if r["draft"] == d} for d in {r["draft"] for r in tried if r["question"] == q}}
        assert len({frozenset(v) for v in exams.values()}) == 1 and all(len(v) == 3 for v in exams.values())
    scored = _rows(con, "scored")
    assert len(scored) == 9 and all(r["probes_tried"] == 3 for r in scored)
    assert {r["accuracy"] for r in scored if "GOOD" in r["draft"]} == {1.0}
    assert {r["accuracy"] for r in scored if "BAD" in r["draft"]} == {0.0}
    prefs = _rows(con, "prefs")
    assert len(prefs) == 3                                                          # one pair per seed
    assert all("GOOD" in p["chosen"] and "BAD" in p["rejected"] for p in prefs)
    assert all(len(v) == 2 for v in _parents(con, "prefs").values())
    ds = _load_jsonl(tmp_path / "out/arte_dpo.jsonl")
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 3
    seeds = {r["question"] for r in prefs}
    assert all("Write ONE new problem" in p and any(q in p for q in seeds) for p in ds["prompt"])  # the teacher's prompt
    assert sorted(ds["chosen"]) == sorted(p["chosen"] for p in prefs)


def _load_jsonl(path: Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")


# --------------------------------------------------------------------- LbT
def _lbt_rule():
    per_prompt: Counter[str] = Counter()

    def rule(model: str, prompt: str) -> str:
        if model == "teacher":          # rationale k of a TP: even k teaches well (and answers right)
            k = per_prompt[prompt]
            per_prompt[prompt] += 1
            g = next(GOLD[q] for q in GOLD if q in prompt)
            return f"{'GOOD' if k % 2 == 0 else 'BAD'} rationale {k}. The answer is {g if k % 2 == 0 else g + 1}."
        g = _exam_gold(prompt)          # student_a learns from GOOD rationales, student_b only from rationale 0
        ok = "GOOD" in prompt and (model == "student_a" or "GOOD rationale 0." in prompt)
        return f"So... The answer is {g if ok else -1}."

    return rule


def test_lbt_funnel(tmp_path):
    eng, con = _run("lbt", tmp_path, _lbt_rule(), {"limit": "2", "rationales": "4", "exams": "3", "max_tokens": "64"})
    assert _count(con, "taught") == 8 and _count(con, "tried") == 24                # 2 TPs x 4 rationales x 3 EPs
    assert eng.calls == {"teacher": 8, "student_a": 24, "student_b": 24}
    assert _count(con, "results") == 48                                             # both students' exams pooled
    scored = {r["reasoning"].split(".")[0]: r for r in _rows(con, "scored")}
    assert len(_rows(con, "scored")) == 8 and all(r["exam_taken"] == 6 for r in scored.values())
    assert scored["GOOD rationale 0"]["lbt_score"] == 1.0                         # both students right
    assert scored["GOOD rationale 2"]["lbt_score"] == 0.5                         # student_a only
    assert scored["BAD rationale 1"]["lbt_score"] == 0.0
    best = _rows(con, "best_checked")
    assert len(best) == 2 and all(b["reasoning"].startswith("GOOD rationale 0") and b["correct"] for b in best)  # argmax per TP
    prefs = _rows(con, "prefs")
    assert len(prefs) == 2 and all(p["chosen"].startswith("GOOD rationale 0") and p["rejected"].startswith("BAD") for p in prefs)
    dpo = _load_jsonl(tmp_path / "out/lbt_dpo.jsonl")
    assert dpo.column_names == ["prompt", "chosen", "rejected"] and len(dpo) == 2
    assert all(p.startswith("Solve the problem step by step") for p in dpo["prompt"])
    sft = _load_jsonl(tmp_path / "out/lbt_best.jsonl")
    assert [[m["role"] for m in ms] for ms in sft["messages"]] == [["user", "assistant"]] * 2


# --------------------------------------------------------------- MalAlgoQA
def _malalgoqa_rule():
    per_prompt: Counter[str] = Counter()

    def rule(model: str, prompt: str) -> str:
        k = per_prompt[prompt]
        per_prompt[prompt] += 1
        q = next(q for q in GOLD if q in prompt)
        if "Weng" in q:                 # this question's malgorithms all reach one wrong answer: no item
            return "Mistaken steps. The answer is 1001."
        return ["Wrong op. The answer is 1001.", "Another wrong op. The answer is 1001.", f"Right. The answer is {GOLD[q]}.",
                "I am not sure.", "Forgot a step. The answer is 1002.", "Misread. The answer is 1003."][k % 6]

    return rule


def test_malalgoqa_funnel(tmp_path):
    eng, con = _run("malalgoqa", tmp_path, _malalgoqa_rule(), {"limit": "3", "samples": "6", "max_tokens": "64"})
    assert eng.calls == {"teacher": 18}
    wrong = _rows(con, "wrong")
    assert all(r["wrong_answer"] is not None and r["wrong_answer"] != r["gold"] for r in wrong)
    assert len(wrong) == 2 * 4 + 6                                  # 4 wrong per normal seed, 6 for Weng's
    distinct = _rows(con, "distinct")
    per_q = Counter(r["question"] for r in distinct)
    # within each question's samples only: 1001 stays once per question, not once overall
    assert sorted(per_q.values()) == [1, 3, 3]
    assert all(len({r["wrong_answer"] for r in distinct if r["question"] == q}) == n for q, n in per_q.items())
    assert _count(con, "grouped") == 3 and _count(con, "complete") == 2      # Weng's has 2 options: dropped
    items = _rows(con, "items")
    for it in items:
        assert len(it["options"]) == 4 and len(set(map(str, it["options"]))) == 4
        correct = it["options"]["ABCD".index(it["answer"])]
        assert correct == it["gold"]
        assert it["rationales"]["ABCD".index(it["answer"])].endswith(f"#### {int(it['gold'])}")   # GSM8K's own solution
        assert sorted(o for o in it["options"] if o != it["gold"]) == [1001, 1002, 1003]
    ex = _load_jsonl(tmp_path / "out/malalgoqa.jsonl")
    assert ex.column_names == ["question", "options", "rationales", "answer", "gold"] and len(ex) == 2
    ident = _load_jsonl(tmp_path / "out/malalgoqa_identify.jsonl")
    assert len(ident) == 8                                          # one example per option of each complete item
    assert all(m[0]["role"] == "user" and "A student answered" in m[0]["content"] and m[1]["role"] == "assistant"
               for m in ident["messages"])


def test_new_operators_declare_their_locality():
    from synthlang.ops import OPERATORS

    dedup = OPERATORS["dedup"]
    assert dedup.select({"within": "parent"}).locality == "group"      # one parent's samples: streams by group
    assert dedup.select({"within": "all"}).locality == "global"
    assert OPERATORS["cross"].locality == "global" and OPERATORS["retrieve"].locality == "global"  # read a whole node


# ------------------------------------------------------------------ retrieve
def test_bm25_index_ranks_and_handles_empty_input():
    from synthlang.ops.retrieval import BM25Index

    idx = BM25Index(["Earnings equal the hourly wage multiplied by the hours worked.",
                     "Half of a quantity is that quantity divided by two.",
                     "A percent is a number of parts per hundred.", ""])
    hits = idx.top("What is her hourly wage if she worked 5 hours?", 3)
    assert hits[0][0] == 0 and all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))
    assert idx.top("zebra xylophone", 3) == []                       # no shared word: nothing retrieved
    assert len(idx.top("quantity hours percent", 2)) == 2           # at most k
    assert BM25Index([]).top("anything", 3) == [] and BM25Index(["", "  "]).top("a b", 3) == []


FACTS = {
    "Natalia": "Here is what is needed:\n- Half of a quantity is that quantity divided by two.\n"
               "- Half of a quantity is the quantity divided by two.\n- x\n- Altogether means adding the amounts together.",
    "Weng": "- Earnings equal the hourly wage multiplied by the hours worked.\n- There are sixty minutes in one hour.",
}


def _nesycd_rule(model: str, prompt: str) -> str:
    q = next((q for q in GOLD if q in prompt), None)
    if prompt.startswith("A student could not solve"):
        return FACTS[q.split()[0]]
    if model == "teacher":
        return f"Step by step. The answer is {GOLD[q]}."
    right = "Useful knowledge" in prompt or not q.startswith(("Natalia", "Weng"))
    return f"The answer is {GOLD[q] if right else -5}."


def test_nesycd_funnel(tmp_path):
    eng, con = _run("nesycd", tmp_path, _nesycd_rule, {"limit": "3", "eval_limit": "4", "k": "2", "max_tokens": "64"})
    assert _count(con, "cot_kept") == 3 and _count(con, "failed") == 2           # Natalia's and Weng's
    assert eng.calls == {"teacher": 3 + 2, "student": 3 + 4}
    assert _count(con, "entries") == 8 and _count(con, "real_facts") == 5        # text before the list, "x" dropped
    kb = [r["fact"] for r in _rows(con, "kb")]
    assert sorted(kb) == sorted(["Half of a quantity is that quantity divided by two.",   # its near-duplicate merged
                                 "Altogether means adding the amounts together.",
                                 "Earnings equal the hourly wage multiplied by the hours worked.",
                                 "There are sixty minutes in one hour."])
    sft = {r["question"].split()[0]: r for r in _rows(con, "sft")}
    assert all(len(r["retrieved"]) <= 2 and set(r["retrieved"]) <= set(kb) for r in sft.values())
    assert sft["Weng"]["retrieved"][0] == "There are sixty minutes in one hour."   # shares 'minutes', 'hour'
    assert sft["Natalia"]["retrieved"][0].startswith("Half of a quantity")            # shares 'half' ('of', 'a' too)
    assert all(r["retrieved_scores"] == sorted(r["retrieved_scores"], reverse=True) for r in sft.values())
    for rid, parents in _parents(con, "sft").items():                           # the question + each retrieved entry
        n = len(next(json.loads(d) for (d,) in con.execute("SELECT data FROM rows WHERE row_id = ?", [rid]).fetchall())["retrieved"])
        assert sorted(parents) == sorted(["cot_kept"] + ["kb"] * n)
    chat = _load_jsonl(tmp_path / "out/nesycd_sft.jsonl")
    assert len(chat) == 3
    users = [m[0]["content"] for m in chat["messages"]]
    assert any(u.startswith("Useful knowledge:\n- There are sixty minutes") for u in users)
    assert _count(con, "evaluated") == 4 and _load_jsonl(tmp_path / "out/nesycd_eval.jsonl").column_names[:2] == ["question", "retrieved"]


# ------------------------------------------------- the real embedded model
# recipe -> (params, steps that must have made ok rows). Tiny sizes: structure, not quality (SmolLM2-135M).
REAL: dict[str, tuple[dict[str, str], list[str]]] = {
    "arte": ({"limit": "2", "drafts": "2", "probes": "2", "probe_limit": "20", "max_tokens": "48", "student_max_tokens": "24",
              "on_truncation": "keep", "require_format": "false"}, ["drafted", "tried", "probed", "scored"]),
    "lbt": ({"limit": "1", "rationales": "2", "exams": "2", "exam_limit": "20", "max_tokens": "48", "student_max_tokens": "24",
             "on_truncation": "keep"}, ["taught", "tried", "exam_a", "exam_b", "results", "scored", "best"]),
    "malalgoqa": ({"limit": "2", "samples": "2", "max_tokens": "48", "on_truncation": "keep", "min_options": "1"}, ["written", "correct", "options", "complete", "identify"]),
    "nesycd": ({"limit": "1", "eval_limit": "1", "k": "2", "max_tokens": "48", "student_max_tokens": "24", "on_truncation": "keep",
                "keep_wrong_cot": "true"}, ["cot", "tried", "grounded", "evaluated", "sft"]),
    "socratic_zero": ({"limit": "2", "attempts": "2", "new_per_round": "1", "rounds": "2", "max_tokens": "48"},
                      ["attempted", "checked", "rates"]),
    "dupe": ({"limit": "2", "max_tokens": "48", "student_max_tokens": "32", "on_truncation": "keep", "require_flip": "false"},
             ["edited", "referenced", "labelled", "answered", "memory"]),
    "explanations": ({"limit": "1", "samples": "1", "max_tokens": "40", "student_max_tokens": "24", "on_truncation": "keep"},
                     ["known", "strategised", "explained", "alone", "helped", "scored"]),
}


@pytest.fixture(scope="module", params=sorted(REAL))
def real_run(request, tmp_path_factory):
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    path = _copy(name, tmp)
    summary = synthlang.run(synthlang.check_file(path, REAL[name][0]), db=tmp / "db.duckdb")
    return name, summary, tmp


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_recipe_runs_on_the_embedded_model(real_run):
    name, summary, tmp = real_run
    assert summary.status == "finished" and summary.calls_made > 0
    con = duckdb.connect(str(tmp / "db.duckdb"), read_only=True)
    for step in REAL[name][1]:
        assert _count(con, step) > 0, f"{name}: step {step} made no ok rows"
    assert con.execute("SELECT count(*) FROM rows WHERE status = 'failed' AND error IS NULL").fetchone()[0] == 0
    # every LLM row records its model and template; every row traces back to a source row
    assert con.execute("SELECT count(*) FROM rows WHERE call_key IS NOT NULL AND (model IS NULL OR template_hash IS NULL)").fetchone()[0] == 0
    orphans = con.execute("SELECT count(*) FROM rows r WHERE operator <> 'source' AND NOT EXISTS "
                          "(SELECT 1 FROM lineage l WHERE l.child_id = r.row_id)").fetchone()[0]
    assert orphans == 0


@pytest.mark.slow
def test_real_exports_load_in_trl_shape(real_run):
    name, _, tmp = real_run
    shapes = {"arte": ("arte_dpo.jsonl", ["prompt", "chosen", "rejected"]), "lbt": ("lbt_best.jsonl", ["messages"]),
              "malalgoqa": ("malalgoqa_identify.jsonl", ["messages"]), "nesycd": ("nesycd_sft.jsonl", ["messages"]),
              "socratic_zero": ("socratic_zero_dpo.jsonl", ["prompt", "chosen", "rejected"]),
              "dupe": ("dupe_kto.jsonl", ["prompt", "completion", "label"]),
              "explanations": ("explanations_views.jsonl", ["view", "messages"])}
    file, cols = shapes[name]
    path = tmp / "out" / file
    if not path.exists() or not path.read_text().strip():
        pytest.skip(f"{name}: the 135M model's replies left no rows for {file} at this size (the funnel test covers it)")
    ds = _load_jsonl(path)
    assert ds.column_names == cols and len(ds) > 0
    if "messages" in cols:
        assert all(m[0]["role"] == "user" and m[-1]["role"] == "assistant" and m[-1]["content"] for m in ds["messages"])
    elif "label" in cols:
        assert all(p and c and isinstance(lab, bool) for p, c, lab in zip(ds["prompt"], ds["completion"], ds["label"], strict=True))
    else:
        assert all(p and c and r for p, c, r in zip(ds["prompt"], ds["chosen"], ds["rejected"], strict=True))


# ------------------------------------------------------------ Socratic-Zero
def _socratic_rule():
    per_prompt: Counter[str] = Counter()

    def rule(model: str, prompt: str) -> str:
        if prompt.startswith("You are a teacher"):
            name = next(q for q in GOLD if q in prompt).split()[0]
            return f"Problem: A harder problem about {name} with twelve apples in three baskets of pears?\nSolution: 12 + 30. The answer is 42."
        k = per_prompt[prompt]
        per_prompt[prompt] += 1
        q = next((q for q in GOLD if q in prompt), None)
        if q is None:                   # a teacher-written problem: always solved
            return "Easy. The answer is 42."
        right = {"Natalia": True, "Weng": k % 2 == 0, "Betty": False}[q.split()[0]]
        return f"Attempt {k}. The answer is {GOLD[q] if right else -3}."

    return rule


def test_socratic_zero_funnel(tmp_path):
    eng, con = _run("socratic_zero", tmp_path, _socratic_rule(),
                    {"limit": "3", "attempts": "4", "new_per_round": "2", "rounds": "3", "max_tokens": "64"})
    rounds = dict(con.execute("SELECT round, count(*) FROM rows WHERE step = 'attempted' GROUP BY 1").fetchall())
    assert rounds == {0: 12, 1: 8}                  # 3 seeds x 4; then the 2 new problems x 4; all solved: stop
    rates = {r["question"].split()[0]: r for r in _rows(con, "rates")}
    assert rates["Natalia"]["success"] == 1.0 and rates["Weng"]["success"] == 0.5 and rates["Betty"]["success"] == 0.0
    assert rates["Weng"]["wrong_reasoning"].startswith("Attempt 1.") and rates["Natalia"]["wrong_reasoning"] is None
    prefs = _rows(con, "prefs")
    assert len(prefs) == 1 and "The answer is 10" in prefs[0]["chosen"] and "-3" in prefs[0]["rejected"]  # Weng's only
    new = _rows(con, "new_problems")
    assert sorted(r["question"].split()[4] for r in new) == ["Betty", "Weng"]  # from the failures only
    assert all(r["gold"] == 42 and r["origin"] == "teacher" and "Solution:" not in r["question"] for r in new)
    assert eng.calls == {"solver": 20, "teacher": 2}
    dpo = _load_jsonl(tmp_path / "out/socratic_zero_dpo.jsonl")
    assert dpo.column_names == ["prompt", "chosen", "rejected"] and len(dpo) == 1 and dpo["prompt"][0].startswith("Solve the problem")


def test_socratic_zero_reloads_the_trained_solver_each_round(tmp_path):
    """The recipe with its training switched on (trained_by=zero, a train_cmd, --allow-train): the command gets the
    DPO pairs so far, and the next round's attempts are new calls to the re-loaded solver."""
    import sys

    path = _copy("socratic_zero", tmp_path)
    text = path.read_text()
    path.write_text(text.replace("model solver = embedded(temperature=0.7, max_tokens=max_tokens)",
                                 "model solver = embedded(temperature=0.7, max_tokens=max_tokens, trained_by=zero)"))
    train = (f"{sys.executable} -c \"import sys, pathlib, json; rows = [json.loads(x) for x in open(sys.argv[1])]; "
             "o = pathlib.Path(sys.argv[2]); o.mkdir(parents=True, exist_ok=True); "
             "(o / 'solver.gguf').write_text(json.dumps([r['chosen'] for r in rows]))\" {data} {out}")
    eng = Scripted(_socratic_rule())
    prog = synthlang.check_file(path, {"limit": "3", "attempts": "4", "new_per_round": "2", "rounds": "3",
                                       "max_tokens": "64", "train_cmd": train})
    s = synthlang.run(prog, db=tmp_path / "db.duckdb", engine_factory=eng.for_model, allow_train=[str(path)])
    assert s.status == "finished"
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    assert con.execute("SELECT round, exit_status FROM train_runs").fetchall() == [(0, 0)]
    data = [json.loads(x) for x in (tmp_path / ".synth/train/zero/round0/data.jsonl").read_text().splitlines()]
    assert len(data) == 1 and data[0]["chosen"] and data[0]["rejected"]           # the DPO pairs so far
    # round 0 asks the declared solver; round 1 the checkpoint the command wrote (its digest names the engine's model)
    trained = {k: v for k, v in eng.calls.items() if k.startswith("solver@")}
    assert eng.calls["solver"] == 12 and list(trained.values()) == [8]
    rev = con.execute("SELECT count(DISTINCT call_key) FROM rows WHERE step = 'attempted' AND round = 1").fetchone()[0]
    assert rev == 8


# --------------------------------------------------------------------- DUPE
def _dupe_rule(model: str, prompt: str) -> str:
    if prompt.startswith("Rewrite the math problem"):
        q = next(q for q in GOLD if q in prompt)
        return q if q.startswith("Weng") else "PERTURBED " + q          # Weng's edit changes nothing: dropped
    q = next(q for q in GOLD if q in prompt)                             # solving the perturbed problem
    g = GOLD[q]
    if model == "teacher":
        return f"Using the facts. The answer is {g if q.startswith('Betty') else g + 100}."   # Betty's edit does not flip
    return f"I answer. The answer is {g + 100 if q.startswith('Natalia') else g}."            # Julie: from memory


def test_dupe_funnel(tmp_path):
    eng, con = _run("dupe", tmp_path, _dupe_rule, {"limit": "4", "max_tokens": "64"})
    assert _count(con, "edited") == 4 and _count(con, "changed") == 3                 # Weng's unchanged edit dropped
    labelled = {r["question"].split()[0]: r for r in _rows(con, "labelled")}
    assert labelled["Natalia"]["flipped"] and not labelled["Betty"]["flipped"] and labelled["Julie"]["flipped"]
    assert _count(con, "flipped") == 2 and eng.calls == {"teacher": 4 + 3, "student": 2}
    memory = {r["question"].split()[0]: r for r in _rows(con, "memory")}
    assert memory["Natalia"]["follows_evidence"] and not memory["Natalia"]["follows_memory"]
    assert memory["Julie"]["follows_memory"] and not memory["Julie"]["follows_evidence"]
    assert [r["question"].split()[0] for r in _rows(con, "kept")] == ["Natalia"]
    kto = _load_jsonl(tmp_path / "out/dupe_kto.jsonl")
    assert kto.column_names == ["prompt", "completion", "label"] and sorted(kto["label"]) == [False, True]
    assert all(p.startswith("PERTURBED") for p in kto["prompt"])
    sft = _load_jsonl(tmp_path / "out/dupe_sft.jsonl")
    assert len(sft) == 1 and sft["messages"][0][0]["content"].startswith("PERTURBED Natalia")


# ------------------------------------------------------------- explanations
def _explanations_rule():
    per_prompt: Counter[str] = Counter()

    def rule(model: str, prompt: str) -> str:
        q = next(q for q in GOLD if q in prompt)
        name = q.split()[0]
        if model == "teacher":
            kind = "K" if prompt.startswith("Read the problem") else "S" if prompt.startswith("A small model") else "E"
            return f"{kind} for {name}."
        k = per_prompt[prompt]
        per_prompt[prompt] += 1
        if prompt.startswith("Your teacher explained"):
            right = name in ("Natalia", "Weng")
        else:
            right = name == "Weng" or (name == "Betty" and k == 0)
        return f"The answer is {GOLD[q] if right else -9}."

    return rule


def test_explanations_funnel(tmp_path):
    eng, con = _run("explanations", tmp_path, _explanations_rule(), {"limit": "3", "samples": "2", "max_tokens": "64"})
    assert eng.calls == {"teacher": 9, "student": 12}           # 3 teacher texts per seed; 2 x 2 student samples
    scored = {r["question"].split()[0]: r for r in _rows(con, "scored")}
    assert {n: (r["acc_with"], r["acc_without"], r["utility"]) for n, r in scored.items()} == {
        "Natalia": (1.0, 0.0, 1.0), "Weng": (1.0, 1.0, 0.0), "Betty": (0.0, 0.5, -0.5)}
    assert scored["Natalia"]["knowledge"] == "K for Natalia." and scored["Natalia"]["strategy"] == "S for Natalia."
    assert [r["question"].split()[0] for r in _rows(con, "useful")] == ["Natalia"]
    views = _load_jsonl(tmp_path / "out/explanations_views.jsonl")
    assert views.column_names == ["view", "messages"] and len(views) == 3 * 5   # one row -> five training examples
    assert sorted(set(views["view"])) == ["deep", "explanation", "intuitive", "knowledge", "strategy"]
    deep = [m for v, m in zip(views["view"], views["messages"], strict=True) if v == "deep"]
    assert all(m[0]["content"].startswith("Knowledge:\nK for") and "####" in m[1]["content"] for m in deep)
    useful = _load_jsonl(tmp_path / "out/explanations_useful.jsonl")
    assert len(useful) == 1 and useful["messages"][0][1]["content"] == "E for Natalia."
