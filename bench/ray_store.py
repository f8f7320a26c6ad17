"""The driver's ingest ceiling and the store's size per million rows (numbers for docs/scale.md).

With ``--on ray`` the workers only run inference; the driver alone commits every result, so the
driver's commit rate bounds the whole cluster. This measures, on a fresh DuckDB file each:

1. ``per_call``: ``Store.commit_result`` as the runner calls it today - one transaction per finished
   call holding the call, its row, the row's lineage edge and run_rows entry;
2. ``chunked``: ``Store.write_rows`` with 512 rows per transaction (how cached rows are rebuilt);
3. ``arrow_bulk``: one ``INSERT ... SELECT`` from an Arrow table per 10,000 rows - the set-based
   write a bulk writer does, an upper bound for it on this machine;
4. ``size``: the file size after ``arrow_bulk`` inserted N synthetic calls + rows + lineage +
   run_rows with realistic text (real GSM8K questions and answers, words shuffled per row so that
   no two strings repeat and compression is not flattered), then ``CHECKPOINT``; scaled to 1M rows.

    PYTHONPATH=. python bench/ray_store.py [--size-rows 200000]   # writes bench/results/ray_store.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _texts() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text().splitlines()]
    return [(r["question"], r["answer"]) for r in rows]


def _shuffled(rnd: random.Random, text: str) -> str:
    words = text.split()
    rnd.shuffle(words)
    return " ".join(words)


def _records(n: int, seed: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """n (call, row) pairs shaped like an `answer` step's: a prompt, a ~reasoning reply, row fields."""
    import hashlib

    rnd = random.Random(seed)
    texts = _texts()
    out = []
    for i in range(n):
        q, a = texts[i % len(texts)]
        q, a = _shuffled(rnd, q), _shuffled(rnd, a)
        key = hashlib.sha256(f"call{seed}-{i}".encode()).hexdigest()
        rid = hashlib.sha256(f"row{seed}-{i}".encode()).hexdigest()
        parent = hashlib.sha256(f"seed{i}".encode()).hexdigest()
        call = {"key": key, "engine": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct",
                "messages": [{"role": "user", "content": f"Solve the problem step by step.\n\n{q}\n\nEnd with: The answer is N."}],
                "sampling": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 512}, "seed": rnd.getrandbits(31),
                "sample_index": 0, "json_schema": None, "text": a + f"\nThe answer is {i % 997}.", "finish_reason": "stop",
                "prompt_tokens": len(q) // 4 + 20, "completion_tokens": len(a) // 4 + 6, "latency_s": rnd.random() * 5,
                "error": None, "logprobs": None, "meta": {"ray_actor": i % 8, "ray_pid": 1000 + i % 8, "ray_node": "0123456789ab"}}
        row = {"row_id": rid, "parents": (parent,), "data": {"question": q, "answer": a, "reasoning": a, "final_answer": str(i % 997)},
               "status": "ok", "call_key": key, "sample_index": 0, "step_fingerprint": "f" * 64, "operator": "answer",
               "round": 0, "model": "teacher", "template_hash": "t" * 16}
        out.append((call, row))
    return out


def per_call(n: int) -> dict[str, Any]:
    from synthlang.store import Store

    recs = _records(n, seed=1)
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "s.duckdb") as store:
        store.begin_run("r", "bench", "b.synth", "fp", {}, [], "bench")
        t0 = time.perf_counter()
        for call, row in recs:
            store.commit_result("r", "answered", call, [row])
        store.flush()   # the bulk writer (issue 9) buffers: the last batch counts too
        dt = time.perf_counter() - t0
    return {"rows": n, "seconds": round(dt, 3), "rows_per_s": round(n / dt, 1), "ms_per_commit": round(dt / n * 1000, 2)}


def chunked(n: int, chunk: int = 512) -> dict[str, Any]:
    from synthlang.store import Store

    recs = [r for _, r in _records(n, seed=2)]
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "s.duckdb") as store:
        store.begin_run("r", "bench", "b.synth", "fp", {}, [], "bench")
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            store.write_rows("r", "answered", recs[i:i + chunk])
        dt = time.perf_counter() - t0
    return {"rows": n, "chunk": chunk, "seconds": round(dt, 3), "rows_per_s": round(n / dt, 1)}


def _arrow_tables(recs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    import datetime as dt

    import pyarrow as pa

    now = dt.datetime.now()
    calls, rows = [c for c, _ in recs], [r for _, r in recs]
    dumps = json.dumps
    return {
        "calls": pa.table({
            "call_key": [c["key"] for c in calls], "engine": [c["engine"] for c in calls], "model": [c["model"] for c in calls],
            "messages": [dumps(c["messages"]) for c in calls], "sampling": [dumps(c["sampling"]) for c in calls],
            "seed": [c["seed"] for c in calls], "sample_index": [0] * len(calls), "json_schema": [None] * len(calls),
            "response": [c["text"] for c in calls], "finish_reason": [c["finish_reason"] for c in calls],
            "prompt_tokens": [c["prompt_tokens"] for c in calls], "completion_tokens": [c["completion_tokens"] for c in calls],
            "latency_s": [c["latency_s"] for c in calls], "error": [None] * len(calls), "logprobs": [None] * len(calls),
            "meta": [dumps(c["meta"]) for c in calls], "run_id": ["r"] * len(calls), "step": ["answered"] * len(calls),
            "created_at": [now] * len(calls)}),
        "rows": pa.table({
            "row_id": [r["row_id"] for r in rows], "step": ["answered"] * len(rows),
            "step_fingerprint": [r["step_fingerprint"] for r in rows], "operator": ["answer"] * len(rows),
            "round": [0] * len(rows), "sample_index": [0] * len(rows), "status": ["ok"] * len(rows),
            "error": [None] * len(rows), "raw": [None] * len(rows), "call_key": [r["call_key"] for r in rows],
            "model": ["teacher"] * len(rows), "template_hash": [r["template_hash"] for r in rows],
            "data": [dumps(r["data"]) for r in rows], "created_at": [now] * len(rows)}),
        "lineage": pa.table({"child_id": [r["row_id"] for r in rows], "parent_id": [r["parents"][0] for r in rows],
                             "step": ["answered"] * len(rows), "round": [0] * len(rows)}),
        "run_rows": pa.table({"run_id": ["r"] * len(rows), "row_id": [r["row_id"] for r in rows],
                              "step": ["answered"] * len(rows), "reused": [False] * len(rows)}),
    }


def arrow_bulk(n: int, chunk: int = 10_000) -> dict[str, Any]:
    """Set-based inserts into the store's own schema; then the file size, scaled to a million rows."""
    from synthlang.store import Store

    recs = _records(n, seed=3)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        with Store(path) as store:
            store.begin_run("r", "bench", "b.synth", "fp", {}, [], "bench")
            con = store.con
            cols = {t: [c for (c,) in con.execute(f"SELECT column_name FROM duckdb_columns() WHERE table_name = '{t}' "
                                                   "ORDER BY column_index").fetchall()]
                    for t in ("calls", "rows", "lineage", "run_rows")}
            t_build = t_insert = 0.0
            for i in range(0, n, chunk):
                t0 = time.perf_counter()
                tables = _arrow_tables(recs[i:i + chunk])
                t1 = time.perf_counter()
                con.execute("BEGIN TRANSACTION")
                for name, tab in tables.items():
                    con.register("_t", tab)
                    names = [c for c in cols[name] if c in tab.column_names]
                    con.execute(f"INSERT INTO {name} ({', '.join(names)}) SELECT {', '.join(names)} FROM _t")
                    con.unregister("_t")
                con.execute("COMMIT")
                t_build += t1 - t0
                t_insert += time.perf_counter() - t1
            memory = {tag: int(b) for tag, b in con.execute(
                "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0").fetchall()}
            con.execute("CHECKPOINT")
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in cols}
        size = os.path.getsize(path)
        wal = path.with_suffix(".duckdb.wal")
        size += os.path.getsize(wal) if wal.exists() else 0
    text_bytes = sum(len(c["messages"][0]["content"]) + len(c["text"]) + len(json.dumps(r["data"])) for c, r in recs)
    return {"rows": n, "chunk": chunk, "insert_s": round(t_insert, 3), "rows_per_s": round(n / t_insert, 1),
            "arrow_build_s": round(t_build, 3), "counts": counts, "file_bytes": size,
            "bytes_per_row": round(size / n, 1), "gb_per_million_rows": round(size / n * 1e6 / 1e9, 3),
            "raw_text_bytes_per_row": round(text_bytes / n, 1), "memory_by_tag_bytes": memory,
            "art_index_bytes_per_row": round(memory.get("ART_INDEX", 0) / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-call", type=int, default=500, help="commits for the per-call measurement")
    ap.add_argument("--chunked", type=int, default=5000, help="rows for the chunked measurement")
    ap.add_argument("--size-rows", type=int, default=200_000, help="rows for the bulk insert and size measurement")
    ap.add_argument("--only-size", action="store_true", help="skip the per-call and chunked measurements")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ray_store.json"))
    args = ap.parse_args()
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "note": "store.py of this branch (per-call transactions); the core branch's bulk writer changes per_call",
           "per_call": None if args.only_size else per_call(args.per_call),
           "chunked": None if args.only_size else chunked(args.chunked), "arrow_bulk": arrow_bulk(args.size_rows)}
    import duckdb

    res["duckdb"] = duckdb.__version__
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
