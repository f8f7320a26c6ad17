"""`--model NAME=...` keeps the recipe's sampling; `synth plan` shows the effective sampling per step;
`synth check --format json` gives structured diagnostics."""

from __future__ import annotations

import json

import pytest
from conftest import synth, write

import synthlang

pytestmark = pytest.mark.timeout(120)

RECIPE = """
param mt: int = 96
model teacher = openai("gpt-4o-mini", temperature=0.8, max_tokens=mt, base_url="http://127.0.0.1:9/v1")
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {
  question: str
  answer: str
}
step a = answer(seeds, model=teacher, field=question)
step b = rephrase(seeds, model=teacher, temperature=0.2) -> rq
"""


def test_model_override_keeps_the_recipes_sampling_unless_it_sets_its_own(project):
    path = write(project / "r.synth", RECIPE)
    m = synthlang.check_file(path, models=["teacher=fake()"]).models["teacher"]
    assert m.kind == "fake" and m.sampling.temperature == 0.8 and m.sampling.max_tokens == 96
    m = synthlang.check_file(path, models=["teacher=fake(temperature=0.0)"]).models["teacher"]
    assert m.sampling.temperature == 0.0 and m.sampling.max_tokens == 96


def test_plan_shows_effective_sampling_per_step_in_text_and_json(project):
    write(project / "r.synth", RECIPE)
    out = synth("plan", "r.synth", "--model", "teacher=fake()", "--format", "json", cwd=project)
    assert out.returncode == 0, out.stderr
    steps = {s["name"]: s for s in json.loads(out.stdout)["steps"]}
    assert steps["a"]["sampling"]["temperature"] == 0.8 and steps["a"]["sampling"]["max_tokens"] == 96
    assert steps["b"]["sampling"]["temperature"] == 0.2
    text = synth("plan", "r.synth", "--model", "teacher=fake()", cwd=project, env={"COLUMNS": "300"})
    assert "T=0.8" in text.stdout and "max=96" in text.stdout and "T=0.2" in text.stdout


def test_check_format_json_lists_structured_diagnostics(project):
    write(project / "bad.synth", RECIPE.replace("field=question)", "field=questoin)"))
    write(project / "good.synth", RECIPE)
    out = synth("check", "--format", "json", "bad.synth", "good.synth", cwd=project)
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    bad, good = doc["recipes"]
    assert good == {"path": "good.synth", "ok": True, "diagnostics": [], "train_commands": []}
    (d,) = bad["diagnostics"]
    assert (d["code"], d["line"], d["col"]) == ("unknown-field", 8, 45) and d["hint"] == "did you mean 'question'?"
