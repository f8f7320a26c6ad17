"""Crash safety with real ``synth run`` processes: SIGKILL at many moments, SIGINT, readers during a run.

The fake engine (``model m = fake()``, slowed by SYNTH_FAKE_DELAY) gives breadth
cheaply; one test kills a run on the real embedded engine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import FAKE_RECIPE, REPO, write
from conftest import synth as run_synth

RECIPE = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 12")
EXPECTED_CALLS = 12 + 24


def _env(delay: float) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "SYNTH_FAKE_DELAY": str(delay)}


def synth(*args: str, cwd: Path, delay: float = 0.0, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_synth(*args, cwd=cwd, env=_env(delay), timeout=timeout)


def start(*args: str, cwd: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(delay))


def sql(db: Path, q: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def calls_by_key(db: Path) -> dict[str, tuple]:
    if not db.exists() or not sql(db, "select 1 from duckdb_tables() where table_name = 'calls'"):
        return {}   # killed before the schema was committed
    return {k: (run, created) for k, run, created in sql(db, "select call_key, run_id, created_at from calls")}


def wait_for_calls(db: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Poll (read-only, while the run writes) until at least ``n`` calls are committed."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            try:
                got = sql(db, "select count(*) from calls")[0][0]
            except duckdb.Error:
                got = 0  # between the writer's commits only; retry
            if got >= n:
                return got
        time.sleep(0.05)
    raise AssertionError("the run made no progress")


def invariants(db: Path) -> dict[str, int]:
    """Each row id, lineage edge and call key once; every non-seed row has its parents stored."""
    assert sql(db, "select count(*) - count(distinct row_id) from rows") == [(0,)]
    assert sql(db, "select count(*) - count(distinct call_key) from calls") == [(0,)]
    assert sql(db, "select count(*) from (select child_id, parent_id from lineage group by all having count(*) > 1)") == [(0,)]
    assert sql(db, "select count(*) from lineage l left join rows r on r.row_id = l.parent_id where r.row_id is null") == [(0,)]
    assert sql(db, "select count(*) from rows r where step <> 'seeds' and not exists "
                   "(select 1 from lineage l where l.child_id = r.row_id)") == [(0,)]
    return dict(sql(db, "select step, count(*) from rows group by step"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the same recipe: its counts and export are what every resumed run must equal."""
    root = tmp_path_factory.mktemp("ref")
    shutil.copytree(REPO / "recipes" / "data", root / "data")
    write(root / "c.synth", RECIPE)
    r = synth("run", "c.synth", "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    db = root / ".synth" / "synth.duckdb"
    return {"counts": invariants(db), "calls": sql(db, "select count(*) from calls")[0][0],
            "export": sorted((root / "out" / "v.jsonl").read_text(encoding="utf-8").splitlines())}


def _project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "recipes" / "data", tmp_path / "data")
    write(tmp_path / "c.synth", RECIPE)
    return tmp_path


def test_sigkill_at_many_moments_resumes_without_loss_or_duplicates(tmp_path, reference):
    root = _project(tmp_path)
    db = root / ".synth" / "synth.duckdb"
    assert reference["calls"] == EXPECTED_CALLS
    rnd = random.Random(5)
    kills = 0
    for _ in range(15):
        before = calls_by_key(db)
        p = start("run", "c.synth", "--quiet", cwd=root, delay=0.05)
        time.sleep(rnd.uniform(0.3, 1.0))   # startup ~0.4 s, then ~1.2 s of calls: any moment, mid-commit included
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate()
        after = calls_by_key(db)
        # no call committed before this process started was issued again by it
        assert {k: after[k] for k in before} == before
        if p.returncode == 0:
            break
    assert kills >= 4
    r = synth("run", "c.synth", "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    assert invariants(db) == reference["counts"]
    assert sql(db, "select count(*) from calls")[0][0] == reference["calls"]
    assert sorted((root / "out" / "v.jsonl").read_text(encoding="utf-8").splitlines()) == reference["export"]
    statuses = [s for (s,) in sql(db, "select status from runs order by started_at")]
    assert statuses[-1] == "finished" and "running" not in statuses


def test_sigint_finishes_writes_in_flight_prints_resume_and_exits_nonzero(tmp_path, reference):
    root = _project(tmp_path)
    db = root / ".synth" / "synth.duckdb"
    # 0.4 s per call (36 calls, ~14 s): the bulk writer holds the file up to Store.HOLD_MAX_S while no synth reader
    # asks, so this plain duckdb reader may first see calls seconds into the run; the SIGINT must land mid-run
    p = start("run", "c.synth", "--quiet", cwd=root, delay=0.4)
    wait_for_calls(db, 3, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "Resume with: synth run c.synth --quiet" in out and "Traceback" not in err
    assert sql(db, "select status from runs") == [("interrupted",)]
    made = sql(db, "select calls_made from runs")[0][0]
    # the call in flight when Ctrl-C came was finished and committed: the run's own count equals what is stored
    assert made == sql(db, "select count(*) from calls")[0][0] and made < EXPECTED_CALLS
    before = calls_by_key(db)
    r = synth("run", "c.synth", "--quiet", cwd=root)
    assert r.returncode == 0, r.stderr
    assert {k: v for k, v in calls_by_key(db).items() if k in before} == before
    assert invariants(db) == reference["counts"]
    assert f"calls: {EXPECTED_CALLS - made} made" in r.stdout


def test_budget_flag_stops_with_clear_message_and_continues(tmp_path, reference):
    root = _project(tmp_path)
    db = root / ".synth" / "synth.duckdb"
    r = synth("run", "c.synth", "--quiet", "--max-calls", "10", cwd=root)
    assert r.returncode == 4 and "Traceback" not in r.stderr + r.stdout
    assert "calls budget of 10 reached" in r.stdout and "continue where this run stopped" in r.stdout
    assert sql(db, "select status, calls_made from runs") == [("budget", 10)]
    r = synth("run", "c.synth", "--quiet", "--max-calls", "100", cwd=root)
    assert r.returncode == 0, r.stderr
    assert f"calls: {EXPECTED_CALLS - 10} made" in r.stdout
    assert invariants(db) == reference["counts"]


def test_readers_work_while_a_run_writes(tmp_path):
    root = _project(tmp_path)
    db = root / ".synth" / "synth.duckdb"
    # 0.8 s a call (~29 s): the bulk writer made the run fast enough that 0.15 s ended it before the readers were done
    p = start("run", "c.synth", "--quiet", cwd=root, delay=0.8)
    try:
        wait_for_calls(db, 2, p)
        # a second writer is refused at once with a clear message
        t0 = time.monotonic()
        second = synth("run", "c.synth", "--quiet", cwd=root)
        assert second.returncode == 1 and time.monotonic() - t0 < 10, second.stdout
        assert "another synthlang process" in second.stderr and "Traceback" not in second.stderr
        seen = []
        for _ in range(3):
            t0 = time.monotonic()
            q = synth("query", "select count(*) as n from calls", "--format", "json", cwd=root, timeout=30)
            assert q.returncode == 0 and "Traceback" not in q.stderr, q.stderr
            assert time.monotonic() - t0 < 15
            seen.append(json.loads(q.stdout)["n"])
        assert seen == sorted(seen) and seen[-1] >= 2
        rid = json.loads(synth("query", "select row_id from rows where step='r' limit 1", "--format", "json",
                               cwd=root).stdout)["row_id"]
        lin = synth("lineage", rid, "--json", cwd=root)
        assert lin.returncode == 0 and json.loads(lin.stdout)["parents"][0]["step"] == "seeds", lin.stderr
        ex = synth("export", "r", "--to", "out/r.jsonl", cwd=root)
        assert ex.returncode == 0, ex.stderr
        assert p.poll() is None, "the run should still be going (make the recipe slower)"
    finally:
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert sql(db, "select count(*) from calls")[0][0] == EXPECTED_CALLS


@pytest.mark.slow
def test_sigkill_real_embedded_engine_resumes(tmp_path):
    root = tmp_path
    shutil.copytree(REPO / "recipes" / "data", root / "data")
    # 8 seeds x 2 calls at 24 tokens: several seconds of work even on a quiet machine, so the kill
    # after the first committed call lands mid-run (3 seeds at 12 tokens could finish first).
    write(root / "e.synth", RECIPE.replace("fake(temperature=0.5, max_tokens=32)", "embedded(temperature=0.7, max_tokens=24)")
          .replace("limit: int = 12", "limit: int = 8").replace("n=2", "n=1"))
    db = root / ".synth" / "synth.duckdb"
    p = start("run", "e.synth", "--quiet", cwd=root, delay=0)
    wait_for_calls(db, 1, p, timeout=240)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL, "the run finished before the kill"
    assert sql(db, "select status from runs") == [("running",)], "the kill landed after the run had finished"
    before = calls_by_key(db)
    assert len(before) >= 1
    r = synth("run", "e.synth", "--quiet", cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr
    after = calls_by_key(db)
    assert {k: after[k] for k in before} == before          # no finished call issued again
    counts = invariants(db)
    ok_r = sql(db, "select count(*) from rows where step='r' and status='ok'")[0][0]
    assert len(after) == 8 + ok_r        # one call per seed, one per rephrasing that made it (24 tokens may truncate)
    assert counts["seeds"] == 8 and counts["r"] == 8 and counts.get("a", 0) == ok_r
    assert sql(db, "select status from runs order by started_at") == [("killed",), ("finished",)]
