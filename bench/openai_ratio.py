"""OpenAI ratio: the openai engine vs a raw AsyncOpenAI loop at the same concurrency, sending the same requests.

Two set-ups:

* ``MODEL``: the rephrase recipe against a vLLM OpenAI server (which batches concurrent requests).
  Usage: ``python bench/openai_ratio.py MODEL [--base-url URL] [--served-name NAME] [--concurrency 16] [--n 64]
  [--max-tokens 32] [--reps 5]``. Without --base-url the script starts
  ``python -m vllm.entrypoints.openai.api_server --model MODEL`` on a free loopback port (vllm must be
  importable) and stops it at the end. Target: ratio >= 0.97. Writes bench/results/openai_ratio.json.
* ``--loopback``: issue 9's set-up. An instant OpenAI-compatible server on loopback (``bench/loopback_server.py``,
  its own process) answers every request after ``--latency`` seconds (default 0.05); 2,000 GSM8K questions
  (train_first1000 then test) -> rewrite (``rephrase``) -> answer, 4,000 calls at concurrency 64 (adaptive, the
  default), in paired rounds (the order inside a pair alternates). Three sides, each ratio = raw seconds / side
  seconds:

  - ``engine``: ``OpenAIEngine.generate`` alone, handed each step's requests as a request stream (a generator,
    as the runner and the streaming scheduler hand them), step 2 after step 1;
  - ``recipe``: the whole 2-step recipe through ``Runner`` into a fresh DuckDB file (store writes included);
  - ``raw``: an ``AsyncOpenAI`` loop with a semaphore of 64 (``bench/rawloop.py``) sending the same messages,
    one client for both steps, step 2's prompts given ready-made.

  - ``rawpost`` (optional): the raw loop sending through ``client.post`` as the engine does, so the engine's
    own work (threads, queue, adaptive limit, retries) can be told apart from the client path it takes.

  Every side's seconds include creating and closing its client.

  Each side also records this process's CPU per call (all threads; the server is another process): on a
  loaded 2-core machine the client is CPU-bound, so that figure explains the walls.

  Usage: ``python bench/openai_ratio.py --loopback [--questions 2000] [--concurrency 64] [--latency 0.05]
  [--reps 3] [--sides engine,recipe] [--tag T]``. Target (issue 9): engine and recipe >= 0.95.
  Writes bench/results/openai_ratio_loopback.json (``-T`` appended with ``--tag``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import alternate, project, recipe_messages, run_recipe, synthlang_overhead, write_result
from rawloop import raw_openai, raw_openai_steps

LOOPBACK_RECIPE = """
recipe oa_bench "GSM8K questions -> rewrite -> answer through the openai engine"
model m = openai("bench", base_url="{base}", api_key_env="SYNTH_BENCH_KEY", concurrency={c}, temperature=0.7,
                 max_tokens=32, timeout=600)
source seeds = jsonl("seeds.jsonl") {{
  question: str
  answer: str
}}
step rewritten = rephrase(seeds, model=m, field=question) -> rq
step answered = answer(rewritten, model=m, field=rq)
"""


def _loopback_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen([sys.executable, str(here / "loopback_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    return proc, f"http://127.0.0.1:{port}/v1"


def loopback(a: argparse.Namespace) -> None:
    """Issue 9's paired rounds against the loopback server (see the module docstring)."""
    from common import REPO

    import synthlang
    from synthlang.engines.base import Request
    from synthlang.engines.openai import OpenAIEngine
    from synthlang.execute.runner import Runner
    from synthlang.plan.keys import call_key
    from synthlang.store import Store

    os.environ["SYNTH_BENCH_KEY"] = "sk-bench-none"
    server, base = _loopback_server(a.latency)
    sides = [s for s in a.sides.split(",") if s]
    root = Path(tempfile.mkdtemp(prefix="synth-oa-loopback-"))
    data = REPO / "recipes" / "data" / "gsm8k"
    seeds = [json.loads(x) for x in (data / "train_first1000.jsonl").read_text(encoding="utf-8").splitlines()]
    seeds += [json.loads(x) for x in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    seeds = seeds[:a.questions]
    with open(root / "seeds.jsonl", "w", encoding="utf-8") as f:
        for row in seeds:
            f.write(json.dumps({"question": row["question"], "answer": row["answer"]}) + "\n")
    (root / "oa.synth").write_text(LOOPBACK_RECIPE.format(base=base, c=a.concurrency), encoding="utf-8")
    prog = synthlang.check_file(root / "oa.synth")

    def run_recipe_once(tag: str) -> float:
        with Store(root / f"{tag}.duckdb") as store:
            t = time.perf_counter()
            s = Runner(prog, store).run()
            wall = time.perf_counter() - t
        assert s.calls_made == 2 * len(seeds), (s.calls_made, [(x.name, x.rows_failed) for x in s.steps])
        with Store(root / f"{tag}.duckdb") as store:   # the recipe sent exactly the requests the other sides send
            sent = {k for (k,) in store.query("select call_key from calls")[1]}
        assert sent == {q.key for v in reqs.values() for q in v}, "the recipe's calls differ from the bench's requests"
        return wall

    try:
        # the exact requests of both steps, rendered as the runner renders them: step 1 from the seeds, step 2
        # from step 1's replies (the server's replies are a pure function of the prompt) after rephrase's post

        m = prog.models["m"]
        sampling = m.sampling
        skey = sampling.key_dict()
        steps_by_name = {st.name: st for st in prog.steps}
        with Store(root / "render.duckdb") as store:
            runner = Runner(prog, store)
            reqs: dict[str, list[Any]] = {}
            rows = [dict(r) for r in seeds]
            warm = OpenAIEngine("bench", base_url=base, api_key_env="SYNTH_BENCH_KEY", concurrency=a.concurrency,
                                timeout=600)
            for name in ("rewritten", "answered"):
                st = steps_by_name[name]
                reqs[name] = []
                for r in rows:
                    msgs = runner._messages(st, r)
                    key, seed = call_key("openai", "bench", list(msgs), skey, 0, None)
                    reqs[name].append(Request(key, msgs, sampling, seed))
                texts = {res.key: res.text for res in warm.generate(reqs[name])}
                rows = [{**r, **{st.rename.get(k, k): v for k, v in st.op.post(r, texts[q.key], st.opts).items()}}
                        for r, q in zip(rows, reqs[name], strict=True)]
            warm.close()
        steps = {name: [[dict(x) for x in q.messages] for q in v] for name, v in reqs.items()}

        def engine_side() -> float:
            t = time.perf_counter()   # the client's creation counts, as the raw side's does
            e = OpenAIEngine("bench", base_url=base, api_key_env="SYNTH_BENCH_KEY", concurrency=a.concurrency,
                             timeout=600)
            e.load()
            n = 0
            for st in ("rewritten", "answered"):
                n += sum(1 for r in e.generate(x for x in reqs[st]) if not r.error)
            e.close()
            wall = time.perf_counter() - t
            assert n == 2 * len(seeds), n
            return wall

        def raw_side() -> float:   # one client for both steps, created inside the timing (as the engine's)
            return float(raw_openai_steps(base, "bench", [steps["rewritten"], steps["answered"]], a.concurrency,
                                          32)["seconds"])

        rounds = []
        for i in range(a.reps):
            order = (["raw", *sides] if i % 2 == 0 else [*sides, "raw"])
            walls: dict[str, float] = {}
            cpu: dict[str, float] = {}
            for side in order:
                c = time.process_time()   # this process's CPU, all threads (the server runs in its own process)
                if side == "raw":
                    walls[side] = raw_side()
                elif side == "engine":
                    walls[side] = engine_side()
                elif side == "rawpost":
                    walls[side] = float(raw_openai_steps(base, "bench", [steps["rewritten"], steps["answered"]],
                                                         a.concurrency, 32, via="post")["seconds"])
                else:
                    walls[side] = run_recipe_once(f"round{i}")
                cpu[side] = time.process_time() - c
            rnd = {"order": order, **{f"{k}_s": round(v, 3) for k, v in walls.items()},
                   **{f"{k}_cpu_ms_per_call": round(1000 * v / (2 * len(seeds)), 3) for k, v in cpu.items()},
                   **{f"{k}_ratio": round(walls["raw"] / walls[k], 3) for k in sides}, "load_avg": os.getloadavg()}
            rounds.append(rnd)
            print(f"  round {i + 1}: " + json.dumps(rnd), flush=True)
    finally:
        server.terminate()
    result = {f"{k}_ratio_median": statistics.median(r[f"{k}_ratio"] for r in rounds) for k in sides}
    result.update({f"{k}_ratio_min": min(r[f"{k}_ratio"] for r in rounds) for k in sides})
    result["raw_s_median"] = statistics.median(r["raw_s"] for r in rounds)
    result.update({f"{k}_cpu_ms_per_call_median": statistics.median(r[f"{k}_cpu_ms_per_call"] for r in rounds)
                   for k in ["raw", *sides]})
    result.update({f"{k}_s_median": statistics.median(r[f"{k}_s"] for r in rounds) for k in sides})
    result["rounds"] = rounds
    result["ratio_median"] = result[f"{sides[0]}_ratio_median"]
    result["ratio_min"] = result[f"{sides[0]}_ratio_min"]
    result["ratio_max"] = max(r[f"{sides[0]}_ratio"] for r in rounds)
    write_result("openai_ratio_loopback" + (f"-{a.tag}" if a.tag else ""), {"questions": len(seeds), "calls": 2 * len(seeds), "concurrency": a.concurrency,
                                           "latency_s": a.latency, "reps": a.reps, "sides": sides,
                                           "server": "bench/loopback_server.py"}, result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--loopback", action="store_true", help="issue 9's instant loopback server instead of vLLM")
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--sides", default="engine,recipe")
    ap.add_argument("--tag", default="", help="--loopback: results go to openai_ratio_loopback-TAG.json")
    ap.add_argument("--base-url")
    ap.add_argument("--served-name", default=None)
    ap.add_argument("--concurrency", type=int, default=None, help="16 (vLLM) / 64 (--loopback)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-model-len", type=int, default=1024)
    a = ap.parse_args()
    if a.loopback:
        a.concurrency = a.concurrency or 64
        a.reps = a.reps if a.reps != 5 else 3
        loopback(a)
        return
    if not a.model:
        ap.error("MODEL is required without --loopback")
    a.concurrency = a.concurrency or 16
    server = None
    base_url, name = a.base_url, a.served_name or a.model
    if base_url is None:
        from servers import start_vllm_server

        server = start_vllm_server(model_dir=Path(a.model), max_model_len=a.max_model_len)
        base_url, name = server.base_url, server.model
    try:
        decl = (f'openai("{name}", base_url="{base_url}", concurrency={a.concurrency}, temperature=0.7, '
                f'max_tokens={a.max_tokens}, timeout=600)')
        root = project(decl, a.n)
        run_recipe(root, 0)   # warm-up, and the messages for the raw side
        messages = recipe_messages(root, 0)
        result = alternate(lambda rep: run_recipe(root, rep),
                           lambda rep: raw_openai(base_url, name, messages, a.concurrency, a.max_tokens, rep * 100000),
                           a.reps)
    finally:
        if server is not None:
            server.stop()
    result["overhead"] = synthlang_overhead(a.n)
    write_result("openai_ratio", {"model": a.model, "served_name": name, "concurrency": a.concurrency, "n": a.n,
                                  "max_tokens": a.max_tokens, "reps": a.reps, "server": "vllm" if server else base_url},
                 result)


if __name__ == "__main__":
    main()
