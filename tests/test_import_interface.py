"""The import interface: params and models set at the `use` site and with dotted --param / --model,
errors that name the imported file; runs on the fake engine with real GSM8K rows."""

from __future__ import annotations

import pytest
from conftest import write

import synthlang
from synthlang.errors import ConfigError, Diagnostics

pytestmark = pytest.mark.timeout(120)

LIB = """
param limit: int = 3
param max_tokens: int = 64
model teacher = openai("gpt-4o-mini", temperature=0.8, max_tokens=max_tokens, base_url="http://127.0.0.1:9/v1")
source seeds = jsonl("../data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
}
step reph = rephrase(seeds, model=teacher) -> rq
"""


def _lib(project):
    write(project / "lib/rt.synth", LIB)


def _check(project, text, params=None, models=None):
    return synthlang.check_file(write(project / "main.synth", text), params, models)


def test_use_site_sets_params_and_models_and_keeps_sampling(project, fake_factory):
    _lib(project)
    prog = _check(project, 'param n: int = 2\nuse "lib/rt.synth" as rt (limit=n, max_tokens=40, teacher=fake())\n'
                           "export rt.reph to \"out/r.jsonl\"\n")
    m = prog.models["rt.teacher"]
    assert m.kind == "fake" and m.sampling.temperature == 0.8 and m.sampling.max_tokens == 40
    summary = synthlang.run(prog, db=project / "db.duckdb", engine_factory=fake_factory)
    by = {s.name: s for s in summary.steps}
    assert by["rt.seeds"].rows_out == 2 and by["rt.reph"].calls_made == 2


def test_use_site_can_share_the_importers_model(project):
    _lib(project)
    prog = _check(project, 'model mine = fake(temperature=0.1)\nuse "lib/rt.synth" as rt (teacher=mine)\n'
                           "step a = answer(rt.reph, model=mine, field=rq)\n")
    assert prog.models["rt.teacher"].kind == "fake" and prog.models["rt.teacher"].sampling.temperature == 0.1


def test_dotted_param_and_model_flags_reach_the_import(project):
    _lib(project)
    text = 'use "lib/rt.synth" as rt\nexport rt.reph to "out/r.jsonl"\n'
    prog = _check(project, text, params={"rt.limit": "1", "rt.max_tokens": "80"}, models=["rt.teacher=fake(top_p=0.5)"])
    m = prog.models["rt.teacher"]
    assert (m.kind, m.sampling.temperature, m.sampling.top_p, m.sampling.max_tokens) == ("fake", 0.8, 0.5, 80)
    plan = synthlang.plan(prog)
    assert {s["name"]: s["rows"] for s in plan["sources"]}["rt.seeds"] == 1
    # the flag wins over the use site
    prog = _check(project, text.replace("as rt", "as rt (limit=2)"), params={"rt.limit": "1"})
    assert synthlang.plan(prog)["sources"][0]["rows"] == 1


def test_bad_settings_name_the_imported_file(project):
    _lib(project)
    with pytest.raises(Diagnostics) as ei:
        _check(project, 'use "lib/rt.synth" as rt (limt=2, max_tokens="many")\n')
    errs = {e.code: e for e in ei.value.errors}
    assert errs["unknown-name"].span.line == 1 and "lib/rt.synth" in errs["unknown-name"].message
    assert errs["unknown-name"].hint == "did you mean 'limit'?"
    assert errs["type-mismatch"].span.line == 1
    with pytest.raises(ConfigError, match=r"--param rt.limt: the imported recipe .*lib/rt.synth has no param 'limt'; did you mean 'limit'"):
        _check(project, 'use "lib/rt.synth" as rt\n', params={"rt.limt": "1"})
    with pytest.raises(ConfigError, match="imports nothing as 'xx'"):
        _check(project, 'use "lib/rt.synth" as rt\n', params={"xx.limit": "1"})
    with pytest.raises(ConfigError, match="imports nothing as 'xx'"):
        _check(project, 'use "lib/rt.synth" as rt\n', models=["xx.teacher=fake()"])
