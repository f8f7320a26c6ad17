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

from synthlang.engines.base import Request, Result, score_text, split_directives

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
            schema, directives = split_directives(req.json_schema)
            if "score" in directives:   # teacher forcing: a logprob per whitespace token, a pure function of the token
                toks = str(directives["score"]).split()
                lps = [-(int(hashlib.sha256(t.encode()).hexdigest()[:2], 16) % 40) / 10 for t in toks]
                text = score_text(toks, lps)
                yield Result(req.key, text=text, finish_reason="stop", prompt_tokens=len(content.split()) + len(toks),
                             completion_tokens=0, latency_s=delay, logprobs=lps)
                continue
            if "continue" in directives:   # the continuation only, as the real engines return it
                import re

                nums = re.findall(r"\d+", content)
                text = f" continued {h}.\nThe answer is {nums[-1] if nums else '0'}."
                yield Result(req.key, text=text, finish_reason="stop", prompt_tokens=len(content.split()),
                             completion_tokens=len(text.split()), latency_s=delay)
                continue
            if schema is not None:
                props = schema.get("properties") or {}
                text = json.dumps({p: _fake_value(sub, h) for p, sub in props.items()})
            else:
                text = f"Fake reply {h} to: {content[-60:]}\nThe answer is {_last_number(content)}."
            yield Result(req.key, text=text, finish_reason="stop", prompt_tokens=len(content.split()),
                         completion_tokens=len(text.split()), latency_s=delay,
                         logprobs=[-0.1] * 4 if req.logprobs is not None else None)

    def close(self) -> None:
        pass


def _last_number(text: str) -> str:
    """The last run of digits in ``text`` (``"0"`` if none), reading only its end when the end has one."""
    tail = text[-200:]
    nums = _NUMBER.findall(tail)
    if nums and (len(tail) == len(text) or not tail[0].isdigit() or len(nums) > 1):
        return nums[-1]
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else "0"


def _fake_value(sub: object, h: str) -> object:
    """A value for one schema property: a string or list of strings where the schema says so, else 1..5."""
    t = sub.get("type") if isinstance(sub, dict) else None
    if t == "string" and isinstance(sub, dict) and sub.get("enum"):   # one of the allowed values, by the hash
        return sub["enum"][int(h[:2], 16) % len(sub["enum"])]
    if t == "string" and isinstance(sub, dict) and not sub.get("enum"):
        return f"fake {h}"
    if t == "array" and isinstance(sub, dict) and (sub.get("items") or {}).get("type") == "string":
        return [_fake_value(sub.get("items") or {}, h + str(i)) for i in range(1 + int(h[:2], 16) % 3)]
    return int(h[:2], 16) % 5 + 1
