"""Per-sample seeds (issue 12 item 6): ``n=4`` with ``seed=7`` makes 4 different samples, reproducibly."""

from __future__ import annotations

import duckdb
import pytest
from conftest import write

import synthlang
from synthlang.plan.keys import call_key, sample_seed

RECIPE = """
model m = {engine}(temperature=0.8, max_tokens=16)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=1) {{
  question: str
}}
step a = generate(seeds, model=m, field=question, n=4, seed=7, prompt="Write one sentence about: {{{{ input }}}}", on_truncation="keep")
"""


def test_sample_seeds_are_distinct_and_sample_zero_keeps_the_step_seed():
    seeds = [sample_seed(7, k) for k in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [sample_seed(7, k) for k in range(4)]
    keys = {call_key("fake", "m", [{"role": "user", "content": "x"}], {}, k, 7) for k in range(4)}
    assert len({k for k, _ in keys}) == 4 and {s for _, s in keys} == set(seeds)


def _texts(project, engine: str) -> list[str]:
    p = write(project / "s.synth", RECIPE.format(engine=engine))
    s = synthlang.run(synthlang.check_file(p), db=project / "db.duckdb")
    assert s.status == "finished"
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    rows = con.execute("SELECT c.seed, c.response FROM rows r JOIN calls c ON c.call_key = r.call_key "
                       "WHERE r.step = 'a' ORDER BY r.sample_index").fetchall()
    assert len({seed for seed, _ in rows}) == 4
    return [t for _, t in rows]


def test_n4_seed7_gives_four_different_samples_on_the_fake_engine(project):
    assert len(set(_texts(project, "fake"))) == 4


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_n4_seed7_gives_different_samples_on_the_embedded_engine(project):
    texts = _texts(project, "embedded")
    assert len(texts) == 4 and len(set(texts)) >= 3     # the same seed made 4 identical samples before


def test_a_loop_round_enters_the_key_and_seed_but_round_zero_keys_stay():
    """Issue 12: each loop round samples anew (LLM2LLM round 2 must not repeat round 1's augmentation),
    while round 0 and every non-loop key stay what they were (cached runs stay cached)."""
    from synthlang.plan.reuse import relaxed_key

    msgs = [{"role": "user", "content": "x"}]
    base = call_key("fake", "m", msgs, {"temperature": 1.0}, 0, None)
    assert call_key("fake", "m", msgs, {"temperature": 1.0}, 0, None, round_=0) == base
    r1, r2 = (call_key("fake", "m", msgs, {"temperature": 1.0}, 0, None, round_=r) for r in (1, 2))
    assert len({base[0], r1[0], r2[0]}) == 3 and len({base[1], r1[1], r2[1]}) == 3
    assert call_key("fake", "m", msgs, {}, 0, None, round_=1) == call_key("fake", "m", msgs, {}, 0, None, round_=1)
    # an explicit seed= is spread over rounds too; sample 0 of round 0 keeps it
    assert call_key("fake", "m", msgs, {}, 0, 7)[1] == 7 == sample_seed(7, 0, 0)
    assert len({sample_seed(7, 0, r) for r in range(4)}) == 4
    # the relaxed (max_tokens-free) lookup keeps the round, so round 2 cannot reuse round 1's reply through it
    assert relaxed_key("fake", "m", msgs, {}, 0, None, round_=1) != relaxed_key("fake", "m", msgs, {}, 0, None, round_=2)
    assert relaxed_key("fake", "m", msgs, {}, 0, None) == relaxed_key("fake", "m", msgs, {}, 0, None, round_=0)
    # greedy decoding has one reply: a round does not re-ask it
    greedy = {"temperature": 0.0}
    assert call_key("fake", "m", msgs, greedy, 0, None, round_=3) == call_key("fake", "m", msgs, greedy, 0, None)
