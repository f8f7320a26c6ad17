"""The raw side of the HTTP benchmarks: an ``AsyncOpenAI`` loop at a fixed concurrency, nothing else."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def raw_openai(base_url: str, model: str, messages: list[list[dict[str, str]]], concurrency: int, max_tokens: int,
               seed0: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """Send every prompt with at most ``concurrency`` in flight; tokens/s over the whole batch."""
    import openai

    async def go() -> dict[str, Any]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-none", max_retries=0, timeout=timeout)
        sem = asyncio.Semaphore(concurrency)
        toks = 0

        async def one(i: int, msgs: list[dict[str, str]]) -> None:
            nonlocal toks
            async with sem:
                r = await client.chat.completions.create(model=model, messages=msgs, temperature=0.7, top_p=1.0,
                                                         max_tokens=max_tokens, seed=seed0 + i)
                toks += r.usage.completion_tokens if r.usage else 0

        t = time.perf_counter()
        await asyncio.gather(*(one(i, m) for i, m in enumerate(messages)))
        wall = time.perf_counter() - t
        await client.close()
        return {"seconds": wall, "calls": len(messages), "completion_tokens": toks, "tokens_per_s": toks / wall}

    return asyncio.run(go())
