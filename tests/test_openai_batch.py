"""Batch API mode against our own batch server (tests/batch_server.py: real HTTP on loopback, OpenAI
batch file format) whose lines are answered by the real llama_cpp.server; resume after a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

from synthlang.engines import create_engine
from synthlang.engines.base import Request, SamplingParams
from synthlang.store import Store

pytestmark = pytest.mark.slow

SP = SamplingParams(temperature=0.0, max_tokens=8)


def reqs(n: int = 3) -> list[Request]:
    return [Request(f"key{i}", ({"role": "user", "content": f"Say the number {i}."},), SP, seed=i) for i in range(n)]


@pytest.fixture
def batch_server(llama_server):
    from batch_server import BatchServer

    s = BatchServer(upstream=llama_server.base_url).start()
    yield s
    s.stop()


def engine(server, **kw):
    return create_engine("openai", "smollm2", {"base_url": server.base_url, "batch": True, "batch_poll_s": 0.2, **kw})


def test_batch_mode_uploads_polls_downloads_and_records_the_job(batch_server, tmp_path):
    e = engine(batch_server, price_input=1.0, price_output=2.0)
    with Store(tmp_path / "b.duckdb") as store:
        e.attach_store(store)
        try:
            out = {r.key: r for r in e.generate(reqs())}
        finally:
            e.close()
        (n, status, endpoint), = store.con.execute("SELECT n_requests, status, endpoint FROM batch_jobs").fetchall()
    assert set(out) == {"key0", "key1", "key2"}
    for r in out.values():
        assert r.error is None and r.text.strip() and r.completion_tokens > 0
        assert r.meta["batch_id"].startswith("batch_") and r.meta["resumed"] is False
        assert r.meta["cost_usd"] == pytest.approx((r.prompt_tokens * 1.0 + r.completion_tokens * 2.0) / 1e6)
    assert (n, status, endpoint) == (3, "completed", batch_server.base_url)
    assert batch_server.batches_created == 1


def test_killed_run_resumes_the_recorded_job_instead_of_resubmitting(batch_server, tmp_path):
    db = tmp_path / "resume.duckdb"
    batch_server.hold.set()   # the job stays in_progress, as a real one does for minutes
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from test_openai_batch import engine, reqs
        from synthlang.store import Store
        class S: base_url = {batch_server.base_url!r}
        e = engine(S)
        with Store({str(db)!r}) as store:
            e.attach_store(store)
            list(e.generate(reqs()))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while batch_server.polls < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert batch_server.batches_created == 1
    finally:
        proc.kill()
        proc.wait()
    batch_server.hold.clear()
    e = engine(batch_server)
    with Store(db) as store:
        e.attach_store(store)
        try:
            out = list(e.generate(reqs()))
        finally:
            e.close()
    assert batch_server.batches_created == 1 and batch_server.files_created == 1   # not submitted again
    assert len(out) == 3 and all(r.error is None and r.meta["resumed"] for r in out)


def test_other_calls_make_a_new_job(batch_server, tmp_path):
    e = engine(batch_server)
    with Store(tmp_path / "c.duckdb") as store:
        e.attach_store(store)
        try:
            list(e.generate(reqs(2)))
            list(e.generate(reqs(3)))
        finally:
            e.close()
    assert batch_server.batches_created == 2
