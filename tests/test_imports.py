"""Imports and SQL sources through the real runner and a real DuckDB file (fake engine: scheduling only)."""

from __future__ import annotations

import json

import duckdb
from conftest import write

import synthlang

SHARED = """
model m = embedded(max_tokens=32)
template ask = file("prompts/ask.j2")
source seeds = jsonl("../data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
  gold = final_number(answer)
}
step r = rephrase(seeds, model=m) -> rq
step unused = answer(seeds, model=m)
export r to "out/never.jsonl" as jsonl
"""

MAIN = """
use "lib/shared.synth" as sh
step a = answer(sh.r, model=sh.m, field=rq, prompt=sh.ask)
step v = verify(a, field=final_answer, gold=gold)
export v to "out/v.jsonl" as jsonl
"""


def test_imported_steps_run_under_their_alias_and_paths_resolve_from_the_imported_file(project, fake_factory):
    write(project / "lib/shared.synth", SHARED)
    write(project / "lib/prompts/ask.j2", "Solve: {{ rq }}\nEnd with 'Answer: N'.")
    prog = synthlang.check_file(write(project / "main.synth", MAIN))
    assert [s.name for s in prog.steps] == ["sh.r", "a", "v"]  # 'sh.unused' is not pulled in
    assert list(prog.sources) == ["sh.seeds"]
    assert prog.steps[1].model is not None and prog.steps[1].model.name == "sh.m"
    assert "Solve: {{ rq }}" in prog.steps[1].opts["prompt"]
    summary = synthlang.run(prog, db=project / "db.duckdb", engine_factory=fake_factory)
    by = {s.name: s for s in summary.steps}
    assert by["sh.seeds"].rows_out == 3 and by["sh.r"].calls_made == 3 and by["a"].calls_made == 3
    lines = (project / "out/v.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and "verified" in json.loads(lines[0])
    assert not (project / "lib/out/never.jsonl").exists()  # an import's exports do not run
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    assert con.execute("select count(*) from rows where step = 'sh.r'").fetchone()[0] == 3


def test_sql_source_reads_rows_of_an_earlier_run_from_the_same_store(project, fake_factory):
    write(project / "lib/shared.synth", SHARED)
    write(project / "lib/prompts/ask.j2", "Solve: {{ rq }}")
    db = project / "db.duckdb"
    synthlang.run(synthlang.check_file(write(project / "main.synth", MAIN)), db=db, engine_factory=fake_factory)
    second = """
source earlier = sql("SELECT data->>'rq' AS question, data->>'gold' AS gold FROM rows WHERE step = 'sh.r' ORDER BY row_id") {
  question: str
  gold: float
}
step a2 = answer(earlier, model=m, field=question)
model m = fake()
"""
    prog = synthlang.check_file(write(project / "second.synth", second))
    summary = synthlang.run(prog, db=db, engine_factory=fake_factory)
    by = {s.name: s for s in summary.steps}
    assert by["earlier"].rows_out == 3 and by["a2"].calls_made == 3
