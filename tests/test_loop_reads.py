"""Explicit loop reads (pool.all / pool.new), typed feeds, and which rows each round of the ported
method recipes reads (LLM2LLM, PGKD, Self-Instruct), on the fake engine and the real shipped data.

The fake engine only shapes replies; what is asserted is the loop's read semantics, through the
lineage the runner writes to the real DuckDB file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import RECIPES, write

import synthlang
from synthlang.errors import Diagnostics

pytestmark = pytest.mark.timeout(300)

LOOP = """
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
}
loop grow(rounds=2) {
  step written = new_question(READ, model=m, field=question, k=2, min_words=1)
  step solved = answer(written, model=m, field=question) -> answer, gold
  step fresh = dedup(solved, field=question, mode="exact", against=AGAINST)
  feed seeds from fresh
}
"""


def _codes(project, text):
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(write(project / "r.synth", text))
    return [(e.code, e.span.line, e.span.col) for e in ei.value.errors]


def test_a_bare_pool_read_in_a_loop_body_is_an_error(project):
    codes = _codes(project, LOOP.replace("READ", "seeds").replace("AGAINST", "seeds"))
    assert ("loop-read", 8, 31) in codes and ("loop-read", 10, 68) in codes


def test_all_and_new_only_exist_for_a_fed_pool_inside_its_loop(project):
    ok = LOOP.replace("READ", "seeds.new").replace("AGAINST", "seeds.all")
    synthlang.check_file(write(project / "r.synth", ok))
    assert ("loop-read", 9, 24) in _codes(project, ok.replace("answer(written,", "answer(written.all,"))
    after = ok + "step later = filter(seeds.all, where=true)\n"
    assert ("loop-read", 13, 21) in _codes(project, after)


def test_feed_checks_types_not_only_names(project):
    text = """
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {
  question: str
  answer: str
  ok = len(answer) > 3
}
loop grow(rounds=2) {
  step a = answer(seeds.new, model=m, field=question) -> reasoning, verdict
  step typed = derive(a, ok = str(verdict))
  feed seeds from typed
}
"""
    codes = _codes(project, text)
    assert codes == [("loop-feed-types", 11, 3)]
    synthlang.check_file(write(project / "r.synth", text.replace("ok = str(verdict)", "ok = is_null(verdict)")))


def test_plan_shows_each_loop_read(project):
    prog = synthlang.check_file(write(project / "r.synth", LOOP.replace("READ", "seeds.new").replace("AGAINST", "seeds.all")))
    plan = synthlang.plan(prog)
    steps = {s["name"]: s for s in plan["steps"]}
    assert steps["written"]["input"] == "seeds.new" and steps["written"]["rows"] == 3
    assert steps["written"]["loop"]["reads"] == {"input": "seeds.new"}
    assert steps["fresh"]["loop"]["reads"] == {"input": "solved", "against": "seeds.all"}


# ---------------------------------------------------------------- ported recipes, fake engine

def _run_recipe(tmp: Path, name: str, params: dict[str, str], fake_factory,
                files: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    shutil.copytree(RECIPES / "data", tmp / "data")
    shutil.copytree(RECIPES / "templates", tmp / "templates")
    for rel, body in (files or {}).items():          # a test's own templates replace the shipped ones
        write(tmp / rel, body)
    text = (RECIPES / f"{name}.synth").read_text(encoding="utf-8").replace("embedded(", "fake(")
    labels = json.loads((RECIPES / "data" / "banking77" / "categories.json").read_text())
    (tmp / "labels10.json").write_text(json.dumps(labels[:10]))
    prog = synthlang.check_file(write(tmp / f"{name}.synth", text), params)
    synthlang.run(prog, db=tmp / "db.duckdb", engine_factory=fake_factory)
    return duckdb.connect(str(tmp / "db.duckdb"), read_only=True)


def _parents_by_round(con, step: str) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for r, p in con.execute("""SELECT c.round, l.parent_id FROM rows c JOIN lineage l ON l.child_id = c.row_id
                               WHERE c.step = ?""", [step]).fetchall():
        out.setdefault(r, set()).add(p)
    return out


def _ids(con, step: str) -> set[str]:
    return {r for (r,) in con.execute("SELECT row_id FROM rows WHERE step = ?", [step]).fetchall()}


def _seed_ancestors(con, step: str) -> dict[str, set[str]]:
    rows = con.execute("""
        WITH RECURSIVE up(row_id, anc) AS (
          SELECT row_id, row_id FROM rows WHERE step = ?
          UNION SELECT up.row_id, l.parent_id FROM up JOIN lineage l ON l.child_id = up.anc)
        SELECT up.row_id, r.step FROM up JOIN rows r ON r.row_id = up.anc""", [step]).fetchall()
    out: dict[str, set[str]] = {}
    for rid, st in rows:
        out.setdefault(rid, set()).add(st)
    return out


# The fake engine echoes the last 60 characters of its prompt, so this teacher prompt ends in an item of the
# "Question / Answer / #### n" form the recipe parses (issue 12), one per seed.
FAKE_AUGMENT = "Write one new item.\n1. Question: Again, {{ question[-18:] }}\nAnswer: 1 + 1 = 2\n#### 2"


def test_llm2llm_reprobes_every_seed_and_augments_only_seeds(tmp_path, fake_factory):
    con = _run_recipe(tmp_path, "llm2llm", {"limit": "4", "rounds": "3", "max_tokens": "48", "on_truncation": "keep"},
                      fake_factory, files={"templates/llm2llm/augment.j2": FAKE_AUGMENT})
    seeds = _ids(con, "seeds")
    probed = _parents_by_round(con, "probed")
    assert len(probed) >= 2, "the loop must run more than one round"
    for r, parents in probed.items():
        assert parents == seeds, f"round {r} must probe every seed and nothing else"
    # every augmented question comes from a seed the student got wrong, never from a synthetic item
    synthetic = _ids(con, "synthetic")
    assert synthetic
    for steps in _seed_ancestors(con, "written").values():
        assert "seeds" in steps and "synthetic" not in steps and "train" not in steps
    # the wrong rows are exactly the probed rows with probe_correct false, in every round
    wrong = con.execute("SELECT count(*) FROM rows WHERE step = 'wrong'").fetchone()[0]
    bad = con.execute("SELECT count(*) FROM rows WHERE step = 'probed' AND status = 'ok' AND "
                      "NOT CAST(data->>'probe_correct' AS BOOLEAN)").fetchone()[0]
    assert wrong == bad
    # the training set holds the seeds and every synthetic item, each once
    train = [json.loads(d) for (d,) in con.execute("SELECT data FROM rows WHERE step = 'train'").fetchall()]
    assert sorted({t["origin"] for t in train}) == ["seed"]
    out = [json.loads(x) for x in (tmp_path / "out" / "llm2llm_train.jsonl").read_text().splitlines()]
    assert sum(1 for o in out if o["origin"] == "seed") == 4
    assert sum(1 for o in out if o["origin"] == "synthetic") == len({json.loads(d)["question"] for (d,) in con.execute(
        "SELECT data FROM rows WHERE step = 'synthetic'").fetchall()})


def test_pgkd_probes_every_validation_message_each_round(tmp_path, fake_factory):
    con = _run_recipe(tmp_path, "pgkd", {"limit": "6", "offset": "38", "rounds": "2", "labels": "labels10.json",
                                         "on_truncation": "keep"}, fake_factory)
    validation = _ids(con, "validation")          # the fixed validation split (issue 12), every round
    probed = _parents_by_round(con, "probed")
    assert validation and probed and all(parents == validation for parents in probed.values())
    # hard negatives descend from a real message, never from an earlier negative
    for steps in _seed_ancestors(con, "negatives").values():
        assert "intents" in steps and "labeled" not in steps and "train" not in steps


def test_self_instruct_draws_human_and_machine_shots_from_the_whole_pool(tmp_path, fake_factory):
    con = _run_recipe(tmp_path, "self_instruct", {"limit": "12", "rounds": "3", "max_tokens": "48", "on_truncation": "keep"},
                      fake_factory)
    human = _ids(con, "pool")
    machine = _ids(con, "machine")
    humans = _parents_by_round(con, "humans")
    machines = _parents_by_round(con, "machines")
    assert set(humans) >= {0, 1}
    for r, parents in humans.items():
        assert parents <= human and len(parents) == 6, f"round {r}: 6 human tasks"
    assert 0 not in machines, "round 0 has no machine tasks yet"
    fed_before = {r: {x for (x,) in con.execute("SELECT row_id FROM rows WHERE step = 'machine' AND round < ?", [r]).fetchall()}
                  for r in machines}
    for r, parents in machines.items():
        assert parents <= machine and parents <= fed_before[r] and 1 <= len(parents) <= 2
    shots = _parents_by_round(con, "written")
    assert all(len(p) <= 8 for p in shots.values())


def test_the_loop_example_in_the_language_doc_checks_clean(project):
    import re

    doc = (RECIPES.parent / "docs" / "language.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```synth\n(.*?)```", doc, flags=re.S) if "loop grow" in b and "recipe " in b]
    prog = synthlang.check_file(write(project / "example.synth", block))
    (lp,) = prog.loops
    reads = {st.name: (st.input, st.opts.get("against")) for st in lp.steps}
    assert reads["probed"] == ("seeds", None) and reads["fresh"] == ("solved", "train.all")
