"""What letting go of DuckDB's file lock between commits costs, and how long a reader waits.

Runs one recipe on the fake engine (no delay: the worst case, commits back to back) three ways:
the default (``Store.HOLD_S`` = 0.5 s), releasing after every commit (``HOLD_S`` = 0), and never
releasing (``HOLD_S`` = inf, the old behaviour). Then, with a slowed fake engine (50 ms per call,
still far faster than a real model), measures how long ``synth query`` takes while the run writes.

    PYTHONPATH=. python bench/store_release.py        # writes bench/results/store_release.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = """
recipe bench "store release"
param limit: int = 150
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq, n=2)
"""


def _project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    shutil.copytree(REPO / "recipes" / "data", root / "data")
    (root / "b.synth").write_text(RECIPE, encoding="utf-8")
    return root


def run_in_process(hold_s: float) -> dict[str, float]:
    import synthlang
    from synthlang.store import Store

    root = _project()
    old = Store.HOLD_S
    Store.HOLD_S = hold_s
    try:
        prog = synthlang.check_file(root / "b.synth")
        t0 = time.perf_counter()
        s = synthlang.run(prog, db=root / "db.duckdb")
        wall = time.perf_counter() - t0
    finally:
        Store.HOLD_S = old
        shutil.rmtree(root, ignore_errors=True)
    return {"hold_s": hold_s if hold_s != float("inf") else "never", "calls": s.calls_made, "wall_s": round(wall, 3),
            "ms_per_call": round(1000 * wall / max(s.calls_made, 1), 3)}


def reader_latency() -> dict[str, float]:
    root = _project()
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "0.05"}
    p = subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", "run", "b.synth", "--quiet"], cwd=root, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waits = []
    try:
        time.sleep(2.0)
        while p.poll() is None and len(waits) < 20:
            t0 = time.perf_counter()
            q = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "query", "select count(*) from calls"],
                               cwd=root, env=env, capture_output=True, text=True)
            if q.returncode == 0:
                waits.append(time.perf_counter() - t0)
        # the same query with no run going, for the baseline (process start + import + open)
    finally:
        p.wait()
    base = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "synthlang.cli.main", "query", "select count(*) from calls"], cwd=root,
                       env=env, capture_output=True)
        base.append(time.perf_counter() - t0)
    shutil.rmtree(root, ignore_errors=True)
    return {"queries_during_run": len(waits), "median_s": round(statistics.median(waits), 3) if waits else None,
            "max_s": round(max(waits), 3) if waits else None, "idle_median_s": round(statistics.median(base), 3)}


def main() -> None:
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load1": os.getloadavg()[0]},
        "throughput": [run_in_process(h) for h in (float("inf"), 0.5, 0.0)],
        "reader": reader_latency(),
    }
    out = REPO / "bench" / "results" / "store_release.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
