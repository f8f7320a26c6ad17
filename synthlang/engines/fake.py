"""A deterministic in-process fake engine for fast unit tests of scheduling and caching.

It is no evidence that any real engine works. Its reply is a pure function of
the request (messages, seed), so cache and resume tests can compare runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator

from synthlang.engines.base import Request, Result

_NUMBER = re.compile(r"\d+")


class FakeEngine:
    """Answers every request with text derived from a hash of the request.

    The reply ends with ``The answer is N.`` where N is the last number of the
    prompt, so ``answer``/``verify`` pipelines have something to extract.
    ``SYNTH_FAKE_DELAY`` (seconds per call) slows it down for crash tests.
    """

    kind = "fake"

    def __init__(self, model_id: str = "fake") -> None:
        self.model_id = model_id
        self.calls = 0

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        delay = float(os.environ.get("SYNTH_FAKE_DELAY", "0") or 0)
        for req in requests:
            if delay:
                time.sleep(delay)
            self.calls += 1
            content = req.messages[-1]["content"]
            h = hashlib.sha256((content + str(req.seed)).encode()).hexdigest()[:8]
            if req.json_schema is not None:
                props = list((req.json_schema.get("properties") or {}).keys())
                text = json.dumps({p: (int(h[:2], 16) % 5 + 1) for p in props})
            else:
                nums = _NUMBER.findall(content)
                last = nums[-1] if nums else "0"
                text = f"Fake reply {h} to: {content[-60:]}\nThe answer is {last}."
            yield Result(req.key, text=text, finish_reason="stop", prompt_tokens=len(content.split()),
                         completion_tokens=len(text.split()), latency_s=delay,
                         logprobs=[-0.1] * 4 if req.logprobs is not None else None)

    def close(self) -> None:
        pass
