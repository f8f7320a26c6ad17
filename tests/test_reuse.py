"""Issue 11 item 15: raising max_tokens re-issues only the calls that stopped at ``length``.

The rule (synthlang/plan/reuse.py): a call that finished with ``stop`` after fewer than the new
``max_tokens`` tokens gives the same reply under it, so it is reused. The engine is a deterministic
fake whose replies have a per-request length and are cut at ``max_tokens`` with ``finish_reason=length``,
like a real engine (what is under test is the cache, not a model).
"""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from conftest import write

import synthlang
from synthlang.engines.base import Result
from synthlang.plan.reuse import relaxed_key, reusable

RECIPE = """recipe r "reuse"
model m = fake(temperature=0.7, max_tokens=MAX)
source g = jsonl("data/gsm8k/train_first1000.jsonl", limit=40) {
  question: str
}
step x = generate(g, model=m, field=question)
"""


class CappedFake:
    """Replies of 5..34 words (a hash of the prompt and seed), cut at max_tokens words."""

    kind = "fake"
    model_id = "fake"

    def __init__(self):
        self.calls = 0

    def generate(self, requests):
        for req in requests:
            self.calls += 1
            h = int(hashlib.sha256((req.messages[-1]["content"] + str(req.seed)).encode()).hexdigest()[:6], 16)
            words = [f"w{i}" for i in range(5 + h % 30)]
            cut = len(words) > req.sampling.max_tokens
            words = words[:req.sampling.max_tokens]
            yield Result(req.key, text=" ".join(words), finish_reason="length" if cut else "stop",
                         prompt_tokens=10, completion_tokens=len(words))

    def close(self):
        pass


def _run(project, max_tokens, eng):
    p = write(project / "r.synth", RECIPE.replace("MAX", str(max_tokens)))
    s = synthlang.run(synthlang.check_file(p), db=project / "db.duckdb", engine_factory=lambda m: eng)
    return {x.name: x for x in s.steps}["x"]


def test_raising_max_tokens_reissues_only_the_calls_cut_at_length(project):
    eng = CappedFake()
    first = _run(project, 16, eng)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    (stopped,) = con.execute("select count(*) from calls where finish_reason = 'stop'").fetchone()
    (cut,) = con.execute("select count(*) from calls where finish_reason = 'length'").fetchone()
    con.close()
    assert first.calls_made == 40 and stopped + cut == 40 and 5 <= cut <= 35 and first.rows_failed == cut

    second = _run(project, 64, eng)
    assert second.calls_made == cut and second.calls_cached == stopped and second.rows_failed == 0
    assert eng.calls == 40 + cut
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    # every ok row points at a call that exists; the reused ones at the call made under max_tokens=16
    assert con.execute("select count(*) from rows r left join calls c on c.call_key = r.call_key "
                       "where r.step = 'x' and r.status = 'ok' and c.call_key is null").fetchone()[0] == 0
    reused = con.execute("select count(*) from rows r join calls c on c.call_key = r.call_key "
                         "join run_rows rr on rr.row_id = r.row_id and rr.run_id = (select run_id from runs "
                         "order by started_at desc limit 1) "
                         "where r.step = 'x' and r.status = 'ok' and c.sampling->>'max_tokens' = '16'").fetchone()[0]
    con.close()
    assert reused == stopped

    third = _run(project, 64, eng)       # nothing new: every row is reused
    assert third.calls_made == 0 and eng.calls == 40 + cut


def test_lowering_max_tokens_reuses_only_replies_shorter_than_the_new_limit(project):
    eng = CappedFake()
    _run(project, 64, eng)                 # all 40 stop: 5..34 words
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    (short,) = con.execute("select count(*) from calls where completion_tokens < 10").fetchone()
    con.close()
    lower = _run(project, 10, eng)
    assert lower.calls_made == 40 - short and lower.calls_cached == short


def test_the_rule_as_a_pure_function():
    assert reusable({"finish_reason": "stop", "completion_tokens": 20, "error": None}, 21)
    assert not reusable({"finish_reason": "stop", "completion_tokens": 20, "error": None}, 20)
    assert not reusable({"finish_reason": "length", "completion_tokens": 16, "error": None}, 64)
    assert not reusable({"finish_reason": "stop", "completion_tokens": 3, "error": "boom"}, 64)
    msgs = [{"role": "user", "content": "q"}]
    a = relaxed_key("fake", "m", msgs, {"temperature": 0.7, "max_tokens": 16}, 0, None)
    assert a == relaxed_key("fake", "m", msgs, {"temperature": 0.7, "max_tokens": 2048}, 0, None)
    assert a != relaxed_key("fake", "m", msgs, {"temperature": 0.8, "max_tokens": 16}, 0, None)
    assert a != relaxed_key("fake", "m", msgs, {"temperature": 0.7, "max_tokens": 16}, 1, None)
    assert a != relaxed_key("fake", "m", msgs, {"temperature": 0.7, "max_tokens": 16}, 0, 7)
    assert a != relaxed_key("fake", "m", msgs, {"temperature": 0.7, "max_tokens": 16}, 0, None, revision="r2")


@pytest.mark.parametrize("flag", [True])
def test_retry_failed_is_not_answered_by_a_relaxed_hit(project, flag):
    eng = CappedFake()
    _run(project, 16, eng)
    p = write(project / "r.synth", RECIPE.replace("MAX", "16"))
    before = eng.calls
    s = synthlang.run(synthlang.check_file(p), db=project / "db.duckdb", engine_factory=lambda m: eng, retry_failed=flag)
    x = {y.name: y for y in s.steps}["x"]
    assert x.calls_made == eng.calls - before and x.calls_made > 0   # the cut rows were asked again
