"""Orchestration benchmark for the dataflow core (issue 9): synthlang's own cost, engines aside.

Figures (each in ``bench/results/orchestration[-quick].json``):

* ``throughput``: N seeds through source -> rephrase -> answer -> verify on the fake engine (instant), fresh
  DuckDB file: rows committed per second (all steps), then the same recipe re-run entirely from the
  cache; peak RSS of each size (a fresh subprocess per size, ``ru_maxrss``).
* ``streaming``: a 2-step row-local chain (two fake models, ``SYNTH_FAKE_DELAY``) streamed against the same
  chain with a barrier between steps (``Runner.barrier``).
* ``launch_to_first_call``: from ``check_file`` to the first request handed to the engine, 2,000 seeds.
* ``store_1m``: lineage of one row and ``count(*)`` with a filter on a step view, in a 1,000,000-row store.
* ``openai``: the openai engine against a raw ``AsyncOpenAI`` loop sending the same requests, both against a
  loopback OpenAI-compatible server answering after 50 ms, concurrency 64, paired rounds.
* ``kill9``: ``synth run`` killed with SIGKILL at random moments; finished calls that the resumed run issued
  again (``finished before the kill`` = calls in the file + calls in the journal).

Usage: ``python bench/orchestration.py --quick`` (small sizes, ~2 min on 2 cores) or without ``--quick`` for the
issue's sizes (100k seeds, 1M rows, 20 kill points).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHAIN = """
recipe orch "source -> rephrase -> answer -> verify"
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("seeds.jsonl") {
  question: str
  answer: str
  gold = final_number(answer)
}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq)
step v = verify(a, field=final_answer, gold=gold)
export v to "out/v.jsonl" as jsonl
"""


def _seeds(folder: Path, n: int) -> None:
    """``n`` seed rows: the 1,000 shipped GSM8K rows, each repeated with a variant number (all distinct)."""
    base = [json.loads(x) for x in (REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text(encoding="utf-8").splitlines()]
    with open(folder / "seeds.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            b = base[i % len(base)]
            f.write(json.dumps({"question": f"{b['question']} (variant {i // len(base)})", "answer": b["answer"]}) + "\n")


def _child_throughput(folder: str) -> None:
    """Run in a fresh process: the chain twice (fresh, then from cache); print JSON with timings and peak RSS."""
    import duckdb

    import synthlang
    from synthlang.execute.runner import Runner
    from synthlang.store import Store

    folder_p = Path(folder)
    out: dict[str, Any] = {}
    for label in ("fresh", "cached"):
        prog = synthlang.check_file(folder_p / "orch.synth")
        store = Store(folder_p / "db.duckdb")
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        s = Runner(prog, store).run()
        store.close()
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)   # every thread of this process
        con = duckdb.connect(str(folder_p / "db.duckdb"), read_only=True)
        rows = con.execute("SELECT count(*) FROM run_rows WHERE run_id = ?", [s.run_id]).fetchone()[0]
        con.close()
        # rows per CPU-second: what the run costs, read apart from how loaded the machine was
        out[label] = {"wall_s": round(wall, 2), "rows": rows, "rows_per_s": round(rows / wall), "calls_made": s.calls_made,
                      "calls_cached": s.calls_cached, "cpu_s": round(cpu, 2), "rows_per_cpu_s": round(rows / max(cpu, 1e-9)),
                      "rows_reused": sum(x.rows_reused for x in s.steps)}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


#: the chain without verify: what the core costs apart from math-verify's per-row comparison (ops/mathcheck.py)
CHAIN_NO_VERIFY = CHAIN.replace("step v = verify(a, field=final_answer, gold=gold)\n", "").replace("export v to", "export a to")


def throughput(n: int, recipe: str = CHAIN) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        _seeds(folder, n)
        (folder / "orch.synth").write_text(recipe, encoding="utf-8")
        p = subprocess.run([sys.executable, __file__, "--child-throughput", d], capture_output=True, text=True, cwd=d,
                           env={**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "0"})
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        res = json.loads(p.stdout.strip().splitlines()[-1])
        res["seeds"] = n
        return res


def streaming(n: int, delay: float) -> dict[str, Any]:
    import synthlang
    from synthlang.engines.fake import FakeEngine
    from synthlang.execute.runner import Runner
    from synthlang.store import Store

    text = """
recipe chain2 "two row-local LLM steps on two models"
model m1 = fake(temperature=0.5, max_tokens=32)
model m2 = fake(temperature=0.7, max_tokens=32)
source seeds = jsonl("seeds.jsonl") {
  question: str
  answer: str
}
step r = rephrase(seeds, model=m1) -> rq
step a = answer(r, model=m2, field=rq)
"""
    os.environ["SYNTH_FAKE_DELAY"] = str(delay)
    walls: dict[str, float] = {}
    try:
        for mode in ("barrier", "streamed"):
            with tempfile.TemporaryDirectory() as d:
                folder = Path(d)
                _seeds(folder, n)
                (folder / "c.synth").write_text(text, encoding="utf-8")
                prog = synthlang.check_file(folder / "c.synth")
                store = Store(folder / "db.duckdb")
                engines: dict[str, FakeEngine] = {}
                r = Runner(prog, store, engine_factory=lambda m, e=engines: e.setdefault(m.name, FakeEngine()))
                r.barrier = mode == "barrier"
                t0 = time.perf_counter()
                r.run()
                walls[mode] = time.perf_counter() - t0
                store.close()
    finally:
        os.environ.pop("SYNTH_FAKE_DELAY", None)
    return {"seeds": n, "delay_s": delay, "barrier_s": round(walls["barrier"], 2), "streamed_s": round(walls["streamed"], 2),
            "speedup": round(walls["barrier"] / walls["streamed"], 2)}


def launch_to_first_call(n: int) -> dict[str, Any]:
    import synthlang
    from synthlang.execute.runner import Runner
    from synthlang.store import Store

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        _seeds(folder, n)
        (folder / "orch.synth").write_text(CHAIN, encoding="utf-8")
        t0 = time.monotonic()
        prog = synthlang.check_file(folder / "orch.synth")
        store = Store(folder / "db.duckdb")
        r = Runner(prog, store)
        r.run()
        store.close()
        first = min(t for t, _, ev in r.events if ev == "first_send")
        return {"seeds": n, "launch_to_first_call_s": round(first - t0, 3)}


def store_1m(n_rows: int) -> dict[str, Any]:
    """A store of ``n_rows`` rows in 4 steps (seeds -> r -> a -> v chains), written through the bulk writer."""
    import datetime as dt

    from synthlang.store import Store

    per = n_rows // 4
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "big.duckdb"
        st = Store(db)
        st.begin_run("run1", "big", "big.synth", "fp", {}, [], "bench")
        now = dt.datetime(2026, 1, 1)
        t0 = time.perf_counter()
        steps = ["seeds", "r", "a", "v"]
        for lo in range(0, per, 50_000):
            hi = min(per, lo + 50_000)
            rows, lineage, links = [], [], []
            for k, step in enumerate(steps):
                for i in range(lo, hi):
                    rid = f"{step}-{i:08d}"
                    rows.append((rid, step, "fp", step, 0, 0, "ok", None, None, None, None, None,
                                 json.dumps({"question": f"q{i}", "score": i % 10, "verified": i % 3 == 0}), now))
                    links.append(("run1", rid, step, False, f"{i:08x}"))
                    if k:
                        lineage.append((rid, f"{steps[k - 1]}-{i:08d}", step, 0))
            st._insert((), rows, lineage, links)
        write_s = time.perf_counter() - t0
        st.refresh_views({"v": {"question": "str", "score": "int", "verified": "bool"}}, recipe="big")
        st.close()
        from synthlang.store import Store as S

        ro = S(db, read_only=True)
        ro.lineage("v-00000007")   # warm the connection
        lin = []
        for i in range(5):
            t = time.perf_counter()
            tree = ro.lineage(f"v-{(i * 7919) % per:08d}")
            lin.append(time.perf_counter() - t)
            assert tree["parents"][0]["parents"][0]["parents"][0]["step"] == "seeds"
        cnt = []
        for _ in range(3):
            t = time.perf_counter()
            ro.query("SELECT count(*) FROM step_v WHERE score > 4 AND verified")
            cnt.append(time.perf_counter() - t)
        ro.close()
        return {"rows": per * 4, "bulk_write_s": round(write_s, 2), "lineage_ms_median": round(statistics.median(lin) * 1000, 1),
                "count_filter_s_median": round(statistics.median(cnt), 3)}


def kill9(points: int, seeds: int) -> dict[str, Any]:
    """Kill ``synth run`` at random moments; count finished calls issued again by the resumed run."""
    rnd = random.Random(9)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "0.01"}
    reissued = []
    import duckdb

    for _ in range(points):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            _seeds(folder, seeds)
            (folder / "orch.synth").write_text(CHAIN, encoding="utf-8")
            cmd = [sys.executable, "-m", "synthlang.cli.main", "run", "orch.synth", "--quiet"]
            p = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            journal = folder / ".synth" / "synth.duckdb.journal"
            t0 = time.monotonic()
            flushing = journal.with_name(journal.name + ".flushing")
            while p.poll() is None and time.monotonic() - t0 < 120 and not (journal.exists() and journal.stat().st_size) \
                    and not flushing.exists():
                time.sleep(0.02)   # calls are being made: kill at a random moment from here
            time.sleep(rnd.uniform(0.0, 3.0))
            if p.poll() is not None:
                continue
            p.send_signal(signal.SIGKILL)
            p.wait()
            db = folder / ".synth" / "synth.duckdb"
            if not db.exists():
                continue
            try:
                con = duckdb.connect(str(db), read_only=True)
                stored = con.execute("SELECT count(*) FROM calls").fetchone()[0]
                con.close()
            except duckdb.Error:
                stored = 0
            # the journal, and the part of it a flush in flight had taken (store.py: journal rotation)
            journaled = len({json.loads(x)[0] for j in (journal, journal.with_name(journal.name + ".flushing")) if j.exists()
                             for x in j.read_text(encoding="utf-8").splitlines() if x.strip().endswith("]")})
            r = subprocess.run(cmd, cwd=d, env={**env, "SYNTH_FAKE_DELAY": "0"}, capture_output=True, text=True)
            con = duckdb.connect(str(db), read_only=True)
            total = con.execute("SELECT count(*) FROM calls").fetchone()[0]
            made = con.execute("SELECT calls_made FROM runs WHERE status='finished'").fetchone()[0]
            con.close()
            assert r.returncode == 0, r.stderr
            reissued.append({"stored_at_kill": stored, "journaled_at_kill": journaled, "resumed_made": made, "total": total,
                             "reissued": stored + journaled + made - total})
    return {"points": len(reissued), "max_reissued": max((x["reissued"] for x in reissued), default=None),
            "detail": reissued}


def openai_vs_raw(n_prompts: int, concurrency: int, latency: float, reps: int) -> dict[str, Any]:
    """Paired rounds: synthlang's openai engine (2-step chain, n_prompts each) vs a raw AsyncOpenAI loop."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            time.sleep(latency)
            text = "Rewritten: " + body["messages"][-1]["content"][-80:] + "\nThe answer is 7."
            out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    os.environ["BENCH_KEY"] = "sk-none"
    text = f"""
recipe oa "rewrite then answer"
model m = openai("bench", base_url="{base}", api_key_env="BENCH_KEY", concurrency={concurrency}, temperature=0.5, max_tokens=32)
source seeds = jsonl("seeds.jsonl") {{
  question: str
  answer: str
}}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq)
"""
    import synthlang
    from synthlang.execute.runner import Runner
    from synthlang.store import Store

    sys.path.insert(0, str(REPO / "bench"))
    from rawloop import raw_openai

    pairs = []
    try:
        for _ in range(reps):
            with tempfile.TemporaryDirectory() as d:
                folder = Path(d)
                _seeds(folder, n_prompts)
                (folder / "oa.synth").write_text(text, encoding="utf-8")
                prog = synthlang.check_file(folder / "oa.synth")
                store = Store(folder / "db.duckdb")
                t0 = time.perf_counter()
                Runner(prog, store).run()
                a = time.perf_counter() - t0
                msgs = [json.loads(m) for (m,) in store.query("SELECT messages FROM calls WHERE step='r'")[1]]
                msgs2 = [json.loads(m) for (m,) in store.query("SELECT messages FROM calls WHERE step='a'")[1]]
                store.close()
            t0 = time.perf_counter()
            raw_openai(base, "bench", msgs, concurrency, 32)
            raw_openai(base, "bench", msgs2, concurrency, 32)   # the raw loop is given step 2's prompts ready-made
            b = time.perf_counter() - t0
            pairs.append({"synthlang_s": round(a, 2), "raw_s": round(b, 2), "ratio": round(b / a, 3)})
    finally:
        srv.shutdown()
    return {"calls": 2 * n_prompts, "concurrency": concurrency, "latency_s": latency, "pairs": pairs,
            "ratio_median": statistics.median(p["ratio"] for p in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 cores)")
    ap.add_argument("--only", default="", help="comma-separated figures to run (throughput,throughput_no_verify,streaming,launch,store,kill9,openai)")
    ap.add_argument("--delay", type=float, default=0.02,
                    help="SYNTH_FAKE_DELAY of the streaming figure (raise it on a loaded machine, so calls outweigh overhead)")
    ap.add_argument("--child-throughput", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_throughput:
        _child_throughput(args.child_throughput)
        return
    q = args.quick
    only = set(filter(None, args.only.split(",")))
    res: dict[str, Any] = {"quick": q, "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = REPO / "bench" / "results" / ("orchestration-quick.json" if q else "orchestration.json")
    if only and out.exists():   # --only: update the figures asked for, keep the others
        res = {**json.loads(out.read_text(encoding="utf-8")), **res}

    def step(name: str, fn: Any) -> None:
        if only and name not in only:
            return
        t = time.perf_counter()
        res[name] = fn()
        print(name, json.dumps(res[name])[:600], f"({time.perf_counter() - t:.0f} s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")

    sizes = (1_000, 5_000) if q else (10_000, 100_000)
    step("throughput", lambda: [throughput(n) for n in sizes])
    step("throughput_no_verify", lambda: [throughput(n, CHAIN_NO_VERIFY) for n in sizes[:1]])
    step("streaming", lambda: streaming(40 if q else 100, args.delay))
    step("launch", lambda: launch_to_first_call(2_000))
    step("store", lambda: store_1m(100_000 if q else 1_000_000))
    step("kill9", lambda: kill9(4 if q else 20, 2_000))
    step("openai", lambda: openai_vs_raw(500 if q else 2_000, 64, 0.05, 1 if q else 3))


if __name__ == "__main__":
    main()
