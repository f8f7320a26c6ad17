"""``synth run --on ray``: engine replicas as Ray actors, on a real local Ray (``num_cpus=2``, once per module).

* the quickstart recipe on the real embedded engine gives the same calls, rows and lineage on Ray as locally;
* a driver stopped with Ctrl-C, then killed with SIGKILL, then resumed on Ray: nothing lost, duplicated or re-issued;
* a replica actor killed mid-batch: Ray restarts it and re-runs the batch, every key is committed once;
* a budget stops a Ray run at exactly its limit; bad ``--on`` / ``synth.toml`` give clear errors.

Scheduling and crash tests use the fake engine (its delay, ``SYNTH_FAKE_DELAY``, is set before Ray starts
so the worker processes inherit it); the equivalence test uses the real model.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import FAKE_RECIPE, REPO, synth, write

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # the local test cluster binds loopback only
ray = pytest.importorskip("ray")

DELAY = "0.5"   # seconds per fake call in the replicas: a 36-call run lasts ~9 s on 2 replicas
RECIPE = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 12")
EXPECTED_CALLS = 12 + 24


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs for this module; its workers see SYNTH_FAKE_DELAY."""
    from synthlang.engines.ray_pool import start_ray

    old = os.environ.get("SYNTH_FAKE_DELAY")
    os.environ["SYNTH_FAKE_DELAY"] = DELAY
    info = start_ray(num_cpus=2)
    yield info
    ray.shutdown()
    if old is None:
        os.environ.pop("SYNTH_FAKE_DELAY", None)
    else:
        os.environ["SYNTH_FAKE_DELAY"] = old


def sql(db: Path, q: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """What must match between two runs: calls (key, reply, finish reason, usage), rows and lineage."""
    return {
        "calls": sorted(sql(db, "select call_key, response, finish_reason, prompt_tokens, completion_tokens from calls")),
        "rows": sorted(sql(db, "select row_id, step, status, error, data::varchar from rows")),
        "lineage": sorted(sql(db, "select * from lineage")),
    }


def once_each(db: Path) -> None:
    assert sql(db, "select count(*) - count(distinct call_key) from calls") == [(0,)]
    assert sql(db, "select count(*) - count(distinct row_id) from rows") == [(0,)]
    assert sql(db, "select count(*) from (select child_id, parent_id from lineage group by all having count(*) > 1)") == [(0,)]


def project(root: Path, recipe: str = RECIPE) -> Path:
    shutil.copytree(REPO / "recipes" / "data", root / "data")
    write(root / "c.synth", recipe)
    return root


def run_local(root: Path, recipe: str = "c.synth", *flags: str) -> subprocess.CompletedProcess:
    r = synth("run", recipe, "--quiet", *flags, cwd=root, env={"SYNTH_FAKE_DELAY": "0"}, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# ------------------------------------------------------------------ the real model, local vs Ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_on_embedded_actor_pool_equals_the_local_run(tmp_path, cluster):
    model = "teacher=embedded(temperature=0.7, max_tokens=40)"
    dbs = {}
    for where in ("local", "ray"):
        root = tmp_path / where
        shutil.copytree(REPO / "recipes" / "data", root / "data")
        shutil.copy(REPO / "recipes" / "quickstart.synth", root / "quickstart.synth")
        flags = ["--param", "limit=2", "--model", model]
        if where == "ray":
            flags += ["--on", f"ray://{cluster['address']}"]
        run_local(root, "quickstart.synth", *flags)
        dbs[where] = root / ".synth" / "synth.duckdb"
    local, on_ray = snapshot(dbs["local"]), snapshot(dbs["ray"])
    # 2 seeds, 2 rephrase calls, and an answer call per rephrasing not cut at 40 tokens (the real model decides)
    assert 2 <= len(local["calls"]) <= 4 and len(local["rows"]) >= 2 + 2
    assert on_ray == local   # same call keys, same replies, same rows (ids, fields, failures), same lineage
    # ... and the Ray run's calls really ran in actor processes, not in the driver
    where = sql(dbs["ray"], "select distinct meta->>'ray_actor', meta->>'ray_pid' from calls")
    assert where and all(a is not None and p is not None for a, p in where)
    assert sql(dbs["local"], "select count(*) from calls where meta->>'ray_actor' is not null") == [(0,)]
    once_each(dbs["ray"])


# ------------------------------------------------------------------ kill -9 of the driver
@pytest.mark.timeout(600)
def test_driver_killed_then_resumed_on_ray_loses_and_duplicates_nothing(tmp_path, cluster):
    ref = project(tmp_path / "ref")
    run_local(ref)
    reference = snapshot(ref / ".synth" / "synth.duckdb")
    assert len(reference["calls"]) == EXPECTED_CALLS

    root = project(tmp_path / "p")
    db = root / ".synth" / "synth.duckdb"
    cmd = [sys.executable, "-m", "synthlang.cli.main", "run", "c.synth", "--quiet", "--on", f"ray://{cluster['address']}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    def start_then(sig: int, at_least: int) -> subprocess.Popen:
        p = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0, got = time.monotonic(), 0
        while time.monotonic() - t0 < 300 and got < at_least:
            assert p.poll() is None, p.communicate()
            if db.exists():
                try:
                    got = sql(db, "select count(*) from calls")[0][0]
                except duckdb.Error:
                    got = 0   # the writer holds the file between commits; poll again
            time.sleep(0.05)
        p.send_signal(sig)
        p.communicate(timeout=120)
        return p

    # Ctrl-C: the calls in flight are committed, the run is marked interrupted, exit 130.
    p = start_then(signal.SIGINT, 4)
    assert p.returncode == 130
    assert sql(db, "select status from runs") == [("interrupted",)]
    # kill -9 later in the run
    p = start_then(signal.SIGKILL, sql(db, "select count(*) from calls")[0][0] + 1)   # the first new commit: ~8 s of calls are left
    assert p.returncode == -signal.SIGKILL
    before = {k: (r, c) for k, r, c in sql(db, "select call_key, run_id, created_at from calls")}
    assert 8 <= len(before) < EXPECTED_CALLS, "the kill must land mid-run"

    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    after = {k: (run, c) for k, run, c in sql(db, "select call_key, run_id, created_at from calls")}
    assert {k: after[k] for k in before} == before          # nothing committed was issued again
    assert sql(db, "select count(*) from calls where meta->>'ray_actor' is null") == [(0,)]   # all ran on Ray
    once_each(db)
    assert snapshot(db) == reference                       # nothing lost: same calls, rows, lineage as one local run
    assert sorted((root / "out" / "v.jsonl").read_text().splitlines()) == \
        sorted((ref / "out" / "v.jsonl").read_text().splitlines())


# ------------------------------------------------------------------ a replica dies mid-batch
@pytest.mark.timeout(600)
def test_replica_killed_mid_batch_is_restarted_and_each_key_committed_once(tmp_path, cluster):
    from synthlang.api import check_file
    from synthlang.execute.cluster import ClusterConfig, engine_factory
    from synthlang.execute.runner import run_program
    from synthlang.store import Store

    ref = project(tmp_path / "ref")
    run_local(ref)
    reference = snapshot(ref / ".synth" / "synth.duckdb")

    root = project(tmp_path / "p")
    program = check_file(root / "c.synth")
    config = ClusterConfig(on="ray", models={"m": {"replicas": 2, "batch_size": 3}})
    factory = engine_factory(program, config)
    assert factory is not None
    killed: list[int] = []

    def killer() -> None:
        # Wait until the pool has returned a few results, then SIGKILL replica 0 while it runs a batch.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            eng = factory.engines.get("m")
            if eng is not None and sum(s.calls for s in eng.stats) >= 4:
                pid = eng.actor_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    with Store(root / ".synth" / "synth.duckdb") as store:
        summary = run_program(program, store, engine_factory=factory)
    th.join(5)
    assert summary.status == "finished" and killed
    db = root / ".synth" / "synth.duckdb"
    assert summary.calls_made == EXPECTED_CALLS                 # each key handed to the runner once
    once_each(db)
    assert snapshot(db) == reference
    pids0 = {p for (p,) in sql(db, "select distinct (meta->>'ray_pid')::int from calls where meta->>'ray_actor' = '0'")}
    assert killed[0] in factory.engines["m"].stats[0].pids and len(factory.engines["m"].stats[0].pids) >= 2, \
        "replica 0 was restarted in a new process"
    assert pids0 - {killed[0]}, "replica 0's restarted process finished calls"
    assert factory.engines["m"].duplicates_dropped >= 0


# ------------------------------------------------------------------ budget, config errors
@pytest.mark.timeout(300)
def test_budget_stops_a_ray_run_at_its_limit_and_commits_the_window_in_flight(tmp_path, cluster):
    import synthlang
    from synthlang.errors import BudgetExceeded
    from synthlang.execute.budget import Budget

    root = project(tmp_path)
    program = synthlang.check_file(root / "c.synth")
    db = root / ".synth" / "synth.duckdb"
    with pytest.raises(BudgetExceeded):
        synthlang.run(program, db, budget=Budget(calls=10), on="ray")   # the Python API's --on
    assert sql(db, "select count(*) from calls") == [(10,)]
    assert sql(db, "select status from runs") == [("budget",)]
    assert sql(db, "select count(*) from calls where meta->>'ray_actor' is null") == [(0,)]
    once_each(db)


def test_openai_models_stay_in_the_driver_with_adaptive_concurrency(tmp_path, cluster):
    from synthlang.api import check_file
    from synthlang.engines.openai import OpenAIEngine
    from synthlang.execute.cluster import ClusterConfig, engine_factory

    root = project(tmp_path, RECIPE.replace('model m = fake(', 'model m = openai("smollm2", base_url="http://127.0.0.1:9/v1", '))
    program = check_file(root / "c.synth")
    factory = engine_factory(program, ClusterConfig(on="ray"))
    assert factory is not None and factory.ray_models == []
    engine = factory(program.models["m"])
    assert isinstance(engine, OpenAIEngine) and engine.limiter.adaptive
    engine.close()


def test_bad_on_and_bad_synth_toml_are_clear_errors(tmp_path):
    root = project(tmp_path)
    r = synth("run", "c.synth", "--on", "slurm", cwd=root)
    assert r.returncode != 0 and "expected local, ray or ray://ADDRESS" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    write(root / "synth.toml", "[executor]\non = \"ray\"\nnum_cpu = 2\n")
    r = synth("run", "c.synth", cwd=root)
    assert "synth.toml [executor]: unknown key 'num_cpu'; did you mean 'num_cpus'?" in r.stdout + r.stderr
    write(root / "synth.toml", "[executor]\non = ray\n")
    r = synth("run", "c.synth", cwd=root)
    assert "synth.toml: Invalid value (at line 2, column 6)" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    write(root / "synth.toml", "[executor]\non = \"local\"\n[executor.models.teacher]\nreplicas = 2\n")
    r = synth("run", "c.synth", "--on", "ray", cwd=root)
    assert "[executor.models] names no model of this recipe: teacher; models: m" in r.stdout + r.stderr


def test_on_flag_overrides_synth_toml(tmp_path):
    from synthlang.execute.cluster import load_config, parse_on

    assert parse_on("ray://10.0.0.1:6379") == ("ray", "10.0.0.1:6379")
    assert parse_on("ray") == ("ray", None) and parse_on("local") == ("local", None)
    write(tmp_path / "synth.toml", "[executor]\non = \"ray://auto\"\nnum_cpus = 4\n[executor.models.m]\nreplicas = 3\n")
    cfg = load_config(tmp_path / "c.synth")
    assert (cfg.on, cfg.address, cfg.num_cpus, cfg.models) == ("ray", "auto", 4, {"m": {"replicas": 3}})
    cfg = load_config(tmp_path / "c.synth", "local")
    assert (cfg.on, cfg.address) == ("local", None)


@pytest.mark.timeout(300)
def test_one_pool_serves_concurrent_generate_calls_each_gets_its_own_results(cluster):
    """A streaming scheduler may run two steps of one model at once: each generate() gets exactly its keys."""
    from synthlang.engines.base import Request, SamplingParams
    from synthlang.engines.fake import FakeEngine
    from synthlang.engines.ray_pool import RayEngine

    engine = RayEngine("fake", "fake", {}, replicas=2, num_cpus=0.5, batch_size=2)
    sp = SamplingParams(max_tokens=8)
    reqs = {s: [Request(f"{s}{i}", ({"role": "user", "content": f"step {s} row {i}: 3 + {i}"},), sp, i) for i in range(7)]
            for s in "ab"}
    got: dict[str, list] = {}

    def work(s: str) -> None:
        got[s] = list(engine.generate(iter(reqs[s])))

    threads = [threading.Thread(target=work, args=(s,)) for s in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        local = FakeEngine()
        for s in "ab":
            assert sorted(r.key for r in got[s]) == sorted(r.key for r in reqs[s])
            expected = {r.key: r.text for r in local.generate(reqs[s])}
            assert {r.key: r.text for r in got[s]} == expected           # the same replies as in-process
            assert {r.meta["ray_actor"] for r in got[s]} <= {0, 1}
        assert sum(st["calls"] for st in engine.actor_stats()) == 14
    finally:
        engine.close()


@pytest.mark.timeout(300)
def test_a_model_no_replica_can_load_is_a_clear_engine_error(cluster):
    from synthlang.engines.ray_pool import RayEngine
    from synthlang.errors import EngineUnavailable

    engine = RayEngine("embedded", "/nope/x.gguf", {"threads": 1}, replicas=1, num_cpus=0.5)
    with pytest.raises(EngineUnavailable) as exc:
        engine.load()
    assert str(exc.value) == "embedded('/nope/x.gguf') on Ray: a replica could not load: model file not found: /nope/x.gguf"
    assert engine.actors == []   # the pool was taken down
