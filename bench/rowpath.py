"""Per-row Python cost of the runner's row path, independent of the scheduler and the store (issue 9).

The quickstart recipe (``recipes/quickstart.synth``: source -> rephrase -> answer -> verify) on N GSM8K seeds,
each stage timed on its own, in CPU microseconds per row (per call for the LLM stages):

* ``render``: the prompt of a call, as the runner renders it (``Runner._messages``: Jinja in the bounded
  sandbox), for the rephrase and the answer step;
* ``key``: the call key and the relaxed key (``plan.keys.call_key``, ``plan.reuse.relaxed_key``) of each call;
* ``fake_call``: the fake engine answering the call (``engines/fake.py``);
* ``extract``: the operator's post-processing of the reply (rephrase: prefix stripping; answer: final-answer
  extraction, ``ops/answers.extract_answer``);
* ``verify``: ``verify(answered, field=final_answer, gold=gold)`` (math-verify behind ``ops/mathcheck``), on the
  first pass (``verify_cold``) and again on the same rows in the same process (``verify_warm``, what a cached
  re-run or a loop's next round pays).

Each stage is timed ``--reps`` times in CPU seconds of this process (``time.process_time``, all threads) and
the fewest is kept: wall clocks on a shared 2-core machine mostly measure the other processes.

``total_per_seed_us`` adds them up for one seed going through the three steps (2 calls, one verify). The
core's target is 20,000 rows/s committed across all steps, i.e. about 50 us per row for everything.

Usage: ``python bench/rowpath.py [--n 1000] [--reps 3] [--label after] [--code PATH]``. ``--code`` imports
synthlang from another checkout (e.g. an unpacked older commit, for a before/after pair); results go into
``bench/results/rowpath.json`` under ``--label``, keeping the other labels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _timed(fn: Any, reps: int) -> float:
    """Fewest CPU seconds of this process (all threads) that ``fn()`` took over ``reps`` runs.

    CPU time, not wall time: on a shared machine a wall clock counts the time other processes held the
    cores, which moved single figures by 5x between consecutive runs here.
    """
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return min(out)


def measure(n: int, reps: int) -> dict[str, Any]:
    import synthlang
    from synthlang.engines.base import Request
    from synthlang.engines.fake import FakeEngine
    from synthlang.execute.runner import Runner
    from synthlang.expr import final_number
    from synthlang.plan.keys import call_key
    from synthlang.plan.reuse import relaxed_key
    from synthlang.store import Store

    prog = synthlang.check_file(REPO / "recipes" / "quickstart.synth")
    steps = {st.name: st for st in prog.steps}
    reph, ans, ver = steps["rephrased"], steps["answered"], steps["verified"]
    seeds = []
    with open(REPO / "recipes/data/gsm8k/train_first1000.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            seeds.append({"question": row["question"], "answer": row["answer"], "gold": final_number(row["answer"])})
    seeds = (seeds * (n // len(seeds) + 1))[:n]
    tmp = tempfile.mkdtemp(prefix="synth-rowpath-")
    store = Store(Path(tmp) / "db.duckdb")
    runner = Runner(prog, store)
    engine = FakeEngine()
    model = reph.model
    assert model is not None
    sampling = model.sampling
    skey = sampling.key_dict()
    res: dict[str, Any] = {}

    def stage_calls(st: Any, rows: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        msgs = [runner._messages(st, r) for r in rows]
        keys = [call_key(model.kind, model.model_id, list(m), skey, 0, None) for m in msgs]
        reqs = [Request(k, m, sampling, s) for m, (k, s) in zip(msgs, keys, strict=True)]
        # each row's own text, so the next step renders distinct prompts (the fake engine echoes the prompt)
        texts = [r.text for r in engine.generate(reqs)]
        out = []
        for r, text in zip(rows, texts, strict=True):
            fields = st.op.post(r, text, st.opts)
            out.append({**r, **{st.rename.get(k, k): v for k, v in fields.items()}})
        return msgs, out

    # the rows each stage sees (computed once, untimed)
    m1, rephrased = stage_calls(reph, seeds)
    m2, answered = stage_calls(ans, rephrased)
    calls = [(reph, seeds, m1), (ans, rephrased, m2)]

    def render() -> None:
        for st, rows, _ in calls:
            for r in rows:
                runner._messages(st, r)

    def keys() -> None:
        for _, _, msgs in calls:
            for m in msgs:
                ml = list(m)
                call_key(model.kind, model.model_id, ml, skey, 0, None)
                relaxed_key(model.kind, model.model_id, ml, skey, 0, None)

    all_reqs = []
    for _, _, ms in calls:
        for m in ms:
            k, s = call_key(model.kind, model.model_id, list(m), skey, 0, None)
            all_reqs.append(Request(k, m, sampling, s))
    replies = [r.text for r in engine.generate(all_reqs)]

    def fake() -> None:
        for _ in engine.generate(all_reqs):
            pass

    def extract() -> None:
        i = 0
        for st, rows, _ in calls:
            for r in rows:
                st.op.post(r, replies[i], st.opts)
                i += 1

    ncalls = len(all_reqs)
    res["render_us_per_call"] = _timed(render, reps) / ncalls * 1e6
    res["key_us_per_call"] = _timed(keys, reps) / ncalls * 1e6
    res["fake_call_us_per_call"] = _timed(fake, reps) / ncalls * 1e6
    res["extract_us_per_call"] = _timed(extract, reps) / ncalls * 1e6
    t = time.process_time()
    first = ver.op.run_apply(answered, ver.opts)
    res["verify_cold_us_per_row"] = (time.process_time() - t) / n * 1e6
    res["verify_warm_us_per_row"] = _timed(lambda: ver.op.run_apply(answered, ver.opts), reps) / n * 1e6
    again = ver.op.run_apply(answered, ver.opts)
    assert again == first, "verify must give the same verdicts on a second pass"
    res["verified_true"] = sum(1 for _, f in first if f["verified"])
    per_seed_calls = 2 * (res["render_us_per_call"] + res["key_us_per_call"] + res["fake_call_us_per_call"]
                          + res["extract_us_per_call"])
    res["total_per_seed_us_cold"] = per_seed_calls + res["verify_cold_us_per_row"]
    res["total_per_seed_us_warm"] = per_seed_calls + res["verify_warm_us_per_row"]
    res["rows_per_s_cold"] = 3e6 / res["total_per_seed_us_cold"]   # 3 rows committed per seed (3 steps)
    res["rows_per_s_warm"] = 3e6 / res["total_per_seed_us_warm"]
    store.close()
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="GSM8K seeds (the 1,000 shipped rows, repeated beyond)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--label", default="after")
    ap.add_argument("--code", default=None, help="import synthlang from this checkout instead of this one")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(a.code).resolve() if a.code else REPO))
    import synthlang

    res = measure(a.n, a.reps)
    out = REPO / "bench" / "results" / "rowpath.json"
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"benchmark": "rowpath", "runs": {}}
    doc["runs"][a.label] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n": a.n, "reps": a.reps,
                            "code": str(Path(synthlang.__file__).resolve().parents[1]), "load_avg": os.getloadavg(),
                            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                        "cpus": os.cpu_count()}, **res}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(a.label, json.dumps(res))


if __name__ == "__main__":
    main()
