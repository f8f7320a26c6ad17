"""Findings of the breaker pass (session 2026-12-01): an untrusted recipe or a careless user must get a
positioned check error or a bounded, clear failure, never a hang, a MemoryError or a traceback.

The engine is the deterministic fake: what is under test is checking, scheduling and the store.
"""

from __future__ import annotations

import pytest
from conftest import synth, write

import synthlang
from synthlang.errors import DataError, Diagnostics

BASE = """recipe b "breaker"
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
  gold = final_number(answer)
}
"""


def _check(project, body):
    return synthlang.check_file(write(project / "r.synth", BASE + body))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", [
    'step x = generate(seeds, model=m, prompt="hi {{question}}", n=1000000000)',
    'step x = answer(seeds, model=m, n=1025)',
])
def test_huge_n_is_a_check_error(project, step):
    """``n=10**9`` used to pass check and then die of MemoryError while queueing a billion calls."""
    with pytest.raises(Diagnostics) as exc:
        _check(project, step + "\n")
    d = exc.value.errors[0]
    assert "n must be between 1 and 1024" in d.message and d.span.line == 8


@pytest.mark.timeout(120)
def test_huge_n_from_fails_clearly_without_a_call(project):
    """``n_from=gold * 1000000`` (72 000 000 samples for row 1) used to hang the run building its call list."""
    from synthlang.engines.fake import FakeEngine

    eng = FakeEngine()
    prog = _check(project, 'step x = generate(seeds, model=m, prompt="hi {{question}}", n_from=gold * 1000000)\n')
    with pytest.raises(DataError) as exc:
        synthlang.run(prog, db=project / "db.duckdb", engine_factory=lambda m: eng)
    assert "from 0 to 1024, got 72000000" in str(exc.value) and exc.value.row == 1
    assert eng.calls == 0


@pytest.mark.timeout(120)
def test_n_from_at_the_cap_runs(project):
    """The cap is not off by one: 1024 samples of one row run."""
    from synthlang.engines.fake import FakeEngine

    eng = FakeEngine()
    prog = _check(project, 'step x = generate(seeds, model=m, prompt="hi {{question}}", n_from=1024 if gold == 72 else 0)\n')
    synthlang.run(prog, db=project / "db.duckdb", engine_factory=lambda m: eng)
    assert eng.calls == 1024


@pytest.mark.timeout(180)
def test_a_corrupt_journal_is_skipped_not_a_crash(project):
    """Garbage bytes, a torn line or a record of the wrong shape in ``<db>.journal`` used to give an internal
    error (UnicodeDecodeError) on every later run, locking the user out of the store."""
    from synthlang.engines.fake import FakeEngine

    eng = FakeEngine()
    prog = _check(project, "step a = answer(seeds, model=m, n=2)\n")
    db = project / "db.duckdb"
    first = synthlang.run(prog, db=db, engine_factory=lambda m: eng)
    assert eng.calls == 6
    (project / "db.duckdb.journal").write_bytes(
        b'\xff\xfe garbage \x00\x01\n["a", "b"]\n' + b'[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]\n'
        + b'["k", 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, "2026-01-01"]\n["torn", "op')
    r = synth("run", "r.synth", "--db", str(db), cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "internal error" not in r.stdout + r.stderr
    journal = project / "db.duckdb.journal"   # replayed, then rotated away by each flush (store.py: journal)
    assert not journal.exists() or journal.read_bytes() == b""
    assert not (project / "db.duckdb.journal.flushing").exists()
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 6   # nothing bogus replayed, nothing lost
    finally:
        con.close()
    assert first is not None


def _nested_json(depth: int) -> str:
    return ('{"type":"object","properties":{"a":' + '{"type":"array","items":' * depth + '{"type":"string"}'
            + '}' * depth + '}}')


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [5000, 200])
def test_a_deeply_nested_schema_is_a_check_error(project, depth):
    """A ``schema=`` JSON string nested 5000 deep gave an internal RecursionError in ``synth check``."""
    import json

    with pytest.raises(Diagnostics) as exc:
        _check(project, 'step x = generate(seeds, model=m, prompt="q {{question}}", schema='
               + json.dumps(_nested_json(depth)) + ")\n")
    d = exc.value.errors[0]
    assert "nests too deeply" in d.message and d.span.line == 8


@pytest.mark.timeout(60)
def test_a_deep_schema_literal_is_a_check_error_and_a_shallow_one_is_not(project):
    inner = '{type: "string"}'
    for _ in range(70):
        inner = '{type: "object", properties: {a: ' + inner + '}}'
    with pytest.raises(Diagnostics) as exc:
        _check(project, 'step x = generate(seeds, model=m, prompt="q", schema={type: "object", properties: {a: '
               + inner + '}})\n')
    assert "nests too deeply" in exc.value.errors[0].message
    import json
    assert _check(project, 'step x = generate(seeds, model=m, prompt="q", schema=' + json.dumps(_nested_json(20)) + ")\n")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("expr", "message"), [
    ("-3", "from 0 to 1024, not -3"),
    ("2000", "from 0 to 1024, not 2000"),
    ("question", "but this expression gives str"),
])
def test_n_from_that_cannot_work_is_a_check_error(project, expr, message):
    """``n_from=-3`` and ``n_from=question`` (a str field) passed check and failed only once the run started."""
    with pytest.raises(Diagnostics) as exc:
        _check(project, f'step x = generate(seeds, model=m, prompt="hi {{{{question}}}}", n_from={expr})\n')
    d = exc.value.errors[0]
    assert message in d.message and (d.span.line, d.span.col) == (8, 68)


@pytest.mark.timeout(60)
def test_n_from_from_fields_is_left_to_the_run(project):
    assert _check(project, 'step x = generate(seeds, model=m, prompt="hi", n_from=min(gold, 3))\n')


@pytest.mark.timeout(60)
def test_a_step_reading_itself_is_one_cycle_error_not_an_unknown_name(project):
    """``step x = cross(seeds, with=x)`` said "'x' is neither a source nor a step" beside the cycle error."""
    with pytest.raises(Diagnostics) as exc:
        _check(project, "step x = cross(seeds, with=x, k=1)\n")
    errs = exc.value.errors
    assert [d.code for d in errs] == ["dependency-cycle"], [d.message for d in errs]
    assert "x -> x" in errs[0].message and errs[0].span.line == 8


@pytest.mark.timeout(120)
def test_an_unbounded_cross_product_fails_clearly_before_building_rows(project, monkeypatch):
    """``cross(k=0)`` between two large nodes was an unbounded product (10^4 x 10^4 rows exhaust memory)."""
    from synthlang.engines.fake import FakeEngine
    from synthlang.ops import crossing

    monkeypatch.setattr(crossing, "MAX_CROSS_ROWS", 8)   # 3 seeds x 3 seeds = 9 rows: over a cap of 8
    prog = _check(project, 'step pairs = cross(seeds, with=seeds, k=0, prefix="other_")\n')
    with pytest.raises(DataError) as exc:
        synthlang.run(prog, db=project / "db.duckdb", engine_factory=lambda m: FakeEngine())
    assert "3 x 3 = 9 rows, over the limit of 8" in str(exc.value)
    monkeypatch.setattr(crossing, "MAX_CROSS_ROWS", 9)   # at the cap: runs
    s = synthlang.run(prog, db=project / "db2.duckdb", engine_factory=lambda m: FakeEngine())
    assert s.status == "finished"


@pytest.mark.timeout(120)
def test_a_cross_of_a_node_with_itself_pairs_its_rows(project):
    """``cross(seeds, with=seeds)`` made 0 rows: the scheduler left a node option naming the step's own input empty."""
    from synthlang.engines.fake import FakeEngine

    prog = _check(project, 'step pairs = cross(seeds, with=seeds, k=0, prefix="other_")\n')
    s = synthlang.run(prog, db=project / "db.duckdb", engine_factory=lambda m: FakeEngine())
    assert s.status == "finished"
    assert {st.name: st.rows_out for st in s.steps}["pairs"] == 9   # 3 x 3
