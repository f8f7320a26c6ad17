"""vLLM ratio: the rephrase recipe on the vllm engine vs raw ``LLM.chat`` on the same prompts and sampling.

Usage: python bench/vllm_ratio.py MODEL [--n 64] [--max-tokens 32] [--reps 5] [--max-model-len 1024] [--dtype auto]
MODEL is an HF id or folder (on CPU: the converted SmolLM2, ~/.cache/synthlang/smollm2-hf). One
``vllm.LLM`` serves both sides, so model load is not timed. Each side gets the same messages (the
raw side reads what the recipe sent from its DuckDB) and per-request SamplingParams with the same
seeds. Target: ratio >= 0.97. Writes bench/results/vllm_ratio.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import alternate, project, recipe_messages, run_recipe, synthlang_overhead, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--dtype", default="auto")
    a = ap.parse_args()

    from synthlang.engines.vllm import VLLMEngine

    decl = f'vllm("{a.model}", temperature=0.7, max_tokens={a.max_tokens}, max_model_len={a.max_model_len}, dtype="{a.dtype}")'
    root = project(decl, a.n)
    engine = VLLMEngine(a.model, max_model_len=a.max_model_len, dtype=a.dtype)
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    print(f"vllm.LLM built in {load_s:.1f} s")

    class Shared:   # the runner closes its engines after a run; keep the one LLM alive for every repetition
        kind, model_id = engine.kind, engine.model_id

        def generate(self, reqs: Any) -> Any:
            return engine.generate(reqs)

        def close(self) -> None:
            pass

    shared = Shared()
    run_recipe(root, 0, lambda m: shared)   # warm-up, and the messages for the raw side
    messages = recipe_messages(root, 0)
    llm, vllm = engine._llm, engine._vllm

    def raw(rep: int) -> dict[str, Any]:
        params = [vllm.SamplingParams(temperature=0.7, top_p=1.0, max_tokens=a.max_tokens, seed=rep * 100000 + i)
                  for i in range(len(messages))]
        t = time.perf_counter()
        outs = llm.chat(messages, params, use_tqdm=False)
        wall = time.perf_counter() - t
        toks = sum(len(o.outputs[0].token_ids) for o in outs)
        return {"seconds": wall, "calls": len(outs), "completion_tokens": toks, "tokens_per_s": toks / wall}

    result = alternate(lambda rep: run_recipe(root, rep, lambda m: shared), raw, a.reps)
    engine.close()
    result["overhead"] = synthlang_overhead(a.n)
    write_result("vllm_ratio", {"model": a.model, "n": a.n, "max_tokens": a.max_tokens, "reps": a.reps,
                                "max_model_len": a.max_model_len, "dtype": a.dtype, "llm_load_s": load_s}, result)


if __name__ == "__main__":   # vllm.LLM spawns processes
    main()
