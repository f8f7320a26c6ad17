"""Runner tests on the deterministic fake engine: caching, n samples, lineage, failures.

The fake engine proves scheduling and caching only; engine behaviour is proven in test_embedded.py.
"""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import FAKE_RECIPE, write

import synthlang
from synthlang.errors import DataError, Diagnostics

RECIPE = FAKE_RECIPE


def _run(project, fake_factory, text=RECIPE, **params):
    p = write(project / "r.synth", text)
    prog = synthlang.check_file(p, {k: str(v) for k, v in params.items()})
    return synthlang.run(prog, db=project / "db.duckdb", engine_factory=fake_factory)


def test_run_counts_and_rerun_makes_zero_calls(project, fake_factory):
    s1 = _run(project, fake_factory)
    by = {s.name: s for s in s1.steps}
    assert by["seeds"].rows_out == 4
    assert by["r"].calls_made == 4 and by["r"].rows_out == 4
    assert by["a"].calls_made == 8 and by["a"].rows_out == 8   # n=2: two calls and two rows per input
    assert by["v"].rows_out == 8 and by["v"].calls_made == 0
    assert fake_factory.engine.calls == 12
    s2 = _run(project, fake_factory)
    assert s2.calls_made == 0
    assert fake_factory.engine.calls == 12
    assert all(s.rows_reused == s.rows_out for s in s2.steps)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    assert con.execute("select count(*) from calls").fetchone()[0] == 12
    # every row id exactly once
    assert con.execute("select count(*) - count(distinct row_id) from rows").fetchone()[0] == 0


def test_n_samples_have_distinct_keys_and_seeds(project, fake_factory):
    _run(project, fake_factory)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    rows = con.execute("select sample_index, seed, messages from calls where step='a' order by messages, sample_index").fetchall()
    assert len(rows) == 8
    pairs = {}
    for idx, seed, msgs in rows:
        pairs.setdefault(msgs, []).append((idx, seed))
    for samples in pairs.values():
        assert sorted(i for i, _ in samples) == [0, 1]
        assert len({s for _, s in samples}) == 2


def test_post_processing_change_makes_zero_calls(project, fake_factory):
    # with the recipe's own prompt, extract= only post-processes (the default prompt asks for the mode's final line)
    own = RECIPE.replace('step a = answer(r, model=m, field=rq, n=2)',
                         'step a = answer(r, model=m, field=rq, n=2, prompt="Solve: {{ input }}")')
    _run(project, fake_factory, own)
    changed = own.replace('n=2, prompt=', 'n=2, extract="text", prompt=')
    s = _run(project, fake_factory, changed)
    by = {x.name: x for x in s.steps}
    assert s.calls_made == 0
    assert by["a"].calls_cached == 8 and by["a"].rows_reused == 0  # new rows, old calls


def test_sampling_change_makes_new_calls(project, fake_factory):
    _run(project, fake_factory)
    s = _run(project, fake_factory, RECIPE.replace("temperature=0.5", "temperature=0.9"))
    assert s.calls_made == 12


def test_growing_limit_reuses_earlier_rows(project, fake_factory):
    _run(project, fake_factory)
    s = _run(project, fake_factory, limit=6)
    by = {x.name: x for x in s.steps}
    assert by["r"].calls_made == 2 and by["r"].rows_reused == 4


def test_every_output_row_traces_to_a_seed_in_sql(project, fake_factory):
    _run(project, fake_factory)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    sql = """
    WITH RECURSIVE up(row_id, anc) AS (
        SELECT row_id, row_id FROM rows WHERE step = 'v'
        UNION ALL
        SELECT up.row_id, l.parent_id FROM up JOIN lineage l ON l.child_id = up.anc
    )
    SELECT up.row_id, r.step, r.data->>'question' FROM up JOIN rows r ON r.row_id = up.anc WHERE r.step = 'seeds'
    """
    hits = con.execute(sql).fetchall()
    assert len(hits) == 8 and len({h[0] for h in hits}) == 8
    # the seed question is the question carried by the output row
    out = {rid: json.loads(d) for rid, d in con.execute("select row_id, data from rows where step='v'").fetchall()}
    for rid, _step, q in hits:
        assert out[rid]["question"] == q


def test_verify_is_a_column_and_failures_are_kept(project, fake_factory):
    _run(project, fake_factory)
    lines = [json.loads(x) for x in (project / "out" / "v.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert all(isinstance(x["verified"], bool) and x["verify_reason"] for x in lines)


def test_bad_seed_row_names_file_row_and_field(project, fake_factory):
    bad = project / "data" / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": 3, "answer": "x"}\n')
    with pytest.raises(DataError) as ei:
        _run(project, fake_factory, RECIPE.replace("gsm8k/train_first1000.jsonl", "bad.jsonl"))
    assert ei.value.row == 2 and ei.value.field == "question"
    assert "bad.jsonl: row 2, field 'question'" in str(ei.value)


def test_checker_reports_all_errors_sorted(project):
    text = RECIPE.replace("model=m)", "model=teachr)").replace("field=final_answer", "field=final_answr")
    p = write(project / "r.synth", text)
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(p)
    errs = ei.value.errors
    assert [e.code for e in errs] == ["unknown-name", "unknown-field"]
    assert errs[0].span.line < errs[1].span.line
    assert errs[0].hint == "declared models: m"
    assert "did you mean 'final_answer'?" in errs[1].hint


def test_csv_source_with_typed_fields(project, fake_factory):
    text = """
source intents = csv("data/banking77/test.csv", limit=5) {
  text: str
  category: str
  words = word_count(text)
}
model m = fake()
step labelled = generate(intents, model=m, prompt="Intent of: {{ text }}") -> label
"""
    s = _run(project, fake_factory, text)
    by = {x.name: x for x in s.steps}
    assert by["intents"].rows_out == 5 and by["labelled"].calls_made == 5
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    words = [json.loads(d)["words"] for (d,) in con.execute("select data from rows where step='intents'").fetchall()]
    assert all(isinstance(w, int) and w > 0 for w in words)


def test_template_variable_error_names_the_template_file_and_line(project):
    write(project / "templates" / "bad.j2", "Solve:\n{{ questoin }}\n")
    p = write(project / "r.synth", 'source s = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {\n  question: str\n}\n'
                                   'template t = file("templates/bad.j2")\nstep a = answer(s, prompt=t)\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(p)
    [err] = ei.value.errors
    assert err.code == "template-variable" and err.data["template_file"] == "templates/bad.j2"
    assert "(templates/bad.j2 line 2)" in err.message and err.hint == "did you mean 'question'?"
    assert (err.span.line, err.span.col) == (5, 20)
