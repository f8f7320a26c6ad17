"""OpenAI ratio: the rephrase recipe on the openai engine vs a raw AsyncOpenAI loop at the same concurrency,
both against the same vLLM OpenAI server (which batches concurrent requests).

Usage: python bench/openai_ratio.py MODEL [--base-url URL] [--served-name NAME] [--concurrency 16] [--n 64]
       [--max-tokens 32] [--reps 5]
Without --base-url the script starts ``python -m vllm.entrypoints.openai.api_server --model MODEL`` on a
free loopback port (vllm must be importable) and stops it at the end. Target: ratio >= 0.97.
Writes bench/results/openai_ratio.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import alternate, project, recipe_messages, run_recipe, synthlang_overhead, write_result
from rawloop import raw_openai


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--base-url")
    ap.add_argument("--served-name", default=None)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-model-len", type=int, default=1024)
    a = ap.parse_args()
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
