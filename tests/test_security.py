"""Issue 11, security: a shared recipe cannot read or write outside its project, wipe the call cache,
exhaust the machine through its templates, run commands it was not allowed, or leak an API key.

Each case is the exact input from the issue, in a fresh folder (no ``.git`` above it) whose
``data/g.jsonl`` holds the first lines of the shipped GSM8K train file. The engine is the fake one
(what is under test is checking, sources, templates and the store).
"""

from __future__ import annotations

import time

import duckdb
import pytest
from conftest import REPO, synth, write

import synthlang
from synthlang.errors import Diagnostics

GSM = (REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text(encoding="utf-8").splitlines()[:4]

BASE = """recipe s "security"
model m = fake(temperature=0.5, max_tokens=32)
source g = jsonl("data/g.jsonl") {
  question: str
  answer: str
}
"""


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    write(root / "data" / "g.jsonl", "\n".join(GSM) + "\n")
    write(tmp_path / "secret.txt", "TOP-SECRET-42")
    return root


def _prime(root):
    """One real run, so the store has calls, rows and lineage to protect."""
    p = write(root / "first.synth", BASE + "step r = rephrase(g, model=m) -> rq\n")
    return synthlang.run(synthlang.check_file(p), db=root / "db.duckdb")


def _count(root, table):
    con = duckdb.connect(str(root / "db.duckdb"), read_only=True)
    try:
        return con.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------ item 1: sql sources
HOSTILE_SQL = [
    ("DELETE FROM calls; DELETE FROM rows; SELECT 'q' AS question", "statements"),
    ("DROP TABLE lineage; SELECT 'q' AS question", "statements"),
    ("DELETE FROM calls", "DELETE"),
    ("COPY rows TO '/tmp/synth-leak.csv'", "COPY"),
    ("ATTACH '/tmp/synth-elsewhere.duckdb' AS x", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("CREATE TABLE x AS SELECT 1 AS question", "CREATE"),
    ("UPDATE runs SET status = 'x'", "UPDATE"),
    ("PRAGMA database_list", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("SELEC 1", "not valid SQL"),
]


@pytest.mark.parametrize("sql,word", HOSTILE_SQL)
def test_sql_source_that_is_not_one_select_is_a_positioned_check_error(proj, sql, word):
    write(proj / "r.synth", BASE + f'source e = sql("{sql}") {{\n  question: str\n}}\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "sql-not-select" and (e.span.line, e.span.col) == (7, 16), e
    assert word in e.message and "SELECT" in (e.hint or "")


@pytest.mark.parametrize("sql", [
    "SELECT content AS question FROM read_text('../secret.txt')",
    "SELECT column0 AS question FROM read_csv('/etc/passwd', header=false)",
    "SELECT * FROM read_json_auto('/etc/hostname')",
    "WITH t AS (SELECT content AS question FROM read_text('../secret.txt')) SELECT question FROM t",
])
def test_a_select_cannot_read_files(proj, sql):
    _prime(proj)
    calls = _count(proj, "calls")
    p = write(proj / "r.synth", BASE + f'source e = sql("{sql}") {{\n  question: str\n}}\n'
              'step x = rephrase(e, model=m) -> rq\n')
    prog = synthlang.check_file(p)   # a SELECT passes the checker; the connection refuses file access
    with pytest.raises(synthlang.errors.DataError) as ei:
        synthlang.run(prog, db=proj / "db.duckdb")
    assert "SQL error" in str(ei.value) and "disabled by configuration" in str(ei.value), ei.value
    assert _count(proj, "calls") == calls
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    assert not [r for r in con.execute("select data from rows").fetchall() if "TOP-SECRET" in r[0]]
    con.close()


def test_cli_run_of_a_destructive_sql_source_is_refused_before_anything_runs(proj):
    _prime(proj)
    before = (_count(proj, "calls"), _count(proj, "rows"), _count(proj, "lineage"))
    write(proj / "r.synth", BASE + 'source e = sql("DELETE FROM calls; DELETE FROM rows; SELECT \'q\' AS question") '
          '{\n  question: str\n}\nstep x = rephrase(e, model=m) -> rq\n')
    r = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=proj)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "r.synth:7:16: error: sql source 'e': 3 statements" in r.stderr, r.stderr
    assert (_count(proj, "calls"), _count(proj, "rows"), _count(proj, "lineage")) == before


def test_a_plain_select_over_the_runs_store_still_works(proj):
    _prime(proj)
    p = write(proj / "r.synth", BASE + 'source e = sql("WITH t AS (SELECT data->>\'rq\' AS question FROM rows '
              'WHERE step = \'r\') SELECT question FROM t ORDER BY question") {\n  question: str\n}\n'
              'step x = rephrase(e, model=m) -> rq\n')
    s = synthlang.run(synthlang.check_file(p), db=proj / "db.duckdb")
    by = {x.name: x for x in s.steps}
    assert by["e"].rows_out == 4 and by["x"].calls_made == 4
    assert synthlang.plan(synthlang.check_file(p))   # plan counts on the default db: never fails


# ------------------------------------------------------------ item 3: run lock on the resolved path
def test_two_writers_through_a_symlinked_db_are_refused(proj):
    from synthlang.errors import StoreLocked
    from synthlang.store import Store

    (proj / "real").mkdir()
    (proj / "alias.duckdb").symlink_to(proj / "real" / "s.duckdb")
    with Store(proj / "real" / "s.duckdb"):
        with pytest.raises(StoreLocked) as ei:
            Store(proj / "alias.duckdb")
        assert "another synthlang process" in str(ei.value)
    with Store(proj / "alias.duckdb"):   # free again once the first writer closed
        pass


def test_cli_second_run_through_a_symlinked_db_is_refused(proj):
    (proj / "link.duckdb").symlink_to(proj / "db.duckdb")
    write(proj / "r.synth", BASE + "step r = rephrase(g, model=m) -> rq\n")
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "0.5"}
    first = subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", "run", "r.synth", "--db", "db.duckdb", "--quiet"],
                             cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (proj / "db.duckdb.lock").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        r = synth("run", "r.synth", "--db", "link.duckdb", "--quiet", cwd=proj, env={"SYNTH_FAKE_DELAY": "0.5"})
        assert r.returncode != 0 and "another synthlang process" in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert _count(proj, "calls") == 4
