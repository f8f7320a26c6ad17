"""The raw side of the HTTP benchmarks: an ``AsyncOpenAI`` loop at a fixed concurrency, nothing else."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def raw_openai(base_url: str, model: str, messages: list[list[dict[str, str]]], concurrency: int, max_tokens: int,
               seed0: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """Send every prompt with at most ``concurrency`` in flight; tokens/s over the whole batch."""
    return raw_openai_steps(base_url, model, [messages], concurrency, max_tokens, seed0, timeout)


def raw_openai_steps(base_url: str, model: str, steps: list[list[list[dict[str, str]]]], concurrency: int,
                     max_tokens: int, seed0: int = 0, timeout: float = 600.0, via: str = "create") -> dict[str, Any]:
    """Send each step's prompts in turn (one client, one event loop for all), at most ``concurrency`` in flight.

    The seconds cover the client's creation, every step and its closing, as a hand-written script's would.
    ``via="post"`` sends the same body through ``client.post("/chat/completions", cast_to=object)``, the path
    the openai engine takes, so engine-vs-raw can be split into the client path and the engine's own work.
    """
    import openai

    async def go() -> dict[str, Any]:
        t = time.perf_counter()
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-none", max_retries=0, timeout=timeout)
        sem = asyncio.Semaphore(concurrency)
        toks = 0

        async def one(i: int, msgs: list[dict[str, str]]) -> None:
            nonlocal toks
            async with sem:
                if via == "post":
                    body = {"model": model, "messages": msgs, "temperature": 0.7, "top_p": 1.0,
                            "max_tokens": max_tokens, "seed": seed0 + i}
                    d = await client.post("/chat/completions", cast_to=object, body=body, options={"timeout": timeout})
                    toks += int((d.get("usage") or {}).get("completion_tokens") or 0)
                    return
                r = await client.chat.completions.create(model=model, messages=msgs, temperature=0.7, top_p=1.0,
                                                         max_tokens=max_tokens, seed=seed0 + i)
                toks += r.usage.completion_tokens if r.usage else 0

        calls = 0
        for messages in steps:
            await asyncio.gather(*(one(i, m) for i, m in enumerate(messages)))
            calls += len(messages)
        await client.close()
        wall = time.perf_counter() - t
        return {"seconds": wall, "calls": calls, "completion_tokens": toks, "tokens_per_s": toks / wall}

    return asyncio.run(go())
