"""Loops: checker errors, rounds, only-new-rows feedback, until, resume mid-loop, the external train command.

Runs on the fake engine (scheduling only); the real-engine loop runs are in test_recipes_real.py.
"""

from __future__ import annotations

import sys

import duckdb
import pytest
from conftest import write

import synthlang
from synthlang.errors import ConfigError, Diagnostics

LOOP = """
param limit: int = 3
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
}
loop grow(rounds=3EXTRA) {
  step written = new_question(seeds.new, model=m, field=question, k=2, min_words=1)
  step solved = answer(written, model=m, field=question) -> answer, gold
  step fresh = dedup(solved, field=question, mode="exact", against=seeds.all)
  feed seeds from fresh
}
step after = filter(seeds, where=len(question) > 0)
export grow to "out/grow.jsonl" as jsonl
"""


def _check(project, text):
    return synthlang.check_file(write(project / "r.synth", text))


def _run(project, factory, text):
    return synthlang.run(_check(project, text), db=project / "db.duckdb", engine_factory=factory)


def _codes(project, text):
    with pytest.raises(Diagnostics) as ei:
        _check(project, text)
    return [e.code for e in ei.value.errors]


def test_loop_without_feed_is_an_error(project):
    text = LOOP.replace("EXTRA", "").replace("  feed seeds from fresh\n", "")
    assert "loop-no-feed" in _codes(project, text)


def test_feed_rows_must_have_pool_fields(project):
    text = LOOP.replace("EXTRA", "").replace("feed seeds from fresh", "feed seeds from written")
    assert "loop-feed-fields" in _codes(project, text)


def test_step_before_loop_cannot_read_loop_rows_and_args_are_checked(project):
    text = LOOP.replace("EXTRA", "").replace("param limit", "step early = filter(fresh, where=true)\nparam limit").replace("rounds=3", "rounds=3, speed=2")
    codes = _codes(project, text)
    assert "loop-order" in codes and "unknown-option" in codes


def test_rounds_feed_only_new_rows_and_pool_grows(project, fake_factory):
    s = _run(project, fake_factory, LOOP.replace("EXTRA", ""))
    assert s.status == "finished"
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    per_round = dict(con.execute("SELECT round, count(*) FROM rows WHERE step='written' GROUP BY round").fetchall())
    fed = dict(con.execute("SELECT round, count(*) FROM rows WHERE step='fresh' AND status='ok' GROUP BY round").fetchall())
    assert per_round[0] == 3
    # round r+1 reads only the rows fed in round r
    for r in range(1, max(per_round) + 1):
        assert per_round[r] == fed[r - 1]
    # row ids differ per round; lineage edges carry the child's round
    assert con.execute("SELECT count(*) - count(DISTINCT row_id) FROM rows").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM lineage l JOIN rows r ON r.row_id=l.child_id WHERE l.round<>r.round").fetchone()[0] == 0
    # after the loop the pool's name holds seeds + every fed row
    by = {x.name: x for x in s.steps}
    assert by["after"].rows_in == 3 + sum(fed.values())
    out = (project / "out" / "grow.jsonl").read_text().splitlines()
    assert len(out) == sum(fed.values())


def test_until_stops_early(project, fake_factory):
    s = _run(project, fake_factory, LOOP.replace("EXTRA", ", until=round >= 0"))
    rounds = {x.name for x in s.steps if "[round" in x.name}
    assert rounds and all(n.endswith("[round 0]") for n in rounds)


class _Crash:
    """A fake engine factory that raises KeyboardInterrupt after `after` calls (a crash mid-loop)."""

    def __init__(self, after: int) -> None:
        from synthlang.engines.fake import FakeEngine

        self.engine = FakeEngine()
        self.after = after
        outer = self

        class E:
            kind, model_id = "fake", "fake"

            def generate(self, reqs):
                for r in outer.engine.generate(reqs):
                    if outer.engine.calls > outer.after:
                        raise KeyboardInterrupt
                    yield r

            def close(self):
                pass

        self.e = E()

    def __call__(self, model):
        return self.e


def test_resume_after_crash_mid_loop_loses_and_repeats_nothing(project, fake_factory, tmp_path):
    text = LOOP.replace("EXTRA", "")
    clean = _run(project, fake_factory, text)
    total = clean.calls_made
    (project / "db.duckdb").unlink()
    crash = _Crash(after=total // 2 + 1)
    with pytest.raises(KeyboardInterrupt):
        _run(project, crash, text)
    done = crash.engine.calls - 1
    resumed = _run(project, fake_factory, text)
    assert resumed.status == "finished"
    assert done + resumed.calls_made == total
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == total


def test_train_command_runs_between_rounds_and_is_recorded(project, fake_factory, monkeypatch):
    cmd = f'{sys.executable} -c "import sys, pathlib; pathlib.Path(sys.argv[2]).mkdir(parents=True); print(len(open(sys.argv[1]).readlines()))" {{data}} {{out}}'
    text = LOOP.replace("EXTRA", ", train=\"" + cmd.replace('"', '\\"') + "\"")
    monkeypatch.delenv("SYNTH_ALLOW_TRAIN", raising=False)
    with pytest.raises(ConfigError):
        _run(project, fake_factory, text)
    from synthlang.plan.train import allowance

    recipe = next(project.glob("*.synth"))
    monkeypatch.setenv("SYNTH_ALLOW_TRAIN", allowance(recipe))   # this file, as it is now
    _run(project, fake_factory, text)
    con = duckdb.connect(str(project / "db.duckdb"))
    rows = con.execute("SELECT round, exit_status, output_path, command, output_tail FROM train_runs ORDER BY round").fetchall()
    assert rows and all(r[1] == 0 for r in rows)
    assert rows[0][0] == 0 and rows[0][2].endswith("output") and "data.jsonl" in rows[0][3]
    assert int(rows[0][4].strip()) > 3          # the pool so far was handed over
    con.close()
    _run(project, fake_factory, text)           # a re-run does not train again on the same rows
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM train_runs").fetchone()[0] == len(rows)
