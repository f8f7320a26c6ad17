"""Shared helpers for the engine benchmarks: the rephrase recipe, A/B alternation, JSON results.

Each benchmark runs the same 64 GSM8K rephrase prompts through a synthlang recipe (side A) and
through the raw engine alone (side B), alternating A B A B ... ``reps`` times, and reports
completion tokens per second of each side, the per-pair ratio A/B, and its median with min-max.
Side A is timed around ``run_program`` (store writes, caching, scheduling included) with a fresh
DuckDB file per repetition, so nothing is answered from cache.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))   # tests/servers.py starts the real servers

RECIPE = """
recipe bench_rephrase "GSM8K rephrase prompts for the engine benchmarks"
model teacher = {decl}
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit={n}) {{
  question: str
  answer: str
}}
step rephrased = rephrase(seeds, model=teacher) -> rephrased_question
"""


CHAIN3 = """
recipe bench_chain3 "GSM8K rephrase -> answer -> rephrase of the reasoning: three LLM steps on one model"
# on_truncation="keep": with a small max_tokens most replies stop at the cap; every row goes on to the next step
model teacher = {decl}
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit={n}) {{
  question: str
  answer: str
}}
step rephrased = rephrase(seeds, model=teacher, on_truncation="keep") -> rephrased_question
step answered = answer(rephrased, model=teacher, field=rephrased_question, on_truncation="keep")
step restated = rephrase(answered, model=teacher, field=reasoning, on_truncation="keep") -> restated_reasoning
"""


def project(decl: str, n: int, recipe: str = RECIPE) -> Path:
    """A temp folder with the real GSM8K data and ``recipe`` (default: the 1-step rephrase) using model ``decl``."""
    root = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    shutil.copytree(REPO / "recipes" / "data" / "gsm8k", root / "data" / "gsm8k")
    (root / "bench.synth").write_text(recipe.format(decl=decl, n=n), encoding="utf-8")
    return root


def run_recipe(root: Path, rep: int, engine_factory: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Run the recipe once into a fresh DuckDB file; returns seconds, calls and completion tokens."""
    from synthlang.api import check_file
    from synthlang.execute.runner import run_program
    from synthlang.store import Store

    program = check_file(root / "bench.synth")
    with Store(root / f"rep{rep}.duckdb") as store:
        t0 = time.perf_counter()
        s = run_program(program, store, None, engine_factory)
        wall = time.perf_counter() - t0
    return {"seconds": wall, "calls": s.calls_made, "completion_tokens": s.completion_tokens,
            "tokens_per_s": s.completion_tokens / wall}


def recipe_messages(root: Path, rep: int = 0) -> list[list[dict[str, str]]]:
    """The exact chat messages the recipe sent (from its DuckDB), so the raw side sends the same prompts."""
    import duckdb

    con = duckdb.connect(str(root / f"rep{rep}.duckdb"), read_only=True)
    rows = con.execute("select messages from calls order by call_key").fetchall()
    con.close()
    return [json.loads(m) for (m,) in rows]


def recipe_calls(root: Path, rep: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Every call the recipe made, by step name (calls in key order), each with key, messages, sampling
    (dict) and seed as stored, so a raw script can send exactly the same requests."""
    import duckdb

    con = duckdb.connect(str(root / f"rep{rep}.duckdb"), read_only=True)
    rows = con.execute("select step, call_key, messages, sampling, seed from calls "
                       "order by step, call_key").fetchall()
    con.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for step, key, messages, sampling, seed in rows:
        out.setdefault(step, []).append({"key": key, "messages": json.loads(messages),
                                         "sampling": json.loads(sampling), "seed": int(seed)})
    return out


def alternate(a: Callable[[int], dict[str, Any]], b: Callable[[int], dict[str, Any]], reps: int) -> dict[str, Any]:
    """Run A B A B ... ``reps`` pairs; the ratio of each pair is A's tokens/s over B's."""
    pairs = []
    for i in range(reps):
        ra = a(i + 1)
        rb = b(i + 1)
        pairs.append({"a": ra, "b": rb, "ratio": ra["tokens_per_s"] / rb["tokens_per_s"]})
        print(f"  pair {i + 1}: synthlang {ra['tokens_per_s']:.1f} tok/s, raw {rb['tokens_per_s']:.1f} tok/s, "
              f"ratio {pairs[-1]['ratio']:.3f}", flush=True)
    ratios = [p["ratio"] for p in pairs]
    return {"pairs": pairs, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            # best-of (timeit's estimator): each side's fastest repetition, the least disturbed by other load
            "ratio_best": max(p["a"]["tokens_per_s"] for p in pairs) / max(p["b"]["tokens_per_s"] for p in pairs),
            "synthlang_tps_median": statistics.median(p["a"]["tokens_per_s"] for p in pairs),
            "raw_tps_median": statistics.median(p["b"]["tokens_per_s"] for p in pairs)}


def synthlang_overhead(n: int, reps: int = 3, recipe: str = RECIPE) -> dict[str, Any]:
    """Seconds the same recipe takes on the instant fake engine: synthlang's own cost (checking aside:
    planning, store writes, scheduling). Compare with the raw side's seconds."""
    root = project("fake(temperature=0.7, max_tokens=32)", n, recipe)
    secs = sorted(run_recipe(root, 100 + i)["seconds"] for i in range(reps))
    return {"fake_engine_seconds_median": secs[len(secs) // 2], "fake_engine_seconds": secs}


def write_result(name: str, config: dict[str, Any], result: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` (config, machine, result) and print the headline."""
    out = REPO / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpus": __import__("os").cpu_count()},
           "config": config, **result}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(out)
    best = f", best-of {result['ratio_best']:.3f}" if "ratio_best" in result else ""
    print(f"{name}: ratio median {result['ratio_median']:.3f} (min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f}{best})"
          f" -> {out.relative_to(REPO)}")
    return out
