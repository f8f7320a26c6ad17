"""``--on ray`` end to end: a GSM8K rephrase -> answer recipe on engine replicas on a Ray cluster.

Takes the engine, a model id and a Ray address, so the same command runs unchanged on this 2-core
machine (embedded SmolLM2, a local Ray) and on a GPU cluster (vllm, ``--address auto`` on the head
node, or submitted with ``ray job submit -- python bench/ray_bench.py ...``)::

    PYTHONPATH=. python bench/ray_bench.py --engine embedded --rows 8 --max-tokens 48 --local-too
    PYTHONPATH=. python bench/ray_bench.py --engine vllm --model-id Qwen/Qwen2.5-7B-Instruct \\
        --address auto --rows 2000 --max-tokens 512 --replicas 8 --num-gpus 1

Reports Ray start/connect time, wall seconds, calls/s, completion tokens/s, each replica's calls and
tokens/s, and with ``--local-too`` the same recipe run in-process (fresh store) with a check that
both runs produced the same call keys. Writes ``bench/results/ray_bench.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = """
recipe ray_bench "GSM8K rephrase then answer, for --on ray"
model teacher = {decl}
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit={rows}) {{
  question: str
  answer: str
  gold = final_number(answer)
}}
step rephrased = rephrase(seeds, model=teacher, field=question) -> rephrased_question
step answered = answer(rephrased, model=teacher, field=rephrased_question, extract="number")
step verified = verify(answered, field=final_answer, gold=gold)
"""


def _decl(engine: str, model_id: str, max_tokens: int) -> str:
    mid = f'"{model_id}", ' if model_id else ""
    return f"{engine}({mid}temperature=0.7, max_tokens={max_tokens})"


def _run(root: Path, db: Path, factory: Any) -> dict[str, Any]:
    import duckdb

    from synthlang.api import check_file
    from synthlang.execute.runner import run_program
    from synthlang.store import Store

    program = check_file(root / "bench.synth")
    with Store(db) as store:
        t0 = time.perf_counter()
        s = run_program(program, store, None, factory(program) if factory else None)
        wall = time.perf_counter() - t0
    con = duckdb.connect(str(db), read_only=True)
    keys = sorted(k for (k,) in con.execute("SELECT call_key FROM calls").fetchall())
    con.close()
    return {"seconds": round(wall, 2), "calls": s.calls_made, "completion_tokens": s.completion_tokens,
            "calls_per_s": round(s.calls_made / wall, 3), "tokens_per_s": round(s.completion_tokens / wall, 2),
            "rows_failed": sum(st.rows_failed for st in s.steps), "_keys": keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="embedded", choices=("embedded", "vllm", "fake"))
    ap.add_argument("--model-id", default="", help="model id (embedded: default SmolLM2 GGUF; vllm: HF id or folder)")
    ap.add_argument("--address", default=None, help="Ray address (HOST:PORT or auto); default: start a local Ray")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    ap.add_argument("--rows", type=int, default=8, help="GSM8K seed rows (2 calls each)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--replicas", type=int, default=None, help="engine replicas (default: fill the cluster)")
    ap.add_argument("--num-gpus", type=float, default=None, help="GPUs per replica (vllm default: tensor_parallel_size)")
    ap.add_argument("--batch-size", type=int, default=None, help="requests per Ray task")
    ap.add_argument("--local-too", action="store_true", help="also run in-process and compare call keys")
    ap.add_argument("--note", default=None, help="a remark stored with the results (machine state, patches)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ray_bench.json"))
    args = ap.parse_args()

    from synthlang.execute.cluster import ClusterConfig, engine_factory

    root = Path(tempfile.mkdtemp(prefix="synth-ray-bench-"))
    shutil.copytree(REPO / "recipes" / "data" / "gsm8k", root / "data" / "gsm8k")
    (root / "bench.synth").write_text(RECIPE.format(decl=_decl(args.engine, args.model_id, args.max_tokens), rows=args.rows),
                                      encoding="utf-8")
    over = {k: v for k, v in (("replicas", args.replicas), ("num_gpus", args.num_gpus), ("batch_size", args.batch_size))
            if v is not None}
    config = ClusterConfig(on="ray", address=args.address, num_cpus=args.num_cpus, models={"teacher": over} if over else {})
    made: dict[str, Any] = {}

    def ray_factory(program: Any) -> Any:
        made["f"] = engine_factory(program, config)
        return made["f"]

    t0 = time.perf_counter()
    import ray  # noqa: F401 - timed: import cost on this machine

    import_s = time.perf_counter() - t0
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args), "ray_import_s": round(import_s, 2),
    }
    if args.note:
        res["note"] = args.note
    on_ray = _run(root, root / "ray.duckdb", ray_factory)
    f = made["f"]
    res["cluster"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in f.cluster.items()}
    res["ray"] = {k: v for k, v in on_ray.items() if not k.startswith("_")}
    res["replicas"] = f.actor_stats()
    if args.local_too:
        local = _run(root, root / "local.duckdb", None)
        res["local"] = {k: v for k, v in local.items() if not k.startswith("_")}
        res["same_call_keys"] = local["_keys"] == on_ray["_keys"]
        res["speedup"] = round(local["seconds"] / on_ray["seconds"], 2)
    shutil.rmtree(root, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
