"""Every shipped recipe runs on its real data with the real embedded model (SmolLM2-135M via llama.cpp).

Small N and small max_tokens keep the whole module to a few minutes on 2 cores; the model is tiny, so
these tests check structure and lineage, not quality. One module-scoped run per recipe; the assertions
read the real DuckDB file it wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

import synthlang

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

# the first 10 of the 77 real BANKING77 intents (the first test rows are card_arrival), so prompts stay short
LABELS10 = "data/banking77/categories_first10.json"

# recipe -> (params, steps that must have made rows, steps that must have made ok rows).
# At a tiny max_tokens most replies stop at the limit; the recipes' on_truncation param keeps such rows
# (default "fail" stores them as failed with finish_reason=length) so every step of the graph runs.
CASES: dict[str, tuple[dict[str, str], list[str], list[str]]] = {
    "answer_augmentation": ({"on_truncation": "keep", "limit": "1", "samples": "2", "max_tokens": "48"}, ["answered", "checked"], ["answered", "checked"]),
    "question_rephrase": ({"on_truncation": "keep", "limit": "2", "samples": "1", "max_tokens": "48"}, ["rephrased", "answered", "checked"], ["rephrased", "answered"]),
    "new_question": ({"on_truncation": "keep", "limit": "2", "shots": "2", "votes": "2", "max_tokens": "40"}, ["written"], []),
    "strategy_auto": ({"on_truncation": "keep", "limit": "1", "budget": "6", "max_tokens": "40"}, ["augmented"], ["augmented"]),
    "revthink": ({"on_truncation": "keep", "limit": "1", "max_tokens": "40", "reverse_wrong": "true"}, ["forward", "backward", "backward_solved", "consistent"],
                 ["forward", "forward_checked"]),
    "llm2llm": ({"on_truncation": "keep", "limit": "1", "rounds": "2", "max_tokens": "32"}, ["probed", "written"], ["probed", "wrong"]),
    "self_instruct": ({"on_truncation": "keep", "limit": "3", "human_shots": "2", "machine_shots": "1", "rounds": "2", "max_tokens": "32"}, ["written", "items"], ["written", "items"]),
    "evol_instruct": ({"on_truncation": "keep", "limit": "1", "rounds": "2", "max_tokens": "32"}, ["evolved"], ["prompts"]),
    "tapir_curriculum": ({"on_truncation": "keep", "limit": "1", "rounds": "2", "max_tokens": "24"}, ["attempted", "judged"], ["attempted"]),
    "pgkd": ({"on_truncation": "keep", "limit": "4", "offset": "38", "rounds": "2", "max_tokens": "64", "labels": LABELS10}, ["probed", "final_probe", "negatives"],
             ["probed", "by_class", "final_probe", "class_report"]),
    "llkd": ({"on_truncation": "keep", "limit": "3", "labels": LABELS10}, ["labelled", "probed"], ["labelled"]),
}

ANCESTRY = """
WITH RECURSIVE up(row_id, anc, depth) AS (
    SELECT row_id, row_id, 0 FROM rows WHERE operator <> 'source'
    UNION ALL
    SELECT up.row_id, l.parent_id, depth + 1 FROM up JOIN lineage l ON l.child_id = up.anc WHERE depth < 64
)
SELECT count(DISTINCT up.row_id) FROM up JOIN rows r ON r.row_id = up.anc WHERE r.operator = 'source'
"""


def _run_recipe(name: str, tmp: Path) -> tuple[object, Path]:
    shutil.copytree(RECIPES / "data", tmp / "data")
    shutil.copytree(RECIPES / "templates", tmp / "templates")
    shutil.copy(RECIPES / f"{name}.synth", tmp / f"{name}.synth")
    labels = json.loads((RECIPES / "data" / "banking77" / "categories.json").read_text())
    (tmp / LABELS10).write_text(json.dumps(labels[:10]))
    prog = synthlang.check_file(tmp / f"{name}.synth", CASES[name][0])
    summary = synthlang.run(prog, db=tmp / "db.duckdb")
    return summary, tmp / "db.duckdb"


@pytest.fixture(scope="module", params=sorted(CASES))
def recipe_run(request, tmp_path_factory):
    name = request.param
    summary, db = _run_recipe(name, tmp_path_factory.mktemp(name))
    return name, summary, db


@pytest.mark.slow
def test_recipe_runs_on_real_data(recipe_run):
    name, summary, db = recipe_run
    assert summary.status == "finished"
    assert summary.calls_made > 0
    con = duckdb.connect(str(db), read_only=True)
    for step in CASES[name][1]:
        n = con.execute("SELECT count(*) FROM rows WHERE step = ?", [step]).fetchone()[0]
        assert n > 0, f"{name}: step {step} made no rows"
    for step in CASES[name][2]:
        n = con.execute("SELECT count(*) FROM rows WHERE step = ? AND status = 'ok'", [step]).fetchone()[0]
        assert n > 0, f"{name}: step {step} made no ok rows"
    # a failed row always says why
    assert con.execute("SELECT count(*) FROM rows WHERE status = 'failed' AND error IS NULL").fetchone()[0] == 0
    # every row records its operator, and LLM rows their model and template hash
    bad = con.execute("SELECT count(*) FROM rows WHERE operator IS NULL OR (call_key IS NOT NULL AND "
                      "(model IS NULL OR template_hash IS NULL))").fetchone()[0]
    assert bad == 0


@pytest.mark.slow
def test_every_row_traces_back_to_a_seed(recipe_run):
    name, _, db = recipe_run
    con = duckdb.connect(str(db), read_only=True)
    total = con.execute("SELECT count(*) FROM rows WHERE operator <> 'source'").fetchone()[0]
    traced = con.execute(ANCESTRY).fetchone()[0]
    assert total > 0 and traced == total, f"{name}: {traced} of {total} rows trace back to a seed"


@pytest.mark.slow
def test_loop_rounds_are_recorded(recipe_run):
    name, _, db = recipe_run
    prog_text = (RECIPES / f"{name}.synth").read_text()
    if "loop " not in prog_text:
        pytest.skip("no loop in this recipe")
    con = duckdb.connect(str(db), read_only=True)
    rounds = {r for (r,) in con.execute("SELECT DISTINCT round FROM rows WHERE operator <> 'source'").fetchall()}
    assert 0 in rounds
    # lineage edges carry the same round as their child row
    mismatch = con.execute("SELECT count(*) FROM lineage l JOIN rows r ON r.row_id = l.child_id WHERE l.round <> r.round").fetchone()[0]
    assert mismatch == 0


@pytest.mark.slow
def test_llkd_teacher_accuracy_in_sql(recipe_run):
    name, _, db = recipe_run
    if name != "llkd":
        pytest.skip("llkd only")
    con = duckdb.connect(str(db), read_only=True)
    acc, n, conf = con.execute(
        "SELECT avg(CASE WHEN data->>'label' = data->>'category' THEN 1.0 ELSE 0.0 END), count(*), "
        "min(CAST(data->>'label_confidence' AS DOUBLE)) FROM rows WHERE step = 'labelled' AND status = 'ok'").fetchone()
    assert n > 0 and 0.0 <= acc <= 1.0
    assert conf is not None and 0.0 < conf <= 1.0   # confidence from real token logprobs


STRUCTURED = """
model m = embedded(temperature=0.0, max_tokens=24)
source msgs = csv("data/banking77/test.csv", limit=1) {
  text: str
  category: str
}
step spans = label(msgs, model=m, field=text, mode="spans", entity_types=["card", "money"], max_tokens=48)
step rated = judge(msgs, model=m, field=text, response=category, rubric="does the label fit the message", on_truncation="keep")
"""


@pytest.mark.slow
def test_structured_output_and_logprobs_on_the_embedded_engine(tmp_path):
    shutil.copytree(RECIPES / "data", tmp_path / "data")
    (tmp_path / "s.synth").write_text(STRUCTURED)
    s = synthlang.run(synthlang.check_file(tmp_path / "s.synth"), db=tmp_path / "db.duckdb")
    assert s.status == "finished"
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    calls = con.execute("SELECT step, response, json_schema FROM calls ORDER BY step").fetchall()
    assert len(calls) == 2 and all(schema is not None for _, _, schema in calls)
    assert all(resp.lstrip().startswith("{") for _, resp, _ in calls)     # grammar-constrained JSON
    score = con.execute("SELECT CAST(data->>'score' AS DOUBLE) FROM rows WHERE step='rated' AND status='ok'").fetchone()
    assert score is not None and 1 <= score[0] <= 10
