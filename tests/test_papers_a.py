"""Issue 15, operators A (papersa): score, divergence, prefix continuation, mixture, structured generate, per-row n,
dialogue, and the recipes that need them (scrg, ddk, dataenvgym, mathdial, llama405b, proposition_segmentation).

Funnel tests run the shipped recipe files on the shipped real data through the real checker, runner and DuckDB
store with the fake engine (which answers score / continue requests deterministically); they prove the funnel
shape, never that an engine works. The embedded-engine tests (marked ``slow``) run SmolLM2-135M through
llama.cpp at a small size and assert structure: one module-scoped run per recipe.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import duckdb
import pytest

import synthlang
from synthlang.engines.fake import FakeEngine
from synthlang.errors import Diagnostics, SynthError

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

pytestmark = pytest.mark.timeout(600)


def _copy(name: str, tmp: Path) -> Path:
    shutil.copytree(RECIPES / "data", tmp / "data", dirs_exist_ok=True)
    shutil.copytree(RECIPES / "templates", tmp / "templates", dirs_exist_ok=True)
    shutil.copy(RECIPES / f"{name}.synth", tmp / f"{name}.synth")
    return tmp / f"{name}.synth"


def _run(name: str, tmp: Path, params: dict[str, str], engine_factory=None, **kw):
    path = _copy(name, tmp)
    prog = synthlang.check_file(path, params)
    s = synthlang.run(prog, db=tmp / "db.duckdb", engine_factory=engine_factory, **kw)
    assert s.status == "finished"
    return s, duckdb.connect(str(tmp / "db.duckdb"), read_only=True)


def _fake(_m):
    return FakeEngine()


def _rows(con, step: str, status: str = "ok") -> list[dict]:
    return [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM rows WHERE step = ? AND status = ? ORDER BY row_id", [step, status]).fetchall()]


def _count(con, step: str, status: str = "ok") -> int:
    return con.execute("SELECT count(*) FROM rows WHERE step = ? AND status = ?", [step, status]).fetchone()[0]


def _check_text(tmp: Path, text: str) -> Diagnostics | None:
    (tmp / "r.synth").write_text(text)
    try:
        synthlang.check_file(tmp / "r.synth")
    except Diagnostics as d:
        return d
    return None


GSM_SOURCE = '''
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {
  question: str
  answer: str
}
'''


# ------------------------------------------------------------------ checker
def test_score_on_an_openai_model_is_a_check_time_error_naming_the_engine(tmp_path):
    _copy("scrg", tmp_path)
    d = _check_text(tmp_path, 'recipe r "x"\nmodel api = openai("gpt-4o-mini")\n' + GSM_SOURCE +
                    'step s = score(seeds, model=api, field=answer, context=question)\n')
    assert d is not None
    err = next(e for e in d.errors if e.code == "engine-unsupported")
    assert "engine 'openai'" in str(err) and "gpt-4o-mini" in str(err)
    assert err.span.line == 8


def test_prefix_on_an_openai_model_is_a_check_time_error_at_the_option(tmp_path):
    _copy("scrg", tmp_path)
    d = _check_text(tmp_path, 'recipe r "x"\nmodel api = openai("gpt-4o-mini")\n' + GSM_SOURCE +
                    'step s = generate(seeds, model=api, field=question, prefix=answer)\n')
    assert d is not None
    err = next(e for e in d.errors if e.code == "engine-unsupported")
    assert "prefix continuation" in str(err)
    assert (err.span.line, err.span.col) == (8, 53)


def test_a_bad_schema_is_a_positioned_error(tmp_path):
    _copy("scrg", tmp_path)
    d = _check_text(tmp_path, 'recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE +
                    "step s = generate(seeds, field=question, schema={type: \"object\", properties: {a: {}}})\n")
    assert d is not None
    err = next(e for e in d.errors if e.code == "bad-schema")
    assert "property 'a' needs a \"type\"" in str(err) and err.span.line == 8
    d = _check_text(tmp_path, 'recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE +
                    "step s = generate(seeds, field=question, schema=\"{not json\")\n")
    assert d is not None and any(e.code == "bad-schema" and "not valid JSON" in str(e) for e in d.errors)


def test_schema_properties_become_typed_fields(tmp_path):
    _copy("scrg", tmp_path)
    (tmp_path / "r.synth").write_text('recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE + '''
step plan = generate(seeds, field=question, schema="""{"type": "object", "properties": {"skill": {"type": "string"}, "count": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}""")
step more = generate(plan, prompt="Write about {{ skill }}", n_from=count) -> idea
''')
    prog = synthlang.check_file(tmp_path / "r.synth")
    plan = next(s for s in prog.steps if s.name == "plan")
    assert plan.fields_out["skill"] == "str" and plan.fields_out["count"] == "int" and plan.fields_out["tags"] == "list[str]"
    assert "text" not in plan.fields_out
    s, con = _run_path(tmp_path / "r.synth", tmp_path)
    plans = _rows(con, "plan")
    assert len(plans) == 2 and all(isinstance(p["skill"], str) and isinstance(p["count"], int) for p in plans)
    # per-row n: each plan row makes exactly `count` samples
    assert _count(con, "more") == sum(p["count"] for p in plans)


def _run_path(path: Path, tmp: Path, params: dict[str, str] | None = None):
    prog = synthlang.check_file(path, params or {})
    s = synthlang.run(prog, db=tmp / "db.duckdb", engine_factory=_fake)
    assert s.status == "finished"
    return s, duckdb.connect(str(tmp / "db.duckdb"), read_only=True)


def test_n_from_must_give_a_whole_number(tmp_path):
    _copy("scrg", tmp_path)
    (tmp_path / "r.synth").write_text('recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE +
                                      'step more = generate(seeds, field=question, n_from=len(question) / 7.5)\n')
    prog = synthlang.check_file(tmp_path / "r.synth")
    with pytest.raises(SynthError, match=r"n_from: row 1: n_from must give a whole number from 0 to 1024"):
        synthlang.run(prog, db=tmp_path / "db.duckdb", engine_factory=_fake)


# --------------------------------------------------------------- divergence
def test_divergence_finds_the_first_token_below_the_threshold():
    from synthlang.ops.scoring import DIVERGENCE

    rows = [{"tokens": ["A", " b", " c", " d"], "token_logprobs": [-0.1, -0.5, -3.0, -4.0]},
            {"tokens": ["x"], "token_logprobs": [-0.01]}]
    out = DIVERGENCE.run_apply(rows, {"tokens": "tokens", "logprobs": "token_logprobs", "threshold": math.log(0.1), "skip": 0})
    assert out[0][1]["prefix"] == "A b" and out[0][1]["diverge_index"] == 2 and out[0][1]["diverge_token"] == " c"
    assert out[1][1]["diverged"] is False and out[1][1]["prefix"] is None


# ----------------------------------------------------------------- mixture
def test_mixture_quotas_follow_the_smoothed_weights_and_sum_to_total():
    from synthlang.ops.mixture import distribution, quotas

    p = distribution({"a": 3.0, "b": 1.0}, "proportional", 1.0)
    assert p == {"a": 0.75, "b": 0.25}
    p = distribution({"a": 3.0, "b": 1.0}, "proportional", 0.5)
    assert p == {"a": 0.625, "b": 0.375}
    s = distribution({"a": 1.0, "b": 0.0}, "softmax", 1.0)
    assert s["a"] == pytest.approx(math.e / (math.e + 1))
    assert quotas({"a": 0.75, "b": 0.25}, {"a": 100, "b": 100}, 10) == {"a": 8, "b": 2}
    # a short group's surplus goes to the others
    assert quotas({"a": 0.75, "b": 0.25}, {"a": 3, "b": 100}, 10) == {"a": 3, "b": 7}
    assert quotas({"a": 0.5, "b": 0.5}, {"a": 1, "b": 2}, 10) == {"a": 1, "b": 2}


# --------------------------------------------------------------------- SCRG
def test_scrg_funnel(tmp_path):
    s, con = _run("scrg", tmp_path, {"limit": "4", "max_tokens": "64"}, _fake)
    assert _count(con, "drafted") == 4 and _count(con, "scored") == 4 and _count(con, "found") == 4
    found = _rows(con, "found")
    for r in found:   # the fake scores each whitespace token; the first below ln 0.1 is the error token
        lps = r["token_logprobs"]
        first = next((i for i, x in enumerate(lps) if x < math.log(0.1)), None)
        assert r["diverge_index"] == first and r["n_tokens"] == len(r["tokens"])
        assert r["nll"] == pytest.approx(-sum(lps) / len(lps))
        if first is not None:
            assert r["prefix"] == "".join(r["tokens"][:first])
    fix = sum(1 for r in found if r["diverged"])
    assert _count(con, "to_fix") == fix and _count(con, "corrected") == fix and _count(con, "revised") == fix
    for r in _rows(con, "revised"):   # prefix continuation: each output starts with the prefix it was given
        assert r["corrected_prefix"].startswith(r["prefix"].strip()) or not r["prefix"].strip()
        assert r["revised_reasoning"].startswith(r["corrected_prefix"])
    # the score and continue calls carry their directive in the stored request
    kinds = [json.loads(j) for (j,) in con.execute(
        "SELECT c.json_schema FROM calls c JOIN rows r ON r.call_key = c.call_key WHERE r.step IN ('scored', 'corrected')").fetchall()]
    assert sum("score" in k["x-synthlang"] for k in kinds) == 4 and sum("continue" in k["x-synthlang"] for k in kinds) == fix
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out/scrg_sft.jsonl"), split="train")
    assert ds.column_names == ["messages"] and len(ds) == fix
    assert [m["role"] for m in ds[0]["messages"]] == ["user", "assistant"]


# ------------------------------------------------------- real embedded engine
@pytest.mark.slow
def test_embedded_score_matches_the_logprobs_of_its_own_generation():
    from synthlang.engines.base import Request, SamplingParams, with_directive
    from synthlang.engines.embedded import EmbeddedEngine

    e = EmbeddedEngine()
    try:
        msgs = ({"role": "user", "content": "Name a colour."},)
        g = next(iter(e.generate([Request("g", msgs, SamplingParams(temperature=0.0, max_tokens=8), 1, logprobs=1)])))
        s = next(iter(e.generate([Request("s", msgs, SamplingParams(max_tokens=8), 1, None,
                                          with_directive(None, "score", g.text))])))
        got = json.loads(s.text)
        assert "".join(got["tokens"]) == g.text
        assert len(got["logprobs"]) == len(g.logprobs)
        # teacher forcing in one pass equals the sampler's own logprobs, up to llama.cpp's batched-kernel rounding
        assert got["logprobs"] == pytest.approx(g.logprobs, abs=0.2)
        assert got["logprobs"][0] == pytest.approx(g.logprobs[0], abs=1e-3)
        # prefix continuation: greedy from the first 3 tokens goes on as the greedy reply did
        head = "".join(got["tokens"][:3])
        c = next(iter(e.generate([Request("c", msgs, SamplingParams(temperature=0.0, max_tokens=8), 1, None,
                                          with_directive(None, "continue", head))])))
        assert c.error is None and c.text
        rest = "".join(got["tokens"][3:5])
        assert c.text.startswith(rest), (head, c.text, g.text)
    finally:
        e.close()


@pytest.fixture(scope="module")
def scrg_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scrg_real")
    return _run("scrg", tmp, {"limit": "2", "max_tokens": "32", "on_truncation": "keep"})


@pytest.mark.slow
def test_scrg_runs_on_the_embedded_engine(scrg_real):
    s, con = scrg_real
    assert _count(con, "drafted") == 2 and _count(con, "scored") == 2
    for r in _rows(con, "scored"):
        assert r["n_tokens"] == len(r["tokens"]) == len(r["token_logprobs"]) > 0
        assert all(x <= 0 for x in r["token_logprobs"]) and r["nll"] > 0
        assert "".join(r["tokens"]).strip() == r["student_reasoning"].strip()
    for r in _rows(con, "revised"):
        assert r["revised_reasoning"].startswith(r["corrected_prefix"])


# ---------------------------------------------------------------------- DDK
class _StudentLossesMore(FakeEngine):
    """The fake engine, but the student's loss on GSM8K answers (they hold '####') is twice the teacher's."""

    def generate(self, requests):
        from synthlang.engines.base import score_text, split_directives

        for req, res in zip(list(requests := list(requests)), super().generate(requests), strict=True):
            d = split_directives(req.json_schema)[1]
            if "score" in d and "####" in d["score"]:
                got = json.loads(res.text)
                res.logprobs = [2 * x for x in got["logprobs"]]
                res.text = score_text(got["tokens"], res.logprobs)
            yield res


def _ddk_engines(m):
    return _StudentLossesMore() if m.name == "student" else FakeEngine()


def test_ddk_funnel_quotas_follow_the_smoothed_softmax_of_the_gap(tmp_path):
    path = _copy("ddk", tmp_path)
    # a student that differs from the teacher (here both are the same 135M weights, so their calls would be one)
    text = path.read_text()
    assert "model student = embedded(temperature=0.0)" in text
    path.write_text(text.replace("model student = embedded(temperature=0.0)", "model student = embedded(temperature=0.0, top_p=0.9)"))
    s = synthlang.run(synthlang.check_file(path, {"val": "3", "corpus": "12", "per_round": "10", "rounds": "2"}),
                      db=tmp_path / "db.duckdb", engine_factory=_ddk_engines)
    assert s.status == "finished"
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    assert _count(con, "val_set") == 6 and _count(con, "all_rows") == 24 and _count(con, "teacher_scored") == 6
    gaps = {r["domain"]: r for r in _rows(con, "gaps")}
    assert gaps["gsm8k"]["gap"] == pytest.approx(2.0) and gaps["self_instruct"]["gap"] == pytest.approx(1.0)
    assert gaps["gsm8k"]["n"] == 3
    # softmax over the gap, smoothed toward uniform with alpha 0.5, then largest-remainder quotas of 10
    p_gsm = 0.5 * math.exp(2) / (math.exp(2) + math.exp(1)) + 0.25
    picked = _rows(con, "picked")
    assert len(picked) == 20   # 10 per round, 2 rounds
    by_round = con.execute("SELECT round, json_extract_string(data, '$.domain') d, count(*) FROM rows "
                           "WHERE step = 'picked' GROUP BY ALL ORDER BY ALL").fetchall()
    assert by_round == [(0, "gsm8k", 6), (0, "self_instruct", 4), (1, "gsm8k", 6), (1, "self_instruct", 4)]
    assert {round(r["mixture_weight"], 6) for r in picked} == {round(p_gsm, 6), round(1 - p_gsm, 6)}
    # the draw differs between rounds (the round seeds it), and every picked row is a corpus row
    r0 = {r for (r,) in con.execute("SELECT json_extract_string(data, '$.prompt') FROM rows WHERE step='picked' AND round=0").fetchall()}
    r1 = {r for (r,) in con.execute("SELECT json_extract_string(data, '$.prompt') FROM rows WHERE step='picked' AND round=1").fetchall()}
    assert r0 != r1
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out/ddk_mixture.jsonl"), split="train")
    assert ds.column_names == ["messages"] and len(ds) == 20


def test_mixture_weight_that_is_not_a_number_names_the_row(tmp_path):
    _copy("scrg", tmp_path)
    (tmp_path / "r.synth").write_text('recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE + '''
step w = derive(seeds, domain = "a", weight = "heavy")
step d = derive(seeds, domain = "a")
step mixed = mixture(d, weights=w, by=domain, total=1)
''')
    prog = synthlang.check_file(tmp_path / "r.synth")
    with pytest.raises(SynthError, match=r"mixture weights 'w': row 1, field 'weight': weight must be a number >= 0, got 'heavy'"):
        synthlang.run(prog, db=tmp_path / "db.duckdb", engine_factory=_fake)


@pytest.fixture(scope="module")
def ddk_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddk_real")
    return _run("ddk", tmp, {"val": "1", "corpus": "3", "per_round": "2", "rounds": "2"})


@pytest.mark.slow
def test_ddk_runs_on_the_embedded_engine(ddk_real):
    s, con = ddk_real
    scored = _rows(con, "student_scored")
    assert len(scored) == 4   # 2 validation rows (one per domain) x 2 rounds
    for r in scored:
        assert r["loss_teacher"] > 0 and r["loss_student"] > 0 and r["s_n"] == len(r["s_logprobs"])
    gaps = _rows(con, "gaps")
    assert sorted(g["domain"] for g in gaps) == ["gsm8k", "gsm8k", "self_instruct", "self_instruct"]
    # teacher and student are the same 135M weights here: the gap is 1 and the mixture uniform
    assert all(g["gap"] == pytest.approx(1.0) for g in gaps)
    assert _count(con, "picked") == 4


# --------------------------------------------------------------- DataEnvGym
def test_dataenvgym_funnel_plan_counts_set_the_samples_per_skill(tmp_path):
    s, con = _run("dataenvgym", tmp_path, {"limit": "6", "rounds": "1", "max_per_skill": "3"}, _fake)
    probed = _rows(con, "probed")
    assert len(probed) == 6
    wrong = [r for r in probed if not r["probe_correct"]]
    assert _count(con, "errors") == len(wrong) > 0
    skilled = _rows(con, "skilled")
    assert len(skilled) == len(wrong) and all(isinstance(r["skill"], str) and r["skill"] for r in skilled)
    by_skill = _rows(con, "by_skill")
    assert sorted(r["skill"] for r in by_skill) == sorted({r["skill"] for r in skilled})
    assert sum(r["errors"] for r in by_skill) == len(wrong)
    plans = _rows(con, "plan")
    assert len(plans) == len(by_skill) and all(isinstance(p["count"], int) and 0 <= p["count"] <= 10 for p in plans)
    written = _rows(con, "written")
    assert len(written) == sum(min(p["count"], 3) for p in plans)        # per-row n from the plan
    for skill in {p["skill"] for p in plans}:
        want = min(next(p["count"] for p in plans if p["skill"] == skill), 3)
        assert sum(1 for w in written if w["skill"] == skill) == want
    assert all(isinstance(w["gold"], (int, float)) and w["question"] and w["solution"] for w in written)
    assert _count(con, "trainset") == 0   # the pool before the loop is empty; `improve` names the fed rows
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out/dataenvgym_generated.jsonl"), split="train")
    assert ds.column_names == ["messages"] and len(ds) == len(written)


@pytest.fixture(scope="module")
def dataenvgym_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dataenvgym_real")
    return _run("dataenvgym", tmp, {"limit": "1", "rounds": "1", "max_per_skill": "1", "max_tokens": "48"})


@pytest.mark.slow
def test_dataenvgym_runs_on_the_embedded_engine(dataenvgym_real):
    s, con = dataenvgym_real
    assert _count(con, "probed") == 1
    for r in _rows(con, "skilled"):      # llama.cpp's JSON-schema grammar: a string skill
        assert isinstance(r["skill"], str)
    for p in _rows(con, "plan"):
        assert isinstance(p["count"], int) and isinstance(p["focus"], str)
    plans = _rows(con, "plan")
    assert _count(con, "written") + _count(con, "written", "failed") == sum(min(p["count"], 1) for p in plans)


# ---------------------------------------------------------------- MathDial
def test_dialogue_expands_into_recorded_turns(tmp_path):
    path = _copy("mathdial", tmp_path)
    prog = synthlang.check_file(path, {"max_turns": "2"})
    names = [s.name for s in prog.steps]
    turns = ["talks__s0", "talks__t1", "talks__s1", "talks__t2", "talks__s2"]
    assert all(t in names for t in turns) and names.index("talks") > max(names.index(t) for t in turns)
    by = {s.name: s for s in prog.steps}
    assert [by[t].model.name for t in turns] == ["student", "teacher", "student", "teacher", "student"]
    assert by["talks__s2"].opts["last"] is True and by["talks__t2"].opts["last"] is False
    assert by["talks"].fields_out["messages"] == "json"


def test_dialogue_without_tutor_is_a_positioned_error(tmp_path):
    _copy("scrg", tmp_path)
    d = _check_text(tmp_path, 'recipe r "x"\nmodel m = embedded()\n' + GSM_SOURCE +
                    'step talks = dialogue(seeds, student=m, max_turns=2)\n')
    assert d is not None
    err = next(e for e in d.errors if e.code == "missing-argument")
    assert "dialogue() needs tutor=" in str(err) and err.span.line == 8


def test_mathdial_funnel(tmp_path):
    s, con = _run("mathdial", tmp_path, {"limit": "4", "max_turns": "2"}, _fake)
    talks = _rows(con, "talks")
    assert len(talks) == 4                                   # one row per dialogue
    calls = {st: _count(con, st) for st in ("talks__s0", "talks__t1", "talks__s1", "talks__t2", "talks__s2")}
    assert calls["talks__s0"] == 4
    for t in talks:
        msgs = t["messages"]
        assert t["turns"] == len(msgs) and msgs[0]["role"] == "user"
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2) + ["user"] * (len(msgs) % 2)
        assert t["dialogue_stop"] in ("stop", "max_turns")
        if t["dialogue_stop"] == "max_turns":
            assert len(msgs) == 5                            # opening + 2 x (tutor, student)
        else:                                                # the stop expression was true after the last turn
            gold = t["gold"]
            last = t["last_message"]
            assert (t["last_role"] == "student" and str(gold) in last) or (t["last_role"] == "tutor" and str(gold) in last)
    # a dialogue that stopped makes no more calls: each turn step has at most the rows still going
    stopped_before = lambda k: sum(1 for t in talks if t["dialogue_stop"] == "stop" and t["turns"] <= k)  # noqa: E731
    assert calls["talks__t1"] == 4 - stopped_before(1)
    assert calls["talks__s2"] == 4 - stopped_before(4)
    # lineage: a final dialogue row descends from every one of its turns, each its own call
    (rid,) = con.execute("SELECT row_id FROM rows WHERE step='talks' AND status='ok' ORDER BY row_id LIMIT 1").fetchone()
    seen, frontier = set(), {rid}
    while frontier:
        got = con.execute(f"SELECT parent_id FROM lineage WHERE child_id IN ({','.join('?' * len(frontier))})", list(frontier)).fetchall()
        frontier = {p for (p,) in got} - seen
        seen |= frontier
    turn_rows = con.execute(f"SELECT step, call_key FROM rows WHERE row_id IN ({','.join('?' * len(seen))}) AND operator='dialogue_turn'",
                            list(seen)).fetchall()
    assert turn_rows and all(k for _, k in turn_rows) and {st for st, _ in turn_rows} >= {"talks__s0", "talks__t1"}
    # preference data: 2 tutor moves per opening, judged pairwise
    assert _count(con, "moves") == 8 and _count(con, "both") == 4 and _count(con, "prefs") == 4
    for p in _rows(con, "prefs"):
        assert {p["chosen"], p["rejected"]} == {p["move_a"], p["move_b"]}
        assert p["chosen"] == (p["move_a"] if p["winner"] == "A" else p["move_b"])
    import datasets

    sft = datasets.load_dataset("json", data_files=str(tmp_path / "out/mathdial_sft.jsonl"), split="train")
    assert sft.column_names == ["messages"] and len(sft) == _count(con, "tutoring")
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "out/mathdial_dpo.jsonl"), split="train")
    assert sorted(dpo.column_names) == ["chosen", "prompt", "rejected"] and len(dpo) == 4
    assert dpo[0]["prompt"].startswith("Problem: ") and "\nStudent: " in dpo[0]["prompt"]


@pytest.fixture(scope="module")
def mathdial_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mathdial_real")
    return _run("mathdial", tmp, {"limit": "1", "max_turns": "1", "max_tokens": "40"})


@pytest.mark.slow
def test_mathdial_runs_on_the_embedded_engine(mathdial_real):
    s, con = mathdial_real
    talks = _rows(con, "talks")
    assert len(talks) + _count(con, "talks__s0", "failed") == 1
    for t in talks:
        assert t["messages"] and all(m["content"].strip() for m in t["messages"])
        assert not any(m["content"].lower().startswith(("teacher:", "student:")) for m in t["messages"])
        assert t["dialogue_stop"] in ("stop", "max_turns")
    assert _count(con, "moves") <= 2


# --------------------------------------------------------------- Llama-405B
GSM8 = [json.loads(x) for x in (RECIPES / "data/gsm8k/train_first1000.jsonl").read_text().splitlines()[:8]]


def _l405_rule(model: str, prompt: str, schema) -> str:
    from synthlang.expr import final_number

    for r in GSM8:
        if r["question"] in prompt:   # right on every question but Weng's
            g = final_number(r["answer"])
            return f"Step 1 ... The answer is {g + (1 if 'Weng' in r['question'] else 0)}."
    if "customer wrote" in prompt:    # intents: right on messages that mention a card
        return "The customer asks about a card arriving.\nThe answer is " + ("card_arrival." if "card" in prompt.split('"')[1] else "age_limit.")
    return "The answer is 0."


def test_llama405b_funnel_and_formats(tmp_path):
    from test_method_recipes import Scripted

    eng = Scripted(_l405_rule)
    s, con = _run("llama405b", tmp_path, {"limit": "4", "samples": "2", "max_tokens": "64"}, eng.for_model)
    assert _count(con, "chains") == 8 and _count(con, "math_kept") == 6        # Weng's two chains are wrong
    intents = _rows(con, "intent_checked")
    assert len(intents) == 4
    assert _count(con, "intent_kept") == sum(1 for r in intents if r["category"] == "card_arrival" and "card" in r["text"])
    import datasets

    chat = datasets.load_dataset("json", data_files=str(tmp_path / "out/llama405b_math_chat.jsonl"), split="train")
    views = datasets.load_dataset("json", data_files=str(tmp_path / "out/llama405b_math_views.jsonl"), split="train")
    alpaca = datasets.load_dataset("json", data_files=str(tmp_path / "out/llama405b_math_alpaca.jsonl"), split="train")
    assert chat.column_names == ["messages"] and len(chat) == 6
    assert sorted(views.column_names) == ["messages", "view"] and len(views) == 12
    direct = [v for v in views if v["view"] == "direct"]
    assert all(v["messages"][-1]["content"].startswith("The answer is ") for v in direct)
    assert sorted(alpaca.column_names) == ["input", "instruction", "output"] and len(alpaca) == 6


@pytest.fixture(scope="module")
def llama405b_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llama405b_real")
    labels = json.loads((RECIPES / "data/banking77/categories.json").read_text())[:10]
    return _run("llama405b", tmp, {"limit": "1", "samples": "2", "max_tokens": "48", "on_truncation": "keep",
                                   "intent_list": ", ".join(labels)})


@pytest.mark.slow
def test_llama405b_runs_on_the_embedded_engine(llama405b_real):
    s, con = llama405b_real
    assert _count(con, "chains") + _count(con, "chains", "failed") == 2
    assert _count(con, "chains_checked") == _count(con, "chains")
    assert _count(con, "intent_chains") + _count(con, "intent_chains", "failed") == 1
    for r in _rows(con, "math_sft"):
        assert r["verified"] is True and r["direct"].startswith("The answer is ")


# ------------------------------------------------------- proposition segmentation
def _props_rule(model: str, prompt: str, schema) -> str:
    passage = prompt.split("Passage: ", 1)[1].split("\n\nReply with JSON", 1)[0]
    sentences = [s.strip() + "." for s in passage.replace("?", ".").split(".") if s.strip()]
    return json.dumps({"propositions": sentences + ["Too short."]})


def test_proposition_segmentation_funnel(tmp_path):
    from test_method_recipes import Scripted

    eng = Scripted(_props_rule)
    s, con = _run("proposition_segmentation", tmp_path, {"limit": "3"}, eng.for_model)
    passages = _rows(con, "passages")
    assert len(passages) == 6 and {p["domain"] for p in passages} == {"gsm8k", "self_instruct"}
    long_enough = _rows(con, "long_enough")
    assert len(long_enough) == sum(1 for p in passages if len(p["passage"].split()) >= 8)
    segmented = _rows(con, "segmented")
    assert len(segmented) == len(long_enough) and all(isinstance(r["propositions"], list) for r in segmented)
    exploded = _rows(con, "one_each")
    assert len(exploded) == sum(len(r["propositions"]) for r in segmented)
    well = _rows(con, "well_formed")
    assert len(well) == len(exploded) - len(segmented)                     # each "Too short." is dropped
    assert all(len(w["proposition"].split()) >= 3 for w in well)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out/proposition_segmentation_sft.jsonl"), split="train")
    assert ds.column_names == ["messages"] and len(ds) == len(segmented)
    assert ds[0]["messages"][1]["content"].count("\n") == len(segmented[0]["propositions"]) - 1


@pytest.fixture(scope="module")
def propseg_real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("propseg_real")
    return _run("proposition_segmentation", tmp, {"limit": "1", "max_tokens": "48"})


@pytest.mark.slow
def test_proposition_segmentation_runs_on_the_embedded_engine(propseg_real):
    s, con = propseg_real
    n = _count(con, "long_enough")
    assert _count(con, "segmented") + _count(con, "segmented", "failed") == n
    for r in _rows(con, "segmented"):       # llama.cpp's grammar: a list of strings
        assert isinstance(r["propositions"], list) and all(isinstance(p, str) for p in r["propositions"])
    assert _count(con, "one_each") == sum(len(r["propositions"]) for r in _rows(con, "segmented"))
