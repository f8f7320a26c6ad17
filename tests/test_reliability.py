"""Reliability in-process: cache semantics, per-row failures, --retry-failed, budgets, cache version.

Runs the real runner and a real DuckDB file on real GSM8K rows; the engine is the
deterministic fake (or a fake that misbehaves on purpose), because what is under
test is the runner's scheduling, caching and failure recording, not an engine.
Real-engine failures (context overflow, truncation) are in test_crash.py.
"""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import FAKE_RECIPE, write

import synthlang
from synthlang.engines.base import Result
from synthlang.engines.fake import FakeEngine
from synthlang.errors import BudgetExceeded, SchemaVersionMismatch
from synthlang.execute.budget import Budget

RECIPE = FAKE_RECIPE


def _run(project, factory, text=RECIPE, budget=None, retry_failed=False, **params):
    p = write(project / "r.synth", text)
    prog = synthlang.check_file(p, {k: str(v) for k, v in params.items()})
    return synthlang.run(prog, db=project / "db.duckdb", engine_factory=factory, budget=budget, retry_failed=retry_failed)


def _sql(project, q):
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


class Counting:
    """An engine factory that records every request the engine receives."""

    def __init__(self, engine=None) -> None:
        self.engine = engine or FakeEngine()
        self.sent: list = []

    def __call__(self, model):
        outer = self

        class Recording:
            kind, model_id = outer.engine.kind, outer.engine.model_id

            def generate(self, reqs):
                def tap():
                    for r in reqs:
                        outer.sent.append(r)
                        yield r
                return outer.engine.generate(tap())

            def close(self):
                pass

        return Recording()


# ------------------------------------------------------------------ cache semantics
def test_n4_on_one_row_makes_four_distinct_calls_and_rows(project):
    f = Counting()
    text = RECIPE.replace("n=2", "n=4")
    s = _run(project, f, text, limit=1)
    by = {x.name: x for x in s.steps}
    assert by["a"].calls_made == 4 and by["a"].rows_out == 4
    keys = [r.key for r in f.sent if "rq" not in r.key]
    assert len({r.key for r in f.sent}) == len(f.sent) == 5       # 1 rephrase + 4 answers, no key twice
    assert len({r.seed for r in f.sent[1:]}) == 4 and keys
    rows = _sql(project, "select sample_index, call_key from rows where step='a' order by sample_index")
    assert [r[0] for r in rows] == [0, 1, 2, 3] and len({r[1] for r in rows}) == 4


def test_identical_requests_in_one_run_are_sent_once(project):
    # three identical seed lines and two steps asking the very same thing
    line = json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"})
    write(project / "data" / "dup.jsonl", "\n".join([line] * 3) + "\n")
    text = RECIPE.replace("gsm8k/train_first1000.jsonl", "dup.jsonl").replace(
        "step a = answer(r, model=m, field=rq, n=2)",
        "step r2 = rephrase(seeds, model=m) -> rq2\nstep a = answer(r, model=m, field=rq, n=2)")
    f = Counting()
    s = _run(project, f, text)
    by = {x.name: x for x in s.steps}
    assert by["seeds"].rows_out == 3                       # three distinct seed rows (same content, own ids)
    # r and r2 stream side by side: whichever asks first makes the call, the other is served (cache or in flight)
    assert by["r"].calls_made + by["r2"].calls_made == 1 and by["r"].calls_cached + by["r2"].calls_cached == 1
    assert by["r"].rows_out == 3 and by["r2"].rows_out == 3
    assert len(f.sent) == len({r.key for r in f.sent}) == 1 + 2   # one rephrase, two answer samples
    assert _sql(project, "select count(distinct row_id), count(*) from rows where step='a'") == [(6, 6)]


def test_knobs_that_cannot_change_output_stay_out_of_the_key(project):
    # an OpenAI-compatible model (served here by the fake engine): endpoint, concurrency, timeouts, retries
    f = Counting()
    api = RECIPE.replace("fake(temperature=0.5, max_tokens=32)", 'openai("m1", temperature=0.5, max_tokens=32{})')
    _run(project, f, api.replace("{}", ', base_url="http://127.0.0.1:1/v1", concurrency=2'))
    n = len(f.sent)
    _run(project, f, api.replace("{}", ', base_url="http://127.0.0.1:2/v1", concurrency=9, timeout=5, max_retries=1, rpm=60'))
    assert len(f.sent) == n                                # zero new calls


def test_post_processing_change_makes_zero_calls_and_new_rows(project):
    # with the recipe's own prompt extract= only post-processes (the default prompt asks for the mode's final line)
    own = RECIPE.replace("field=rq, n=2)", 'field=rq, n=2, prompt="Solve: {{ input }}")')
    f = Counting()
    _run(project, f, own)
    n = len(f.sent)
    s = _run(project, f, own.replace("gold=gold)", "gold=gold, tolerance=0.5)")
             .replace("n=2, prompt=", 'n=2, extract="text", prompt='))
    assert len(f.sent) == n
    by = {x.name: x for x in s.steps}
    assert by["a"].calls_cached == 8 and by["a"].rows_reused == 0 and by["v"].rows_reused == 0


def test_sampling_change_makes_new_calls_for_that_step_only(project):
    f = Counting()
    _run(project, f)
    s = _run(project, f, RECIPE.replace("step a = answer(r, model=m, field=rq, n=2)",
                                        "step a = answer(r, model=m, field=rq, n=2, top_p=0.9)"))
    by = {x.name: x for x in s.steps}
    assert by["r"].calls_made == 0 and by["a"].calls_made == 8


def test_cache_version_mismatch_is_a_clear_error(project):
    _run(project, Counting())
    con = duckdb.connect(str(project / "db.duckdb"))
    con.execute("update meta set value='0' where key='cache_version'")
    con.close()
    with pytest.raises(SchemaVersionMismatch, match="call cache of version 0.*none of its calls would be reused"):
        _run(project, Counting())
    # reading the old file still works
    from synthlang.store import Store

    with Store(project / "db.duckdb", read_only=True) as st:
        assert st.query("select count(*) from calls")[1][0][0] == 12


# ---------------------------------------------------------------- per-row failures
class Misbehaving(FakeEngine):
    """Answers like the fake engine, but a fixed set of prompts fail in a chosen way until retried with a new seed."""

    MODES = ("empty", "content_filter", "length", "error", "schema")

    def __init__(self) -> None:
        super().__init__()
        self.first_seed: dict[str, int] = {}

    def generate(self, requests):
        reqs = list(requests)
        for req, res in zip(reqs, super().generate(reqs), strict=True):
            content = req.messages[-1]["content"]
            mode = next((m for m in self.MODES if f"<{m}>" in content), None)
            first = self.first_seed.setdefault(req.key, req.seed)
            if mode and req.seed == first:
                res = {"empty": Result(req.key, text="   ", finish_reason="stop"),
                       "content_filter": Result(req.key, text="partial", finish_reason="content_filter"),
                       "length": Result(req.key, text="truncated reply with no end", finish_reason="length"),
                       "error": Result(req.key, finish_reason="error", error="HTTP 500 from upstream"),
                       # what the openai engine returns when JSON still breaks the schema after its re-asks
                       "schema": Result(req.key, text='{"score": 4, "reason": "trunc', finish_reason="error",
                                        error="reply does not follow the JSON schema after 2 re-asks: not JSON")}[mode]
            yield res


def _failing_data(project):
    rows = [{"question": f"Q{i}: how many apples is {i} + {i}? <{m}>", "answer": f"#### {2 * i}", "d": i}
            for i, m in enumerate(["ok", "empty", "content_filter", "length", "error", "ok", "schema"])]
    rows.append({"question": "Q6: what is 3 + 3?", "answer": "#### 6", "d": 3})
    write(project / "data" / "f.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    return RECIPE.replace("gsm8k/train_first1000.jsonl", "f.jsonl").replace(
        "  gold = final_number(answer)", "  d: int\n  gold = final_number(answer)").replace(
        "step r = rephrase(seeds, model=m) -> rq",
        'step r = rephrase(seeds, model=m, prompt="Rewrite ({{ 12 // d }}): {{ question }}") -> rq').replace(
        "n=2", "n=1").replace("limit: int = 4", "limit: int = 10")


def test_per_row_failures_are_recorded_and_never_abort_the_step(project):
    eng = Misbehaving()
    text = _failing_data(project)
    s = _run(project, lambda m: eng, text)
    by = {x.name: x for x in s.steps}
    assert s.status == "finished"
    # rows 0 (12 // 0 fails in the template), 1 empty, 2 content_filter, 3 length, 4 error fail; 5 and 6 make it
    assert by["r"].rows_failed == 6 and by["r"].rows_out == 2
    got = dict(_sql(project, "select data->>'question', error from failures where step='r'"))
    errors = sorted(got.values())
    assert any("template failed to render" in e and "ZeroDivisionError" in e for e in errors)
    assert "empty completion" in errors
    assert "completion blocked by the content filter" in errors
    assert "completion truncated at max_tokens (finish_reason=length)" in errors
    assert "call failed: HTTP 500 from upstream" in errors
    raws = dict(_sql(project, "select error, raw from failures where step='r' and raw is not null"))
    assert raws["completion truncated at max_tokens (finish_reason=length)"] == "truncated reply with no end"
    assert raws["completion blocked by the content filter"] == "partial"
    assert raws["call failed: reply does not follow the JSON schema after 2 re-asks: not JSON"] == '{"score": 4, "reason": "trunc'
    # no failed row carries on into later steps, and none is a silent None
    assert _sql(project, "select count(*) from rows where step='a'") == [(2,)]
    assert _sql(project, "select count(*) from rows where status='failed' and (error is null or error='')") == [(0,)]


def test_retry_failed_reissues_exactly_the_failed_calls(project):
    eng = Misbehaving()
    f = Counting(eng)
    text = _failing_data(project)
    _run(project, f, text)
    first = len(f.sent)
    # a plain re-run re-issues only the two errored calls (errors are never cached; this fake fails them
    # again with the same seed); the other failures are answered from the cache and fail the same way
    s2 = _run(project, f, text)
    assert len(f.sent) == first + 2 and {x.name: x for x in s2.steps}["r"].rows_failed == 6
    failed_keys = {k for (k,) in _sql(project, "select call_key from failures where step='r' and call_key is not null")}
    assert len(failed_keys) == 5
    s3 = _run(project, f, text, retry_failed=True)
    retried = f.sent[first + 2:]
    by = {x.name: x for x in s3.steps}
    assert {r.key for r in retried if r.key in failed_keys} == failed_keys
    assert by["r"].calls_made == 5 and by["r"].rows_failed == 1      # only the template row still fails
    assert by["a"].calls_made == 5 and len(retried) == 10           # the 5 rows now ok go on to be answered
    assert by["a"].rows_reused == 2   # (the markers carry into the answer prompts, so those fail once too)
    assert _sql(project, "select count(*) - count(distinct call_key) from calls") == [(0,)]


# ------------------------------------------------------------------------- budgets
def test_budget_stops_before_limit_and_resumes_with_a_higher_one(project):
    f = Counting()
    with pytest.raises(BudgetExceeded, match="calls budget of 5 reached"):
        _run(project, f, budget=Budget(calls=5))
    assert len(f.sent) == 5
    assert _sql(project, "select status, calls_made from runs") == [("budget", 5)]
    assert _sql(project, "select count(*) from calls") == [(5,)]
    with pytest.raises(BudgetExceeded):
        _run(project, f, budget=Budget(calls=4))
    assert len(f.sent) == 9
    s = _run(project, f, budget=Budget(calls=100))
    assert s.status == "finished" and len(f.sent) == 12 and len({r.key for r in f.sent}) == 12
    assert _sql(project, "select count(*) from rows where step='v'") == [(8,)]


def test_recipe_budget_and_token_reservations(project):
    f = Counting()
    with pytest.raises(BudgetExceeded, match="tokens budget of 400"):
        _run(project, f, RECIPE + "budget tokens=400\n")
    spent = _sql(project, "select sum(prompt_tokens + completion_tokens) from calls")[0][0]
    assert spent <= 400
    # each call reserves max_tokens (32) plus a prompt estimate, so it stops with room still unspent
    assert len(f.sent) >= 1


def test_usd_budget_uses_model_prices(project):
    f = Counting()
    text = RECIPE.replace("fake(temperature=0.5, max_tokens=32)",
                          'openai("m1", temperature=0.5, max_tokens=32, price_input=1000, price_output=1000)') + "budget usd=0.5\n"
    with pytest.raises(BudgetExceeded, match="USD budget of 0.5"):
        _run(project, f, text)
    toks = _sql(project, "select sum(prompt_tokens + completion_tokens) from calls")[0][0]
    assert toks * 1000 / 1e6 <= 0.5
