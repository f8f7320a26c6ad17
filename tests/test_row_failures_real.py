"""Per-row failures on the real embedded engine: a prompt longer than the context and a reply cut at
max_tokens are stored as failed rows with their reason (and raw text), counted per step in the
summary, listed by SQL, and ``--retry-failed`` re-issues exactly their calls.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from conftest import REPO, synth, write

pytestmark = pytest.mark.slow

RECIPE = """
recipe rf "row failures on the real model"
model m = embedded(temperature=0.0, max_tokens={max_tokens}, n_ctx=256)
source seeds = jsonl("data/rf.jsonl") {{
  question: str
}}
step g = generate(seeds, model=m, prompt="Answer in one word: {{{{ question }}}}")
"""


def test_context_overflow_and_truncation_fail_rows_not_the_run(tmp_path):
    shutil.copytree(REPO / "recipes" / "data", tmp_path / "data")
    first = json.loads((tmp_path / "data" / "gsm8k" / "train_first1000.jsonl").read_text(encoding="utf-8").splitlines()[0])
    long_q = " ".join([first["question"]] * 20)            # ~1400 tokens: longer than n_ctx=256
    write(tmp_path / "data" / "rf.jsonl", "\n".join(json.dumps({"question": q}) for q in
                                                    [long_q, "What colour is the sky?", "Name a fruit."]) + "\n")
    write(tmp_path / "rf.synth", RECIPE.format(max_tokens=2))
    r = synth("run", "rf.synth", "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "row failed" in r.stdout or "rows failed" in r.stdout
    db = tmp_path / ".synth" / "synth.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    fails = {json.loads(d)["question"][:20]: (e, raw) for e, raw, d in
             con.execute("select error, raw, data from failures where step='g'").fetchall()}
    failed_steps = con.execute("select step, rows_failed from steps where step='g'").fetchall()
    con.close()
    e, _ = fails[long_q[:20]]
    assert e.startswith("call failed: prompt is") and "longer than the context of 256 tokens" in e
    # max_tokens=2 cuts every other answer: failed with finish_reason=length and the raw text kept
    truncated = [v for k, v in fails.items() if k != long_q[:20]]
    assert truncated
    for err, raw in truncated:
        assert err == "completion truncated at max_tokens (finish_reason=length)" and raw
    assert failed_steps == [("g", len(fails))]
    # --retry-failed re-issues the calls of exactly those rows (the overflow is never cached anyway)
    r2 = synth("run", "rf.synth", "--quiet", "--retry-failed", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert f"calls: {len(fails)} made" in r2.stdout
    # a plain re-run issues only the call that errored (errors are not cached)
    r3 = synth("run", "rf.synth", "--quiet", cwd=tmp_path)
    assert "calls: 1 made" in r3.stdout, r3.stdout
