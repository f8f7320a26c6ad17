"""The dataflow core (issue 9): streaming between steps, concurrent branches, determinism under any
completion order, global operators as barriers, the bulk writer's journal, recipe-scoped views, O(1) budgets.

Scheduling tests use the fake engine (slowed by SYNTH_FAKE_DELAY) on real GSM8K seed rows and a real DuckDB file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from conftest import FAKE_RECIPE, REPO, write

import synthlang
from synthlang.engines.fake import FakeEngine
from synthlang.errors import StoreError
from synthlang.execute.budget import Budget
from synthlang.execute.runner import Runner
from synthlang.store import Store

pytestmark = pytest.mark.timeout(120)


def _runner(project: Path, text: str, factory, db: str = "db.duckdb", name: str = "r.synth") -> Runner:
    prog = synthlang.check_file(write(project / name, text))
    store = Store(project / db)
    return Runner(prog, store, engine_factory=factory)


def _run(runner: Runner):
    try:
        return runner.run()
    finally:
        runner.store.close()


def _events(runner: Runner) -> dict[tuple[str, str], float]:
    return {(step, ev): t for t, step, ev in runner.events}


def test_step_two_sends_before_step_one_finishes(project, fake_factory, monkeypatch):
    monkeypatch.setenv("SYNTH_FAKE_DELAY", "0.02")
    r = _runner(project, FAKE_RECIPE.replace("limit: int = 4", "limit: int = 12"), fake_factory)
    s = _run(r)
    ev = _events(r)
    assert s.status == "finished" and s.calls_made == 12 + 24
    # answer's first call went out while rephrase still had calls to finish
    assert ev[("a", "first_send")] < ev[("r", "last_result")]


def test_independent_branches_run_concurrently(project, monkeypatch):
    monkeypatch.setenv("SYNTH_FAKE_DELAY", "0.03")
    text = """
recipe br "two branches"
model m1 = fake(temperature=0.5, max_tokens=32)
model m2 = fake(temperature=0.7, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=8) {
  question: str
  answer: str
}
step x = rephrase(seeds, model=m1) -> rq
step y = answer(seeds, model=m2)
"""
    engines: dict[str, FakeEngine] = {}

    def factory(m):
        return engines.setdefault(m.name, FakeEngine())

    r = _runner(project, text, factory)
    s = _run(r)
    ev = _events(r)
    assert s.status == "finished" and engines["m1"].calls == 8 and engines["m2"].calls == 8
    # each branch started before the other one finished: they overlapped
    assert ev[("x", "first_send")] < ev[("y", "last_result")] and ev[("y", "first_send")] < ev[("x", "last_result")]


class _Shuffled:
    """A fake engine with ``k`` calls in flight, each taking a random few milliseconds (completion order != input order)."""

    kind, model_id = "fake", "fake"

    def __init__(self, k: int) -> None:
        self.k = k
        self.inner = FakeEngine()

    def generate(self, reqs):
        import queue
        import random
        import threading
        import time
        from concurrent.futures import ThreadPoolExecutor

        out: queue.Queue = queue.Queue()
        rnd = random.Random(self.k)

        def one(req, delay):
            time.sleep(delay)
            out.put(next(iter(self.inner.generate([req]))))

        def feed(pool):
            n = 0
            for req in reqs:
                pool.submit(one, req, rnd.random() * 0.004)
                n += 1
            out.put(("done", n))

        with ThreadPoolExecutor(self.k) as pool:
            threading.Thread(target=feed, args=(pool,), daemon=True).start()
            got, total = 0, None
            while total is None or got < total:
                item = out.get()
                if isinstance(item, tuple):
                    total = item[1]
                    continue
                got += 1
                yield item

    def close(self) -> None:
        pass


def test_same_row_ids_and_export_order_with_1_or_64_in_flight(project):
    text = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 20")
    out = {}
    for k in (1, 64):
        eng = _Shuffled(k)
        s = _run(_runner(project, text, lambda m, e=eng: e, db=f"db{k}.duckdb"))
        assert s.status == "finished"
        con = duckdb.connect(str(project / f"db{k}.duckdb"), read_only=True)
        ids = con.execute("SELECT step, row_id FROM rows ORDER BY 1, 2").fetchall()
        con.close()
        out[k] = (ids, (project / "out" / "v.jsonl").read_text(encoding="utf-8"))
    assert out[1][0] == out[64][0]
    assert out[1][1] == out[64][1]   # byte-identical export, same order
    seeds = [json.loads(x)["question"] for x in (REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text().splitlines()[:20]]
    exported = [json.loads(x) for x in out[64][1].splitlines()]
    # the export follows the input order: seed order, then sample index
    firsts = list(dict.fromkeys(x["question"] for x in exported))
    assert firsts == [q for q in seeds if q in firsts]


class _Stepping:
    """A continuous-batching fake in vLLM's shape: each engine step (5 ms) advances every request in flight by one
    token and finishes those whose length (1-24 tokens, from the key) ran out. With ``join`` it declares
    ``accepts_more`` and pulls requests that became ready before every step, as the vllm engine does."""

    kind, model_id = "fake", "fake"

    def __init__(self, join: bool) -> None:
        self.accepts_more = join
        self.inner = FakeEngine()
        self.turns: list[int] = []            # requests each generate() started with
        self.steps: list[set[str]] = []       # keys in flight at each engine step

    def generate(self, reqs, more=None):
        import time

        running = {r.key: [r, 1 + int(r.key[:2], 16) % 24] for r in reqs}
        self.turns.append(len(running))
        while True:
            if more is not None:
                running.update({r.key: [r, 1 + int(r.key[:2], 16) % 24] for r in more()})
            if not running:
                return
            time.sleep(0.005)
            self.steps.append(set(running))
            for key, slot in list(running.items()):
                slot[1] -= 1
                if slot[1] == 0:
                    del running[key]
                    yield next(iter(self.inner.generate([slot[0]])))

    def close(self) -> None:
        pass


def test_a_later_steps_requests_join_the_running_engine_batch(project):
    """Issue 9: two streamed steps on one engine share its batches. With an engine that accepts requests mid-batch
    (vllm), some engine step holds rephrase and answer calls together; without it none does. Rows and export
    are identical either way."""
    text = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 16")
    out = {}
    for join in (True, False):
        eng = _Stepping(join)
        s = _run(_runner(project, text, lambda m, e=eng: e, db=f"db{join}.duckdb"))
        assert s.status == "finished" and s.calls_made == 16 + 32
        con = duckdb.connect(str(project / f"db{join}.duckdb"), read_only=True)
        step_of = dict(con.execute("SELECT call_key, step FROM calls").fetchall())
        ids = con.execute("SELECT step, row_id FROM rows ORDER BY 1, 2").fetchall()
        con.close()
        mixed = [st for st in eng.steps if {step_of[k] for k in st} == {"r", "a"}]
        out[join] = (mixed, eng.turns, ids, (project / "out" / "v.jsonl").read_text(encoding="utf-8"))
    mixed, turns, ids, export = out[True]
    assert mixed, "no engine step had rephrase and answer requests in flight together"
    assert len(turns) < len(out[False][1])   # fewer generate() turns: requests joined running batches instead
    assert out[False][0] == []               # the control: a batch that cannot grow never mixes the steps
    assert ids == out[False][2] and export == out[False][3]


def test_global_operator_after_a_streamed_chain_sees_its_whole_input_once(project, fake_factory, monkeypatch):
    monkeypatch.setenv("SYNTH_FAKE_DELAY", "0.005")
    text = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 10").replace(
        'export v to "out/v.jsonl" as jsonl', 'step d = dedup(v, field=final_answer, mode="exact")\nexport d to "out/d.jsonl" as jsonl')
    r = _runner(project, text, fake_factory)
    seen: list[list[str]] = []
    i = next(j for j, st in enumerate(r.program.steps) if st.name == "d")
    st = r.program.steps[i]
    inner = st.op.apply

    def counting(rows, opts, *ctx):
        seen.append([x["question"] + str(x.get("final_answer")) for x in rows])
        return inner(rows, opts, *ctx)

    r.program.steps[i] = replace(st, op=replace(st.op, apply=counting))
    s = _run(r)
    assert s.status == "finished"
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    n_v = con.execute("SELECT count(*) FROM rows WHERE step='v' AND status='ok'").fetchone()[0]
    con.close()
    assert len(seen) == 1 and len(seen[0]) == n_v == 20


def test_journal_keeps_calls_of_a_killed_writer(tmp_path):
    db = tmp_path / "j.duckdb"
    code = f"""
import os, signal
from synthlang.store import Store
st = Store({str(db)!r})
st.flush()
for i in range(3):
    st.commit_result("run1", "s", {{"key": f"k{{i}}", "engine": "fake", "model": "m", "messages": [], "sampling": {{}},
                     "seed": 1, "sample_index": 0, "text": "hi"}}, [])
os.kill(os.getpid(), signal.SIGKILL)
"""
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 0   # never flushed
    con.close()
    with Store(db) as st:
        assert st.replayed == 3
        assert sorted(st.get_calls(["k0", "k1", "k2"])) == ["k0", "k1", "k2"]
    with Store(db) as st:
        assert st.replayed == 0     # replayed once, then the journal is empty


def test_two_recipes_with_the_same_step_names_have_their_own_views(project, fake_factory):
    base = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 3")
    a = base.replace('recipe t "test"', 'recipe alpha "a"')
    b = base.replace('recipe t "test"', 'recipe beta "b"').replace("temperature=0.5", "temperature=0.9").replace(
        "limit: int = 3", "limit: int = 5").replace("out/v.jsonl", "out/vb.jsonl")
    _run(_runner(project, a, fake_factory, name="a.synth"))
    with Store(project / "db.duckdb", read_only=True) as st:
        assert st.query("SELECT count(*) FROM step_v")[1] == [(6,)]    # unambiguous while one recipe has `v`
    _run(_runner(project, b, fake_factory, name="b.synth"))
    with Store(project / "db.duckdb", read_only=True) as st:
        assert st.query('SELECT count(*) FROM alpha.step_v')[1] == [(6,)]
        assert st.query('SELECT count(*) FROM beta.step_v')[1] == [(10,)]
        with pytest.raises(StoreError, match="step_v is ambiguous: recipes alpha, beta"):
            st.query("SELECT count(*) FROM step_v")
        with pytest.raises(StoreError, match="pass --recipe NAME"):
            st.step_run("v")
        run_a = st.step_run("v", recipe="alpha")
        assert len(st.run_rows(run_a, "v")) == 6


def test_budget_admission_keeps_running_totals():
    b = Budget(tokens=1000)
    assert b.admit("a", 300, 100) and b.admit("b", 300, 100)
    assert not b.admit("c", 300, 100)            # 800 held + 400 > 1000
    b.settle("a", 50, 50, 0.0)                    # a's 400 reservation becomes 100 spent
    assert b.admit("c", 300, 100)                 # 100 + 400 + 400 <= 1000
    assert b._held_tokens == sum(r.tokens for r in b._in_flight.values()) == 800
    b.release_all()
    assert b._held_tokens == 0


def test_every_shipped_recipe_plan_pickles_as_plain_data():
    import glob
    import pickle

    from synthlang.errors import SynthError

    n = 0
    for f in sorted(glob.glob(str(REPO / "recipes" / "*.synth"))):
        try:
            prog = synthlang.check_file(f)
        except SynthError:
            continue   # a recipe that needs a param or data it does not ship is checked elsewhere
        steps = prog.steps + [s for lp in prog.loops for s in lp.steps]
        back = pickle.loads(pickle.dumps(steps))
        assert [(s.name, s.op.name, s.fingerprint, s.sampling) for s in back] == \
            [(s.name, s.op.name, s.fingerprint, s.sampling) for s in steps]
        assert all(a.op == b.op for a, b in zip(back, steps, strict=True)), f
        n += len(steps)
    assert n > 20


def test_a_slow_engine_never_keeps_readers_out(project):
    """While a call takes seconds, the writer lets go of the file within ~HOLD_S so a reader gets in."""
    import time

    write(project / "s.synth", FAKE_RECIPE.replace("limit: int = 4", "limit: int = 3"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "4"}
    p = subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", "run", "s.synth", "--quiet"], cwd=project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = project / ".synth" / "synth.duckdb"
    try:
        t0 = time.monotonic()
        while not (db.with_name("synth.duckdb.lock").exists() and time.monotonic() - t0 > 6):
            time.sleep(0.1)   # the run is in its first 4-second call (or later ones)
        got = None
        t1 = time.monotonic()
        while got is None and time.monotonic() - t1 < 3.0:
            try:
                con = duckdb.connect(str(db), read_only=True)
                got = con.execute("SELECT count(*) FROM runs").fetchone()[0]
                con.close()
            except duckdb.Error:
                time.sleep(0.05)
        assert got == 1, "a reader waited 3 s while the run was only waiting for its engine"
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------- issue 11 item 9: a reader left open
def _hold_when_calls(db: Path, seconds: float) -> subprocess.Popen:
    """A separate process (a notebook, say) that opens ``db`` read-only once the run has stored a call and keeps
    that connection open for ``seconds``; it prints ``held`` when it has the file."""
    code = f"""
import os, time, duckdb
want = {str(db) + ".wantread"!r}
while True:
    try:
        con = duckdb.connect({str(db)!r}, read_only=True)
    except duckdb.Error:
        open(want, "a").close()   # what synth's own readers do: ask the writer to let go (Store.release)
        os.utime(want)
        time.sleep(0.02)
        continue
    try:
        if con.execute("SELECT count(*) FROM calls").fetchone()[0] > 0:
            break
    except duckdb.Error:
        pass
    con.close()
    time.sleep(0.02)
print("held", flush=True)
time.sleep({seconds})
con.close()
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_reader_left_open_never_stalls_the_run_nor_loses_work(project):
    """The writer reads through its own read-only connection and journals its results while another process keeps
    the file open; it says which process holds it, and writes everything once it lets go."""
    import time

    write(project / "s.synth", FAKE_RECIPE.replace("limit: int = 4", "limit: int = 20"))
    db = project / ".synth" / "synth.duckdb"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "0.08"}
    run = subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", "run", "s.synth", "--quiet"], cwd=project, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = None
    try:
        t0 = time.monotonic()
        while not db.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        holder = _hold_when_calls(db, 3.0)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        journal = db.with_name("synth.duckdb.journal")
        time.sleep(2.5)
        grew = journal.stat().st_size if journal.exists() else 0
        out, err = run.communicate(timeout=90)
    finally:
        run.kill()
        if holder is not None:
            holder.kill()
            holder.communicate()
    assert run.returncode == 0, out + err
    assert grew > 0, "the run stalled while the reader held the file (no call finished)"
    # the message names what holds the file: DuckDB's lock error gives the holder's process and PID
    assert "kept open by another process" in err and f"(PID {holder.pid})" in err, err
    con = duckdb.connect(str(db), read_only=True)
    calls = con.execute("SELECT count(*) FROM calls").fetchone()[0]
    made = con.execute("SELECT sum(calls_made) FROM steps").fetchone()[0]
    v = con.execute("SELECT count(*) FROM rows WHERE step='v' AND status='ok'").fetchone()[0]
    con.close()
    assert calls == made == 20 + 40      # every call stored once, none re-issued
    assert v == 40 and len((project / "out" / "v.jsonl").read_text(encoding="utf-8").splitlines()) == 40


def test_a_reader_that_never_lets_go_loses_no_call(project, fake_factory, monkeypatch):
    """When the file is still held at the end, the run stops with the holder's PID named; the next run writes the
    journaled calls and re-issues none."""
    from synthlang.errors import StoreLocked

    monkeypatch.setenv("SYNTH_FAKE_DELAY", "0.15")   # the holder (a new process) is in before the run ends
    text = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 10")
    db = project / "db.duckdb"
    r = _runner(project, text, fake_factory)
    r.store.WRITE_WAIT_S = 1.0
    holder = _hold_when_calls(db, 30.0)
    try:
        with pytest.raises(StoreLocked) as ei:
            _run(r)
        assert f"(PID {holder.pid})" in str(ei.value) and "db.duckdb.journal" in str(ei.value)
    finally:
        holder.kill()
        holder.communicate()
    made = r.summary.calls_made
    assert made == 10 + 20
    r2 = _runner(project, text, fake_factory)
    assert r2.store.replayed > 0      # the calls the held file kept out were journaled, and are written now
    s = _run(r2)
    assert s.status == "finished" and s.calls_made == 0 and s.calls_cached > 0
    assert len((project / "out" / "v.jsonl").read_text(encoding="utf-8").splitlines()) == 20


def test_progress_has_one_task_per_step_with_growing_totals(project, fake_factory, monkeypatch):
    """Steps run at once (each in its thread): each gets its own bar, whose total grows as rows reach it."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from synthlang.cli.run import _RichProgress

    monkeypatch.setenv("SYNTH_FAKE_DELAY", "0.005")
    text = FAKE_RECIPE.replace("limit: int = 4", "limit: int = 10")
    bars = Progress(console=Console(file=io.StringIO(), force_terminal=True), auto_refresh=False)
    prog = synthlang.check_file(write(project / "r.synth", text))
    store = Store(project / "db.duckdb")
    s = _run(Runner(prog, store, _RichProgress(bars), engine_factory=fake_factory))
    assert s.status == "finished"
    tasks = {t.description: t for t in bars.tasks}
    assert sorted(tasks) == ["a", "r", "v"]
    # rephrase: 10 rows; answer: 10 rows x n=2; verify: the 20 answers. Totals grew from 0 to what arrived.
    assert (tasks["r"].total, tasks["r"].completed) == (10, 10)
    assert (tasks["a"].total, tasks["a"].completed) == (20, 20)
    assert (tasks["v"].total, tasks["v"].completed) == (20, 20)


def test_a_streamed_jsonl_export_equals_the_whole_list_export(project, fake_factory, monkeypatch):
    """The run's JSONL export streams from the store a chunk at a time (here 5 rows, so 4+ chunks of real GSM8K
    rows); its lines are exactly what shaping the whole step at once gives, in the same order."""
    from synthlang.execute.export import jsonl_line
    from synthlang.outputs import read
    from synthlang.outputs.build import shape_rows

    chunks: list[int] = []
    whole_iter = read.iter_step_rows

    def small_chunks(store, run_id, step, include_failed=False, chunk=4096):
        for part in whole_iter(store, run_id, step, include_failed, chunk=5):
            chunks.append(len(part))
            yield part

    monkeypatch.setattr(read, "iter_step_rows", small_chunks)
    r = _runner(project, FAKE_RECIPE.replace("limit: int = 4", "limit: int = 12"), fake_factory)
    r.run()
    try:
        rows = read.step_rows(r.store, r.run_id, "v")
        examples, _, _ = shape_rows("jsonl", rows, {})
        expected = "".join(jsonl_line(e) for e in examples)
    finally:
        r.store.close()
    assert len(chunks) >= 4 and sum(chunks) == len(rows) == 24
    assert (project / "out" / "v.jsonl").read_text(encoding="utf-8") == expected
