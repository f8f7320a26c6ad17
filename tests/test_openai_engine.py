"""The openai engine against a real ``llama_cpp.server`` (SmolLM2 GGUF), started once per session.

llama_cpp.server runs one request at a time, so these use small max_tokens and few calls.
"""

from __future__ import annotations

import json

import pytest

from synthlang.engines import create_engine
from synthlang.engines.base import Request, SamplingParams
from synthlang.errors import ConfigError, EngineUnavailable

pytestmark = pytest.mark.slow

SP = SamplingParams(temperature=0.7, max_tokens=12)


def req(key: str, text: str, seed: int = 1, **kw) -> Request:
    return Request(key, ({"role": "user", "content": text},), kw.pop("sampling", SP), seed, **kw)


@pytest.fixture(scope="module")
def engine(llama_server):
    e = create_engine("openai", llama_server.model, {"base_url": llama_server.base_url, "concurrency": 4,
                                                      "timeout": 120})
    yield e
    e.close()


def test_results_stream_back_with_usage_and_meta(engine, llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-value")
    keys = [f"k{i}" for i in range(6)]
    seen = []
    for r in engine.generate([req(k, f"Name a fruit number {i}.", seed=i) for i, k in enumerate(keys)]):
        seen.append(r.key)
        assert r.error is None, r.error
        assert r.text.strip()
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 12
        assert r.finish_reason in ("stop", "length")
        assert r.meta["endpoint"] == llama_server.base_url
        assert 1 <= r.meta["concurrency"] <= 4
        assert "sk-secret" not in json.dumps(r.meta)
    assert sorted(seen) == keys


def test_same_seed_same_text(engine):
    a = list(engine.generate([req("a", "Write one word about the sea.", seed=42, sampling=SamplingParams(0.0, max_tokens=8))]))
    b = list(engine.generate([req("b", "Write one word about the sea.", seed=42, sampling=SamplingParams(0.0, max_tokens=8))]))
    assert a[0].text == b[0].text


def test_logprobs_come_back(engine):
    (r,) = engine.generate([req("lp", "Say yes.", logprobs=2)])
    assert r.logprobs and all(lp <= 0.0 for lp in r.logprobs)
    assert len(r.logprobs) == r.completion_tokens


def test_json_schema_falls_back_to_json_mode_and_validates(llama_server):
    # llama_cpp.server refuses response_format json_schema; the engine switches to JSON mode.
    e = create_engine("openai", llama_server.model, {"base_url": llama_server.base_url, "reask": 1})
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    try:
        (r,) = e.generate([req("js", "Rate the word 'good' from 1 to 5.", json_schema=schema,
                               sampling=SamplingParams(0.0, max_tokens=24))])
    finally:
        e.close()
    assert e._schema_ok is False
    if r.error is None and r.finish_reason == "stop":
        assert isinstance(json.loads(r.text), dict)
    else:   # a 135M model may still miss the schema: then the reason says so, after a bounded re-ask
        assert r.finish_reason in ("length", "error")
    assert r.meta["attempts"] >= 2


def test_unknown_model_is_engine_unavailable(llama_server):
    e = create_engine("openai", "no-such-model", {"base_url": llama_server.base_url})
    try:
        results = list(e.generate([req("x", "hi")]))
        # llama_cpp.server serves its one model whatever the name; then the call just works
        assert results[0].error is None
    except EngineUnavailable as exc:
        assert "no-such-model" in str(exc)
    finally:
        e.close()


def test_connection_refused_fails_the_call_after_bounded_retries():
    from servers import free_port

    e = create_engine("openai", "m", {"base_url": f"http://127.0.0.1:{free_port()}/v1", "max_retries": 2,
                                      "timeout": 2})
    e.backoff_base_s = 0.01
    try:
        (r,) = e.generate([req("x", "hi")])
    finally:
        e.close()
    assert r.finish_reason == "error" and "connection" in r.error.lower()
    assert r.meta["attempts"] == 3


def test_missing_key_env_for_the_real_api_is_a_config_error(monkeypatch):
    monkeypatch.delenv("SYNTH_NO_SUCH_KEY", raising=False)
    e = create_engine("openai", "gpt-4o-mini", {"api_key_env": "SYNTH_NO_SUCH_KEY"})
    with pytest.raises(ConfigError, match="SYNTH_NO_SUCH_KEY"):
        list(e.generate([req("x", "hi")]))


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="concurency"):
        create_engine("openai", "m", {"concurency": 4})


RECIPE = """
recipe swap "a recipe written for the OpenAI API, run on a local server via --model"
model teacher = openai("gpt-4o-mini", temperature=0.7, max_tokens=24, api_key_env="SYNTH_TEST_KEY")
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
}
step rephrased = rephrase(seeds, model=teacher) -> rephrased_question
"""


def test_synth_run_model_flag_swaps_the_engine_and_keeps_the_key_out_of_the_db(llama_server, project):
    import os
    import subprocess
    import sys

    import duckdb
    from conftest import REPO, write

    write(project / "swap.synth", RECIPE)
    secret = "sk-test-SECRET-0123456789"
    decl = f'teacher=openai("{llama_server.model}", base_url="{llama_server.base_url}", concurrency=2, ' \
           f'api_key_env="SYNTH_TEST_KEY", temperature=0.7, max_tokens=24, price_input=0.5, price_output=1.5)'
    env = {**os.environ, "SYNTH_TEST_KEY": secret, "PYTHONPATH": str(REPO)}
    plan = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "plan", "swap.synth", "--model", decl],
                          cwd=project, capture_output=True, text=True, timeout=120, env=env)
    assert plan.returncode == 0, plan.stderr
    assert f"openai('{llama_server.model}')" in plan.stdout
    run = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "run", "swap.synth", "--quiet", "--model", decl,
                          "--db", "s.duckdb"], cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    con = duckdb.connect(str(project / "s.duckdb"), read_only=True)
    rows = con.execute("select engine, model, meta, prompt_tokens, completion_tokens from calls").fetchall()
    assert len(rows) == 3
    for engine, model, meta, pt, ct in rows:
        meta = json.loads(meta)
        assert engine == "openai" and model == llama_server.model
        assert meta["endpoint"] == llama_server.base_url and meta["concurrency"] <= 2
        assert meta["cost_usd"] == pytest.approx((pt * 0.5 + ct * 1.5) / 1e6)
    dump = project / "dump.csv"
    for (table,) in con.execute("select table_name from information_schema.tables where table_schema='main'").fetchall():
        con.execute(f"copy (select * from {table}) to '{dump}' (header)")
        assert secret not in dump.read_text(encoding="utf-8", errors="replace"), table


def test_retry_after_5xx_and_dropped_connections_are_retried():
    from batch_server import BatchServer

    s = BatchServer().start()   # echo answers, no model: this test is about the HTTP behaviour
    s.faults = [429, 503, 0, 500]
    e = create_engine("openai", "m", {"base_url": s.base_url, "concurrency": 1, "max_retries": 5, "timeout": 10})
    e.backoff_base_s = 0.05
    try:
        (r,) = e.generate([req("x", "hello there")])
    finally:
        e.close()
        s.stop()
    assert r.error is None and r.text == "echo: hello there"
    assert r.meta["attempts"] == 5
    codes = [c for _, c in s.chat_calls]
    assert codes == [429, 503, 0, 500, 200]
    assert s.chat_calls[1][0] - s.chat_calls[0][0] >= 0.95   # Retry-After: 1 was honoured


def test_retries_are_bounded_and_client_errors_are_not_retried():
    from batch_server import BatchServer

    s = BatchServer().start()
    s.faults = [502] * 10
    e = create_engine("openai", "m", {"base_url": s.base_url, "max_retries": 2})
    e.backoff_base_s = 0.01
    try:
        (r,) = e.generate([req("x", "hi")])
        assert r.finish_reason == "error" and "502" in r.error and r.meta["attempts"] == 3
        s.faults = [400]
        (r,) = e.generate([req("y", "hi")])
        assert "400" in r.error and r.meta["attempts"] == 1
    finally:
        e.close()
        s.stop()
