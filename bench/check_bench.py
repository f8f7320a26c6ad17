"""Benchmark: ``check`` of a generated 1,000-step recipe (target: under 0.5 s on a 2-core machine).

    PYTHONPATH=. python bench/check_bench.py [--steps 1000] [--repeat 5]

Writes bench/results/check_bench.json: parse and check wall seconds (best and
median of ``--repeat`` runs, after one warm-up that builds the Lark parser),
the CPU seconds of parse+check (robust to other processes sharing the cores),
the recipe's size, the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_recipe(steps: int) -> str:
    """A chain of ``steps`` LLM and row steps over real GSM8K seeds, each with an inline prompt and derived fields."""
    out = [
        'recipe bench "generated"',
        "param limit: int = 10",
        "model teacher = embedded(temperature=0.7, max_tokens=64)",
        f'source seeds = jsonl("{REPO}/recipes/data/gsm8k/train_first1000.jsonl", limit=limit) {{',
        "  question: str",
        "  answer: str",
        "  gold = final_number(answer)",
        "  long = word_count(question) > 40 and not is_null(gold)",
        "}",
    ]
    prev = "seeds"
    for i in range(steps):
        kind = i % 3
        if kind == 0:
            out.append(f'step s{i} = rephrase({prev}, model=teacher, field=question, prompt="Rewrite: {{{{ question }}}} ({i})") -> q{i}')
        elif kind == 1:
            out.append(f'step s{i} = answer({prev}, model=teacher, field=q{i - 1}, extract="number") -> r{i}, a{i}')
        else:
            out.append(f"step s{i} = verify({prev}, field=a{i - 1}, gold=gold) -> v{i}, why{i}")
        prev = f"s{i}"
    out.append(f'export {prev} to "out/bench.jsonl" as jsonl')
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    from synthlang import templates
    from synthlang.check import check
    from synthlang.syntax import parse

    text = make_recipe(a.steps)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.synth"
        path.write_text(text, encoding="utf-8")
        check(parse(text, str(path)), allow_outside=True)  # warm-up: builds the parser, imports everything
        parse_s, check_s, total_s, cpu_s = [], [], [], []
        for _ in range(a.repeat):
            templates._variables.cache_clear()  # measure a cold check, as one `synth check` process sees it
            c0 = time.process_time()
            t0 = time.perf_counter()
            recipe = parse(text, str(path))
            t1 = time.perf_counter()
            prog = check(recipe, allow_outside=True)   # the seeds are the repo's GSM8K, outside the temp folder
            t2 = time.perf_counter()
            cpu_s.append(time.process_time() - c0)
            parse_s.append(t1 - t0)
            check_s.append(t2 - t1)
            total_s.append(t2 - t0)
        assert len(prog.steps) == a.steps
    result = {
        "bench": "check_bench", "steps": a.steps, "recipe_bytes": len(text.encode()), "repeat": a.repeat,
        "parse_s": {"best": round(min(parse_s), 4), "median": round(statistics.median(parse_s), 4)},
        "check_s": {"best": round(min(check_s), 4), "median": round(statistics.median(check_s), 4)},
        "total_s": {"best": round(min(total_s), 4), "median": round(statistics.median(total_s), 4)},
        "total_cpu_s": {"best": round(min(cpu_s), 4), "median": round(statistics.median(cpu_s), 4)},
        "target_s": 0.5,
        "meets_target": {"wall_best": min(total_s) < 0.5, "wall_median": statistics.median(total_s) < 0.5,
                         "cpu_median": statistics.median(cpu_s) < 0.5},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    out = REPO / "bench" / "results" / "check_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
