"""Engine declarations: option names checked per engine, `--model` overrides, the engine registry (no model runs)."""

from __future__ import annotations

import pytest
from conftest import REPO, write

from synthlang.api import check_file
from synthlang.engines import ENGINE_KINDS, ENGINE_OPTIONS, create_engine
from synthlang.errors import ConfigError, Diagnostics, SynthSyntaxError
from synthlang.syntax import parse_model_decl

RECIPE = """
recipe r
model teacher = {decl}
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {{
  question: str
  answer: str
}}
step rephrased = rephrase(seeds, model=teacher) -> rephrased_question
"""


def recipe(project, decl: str):
    return write(project / "r.synth", RECIPE.format(decl=decl))


def test_every_engine_has_an_option_table():
    assert set(ENGINE_OPTIONS) == set(ENGINE_KINDS)
    assert {"tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype", "max_num_seqs"} <= set(ENGINE_OPTIONS["vllm"])
    assert {"base_url", "api_key_env", "concurrency", "rpm", "tpm", "batch"} <= set(ENGINE_OPTIONS["openai"])


@pytest.mark.parametrize("decl", [
    'openai("gpt-4o-mini", base_url="http://127.0.0.1:1/v1", concurrency=8, rpm=60, tpm=10000, price_input=0.15, '
    'price_output=0.6, timeout=30, max_retries=3, structured="auto", reask=1, batch=false, api_key_env="K", adaptive=true)',
    'vllm("m", tensor_parallel_size=2, gpu_memory_utilization=0.8, max_model_len=4096, dtype="bfloat16", max_num_seqs=64)',
    'embedded(n_ctx=1024, threads=2, backend="llama_cpp")',
])
def test_valid_options_pass_the_checker_and_land_in_the_model_spec(project, decl):
    prog = check_file(recipe(project, decl))
    m = prog.models["teacher"]
    assert m.options and all(k in ENGINE_OPTIONS[m.kind] for k in m.options)


def test_unknown_option_is_reported_with_did_you_mean_at_its_position(project):
    with pytest.raises(Diagnostics) as ei:
        check_file(recipe(project, 'vllm("m", tensor_paralel_size=2, gpu_mem=0.5)'))
    errs = ei.value.errors
    assert [e.data["name"] for e in errs] == ["tensor_paralel_size", "gpu_mem"]
    assert errs[0].code == "unknown-option" and errs[0].hint == "did you mean 'tensor_parallel_size'?"
    assert errs[0].span.line == 3 and errs[0].span.col == 27


def test_option_type_is_checked(project):
    with pytest.raises(Diagnostics) as ei:
        check_file(recipe(project, 'openai("m", concurrency="many")'))
    assert ei.value.errors[0].code == "bad-option" and "must be int" in ei.value.errors[0].message


def test_model_flag_replaces_the_declaration(project):
    path = recipe(project, 'openai("gpt-4o-mini", api_key_env="X")')
    prog = check_file(path, None, ['teacher=embedded(n_ctx=512, max_tokens=9)'])
    m = prog.models["teacher"]
    assert (m.kind, m.options, m.sampling.max_tokens) == ("embedded", {"n_ctx": 512}, 9)
    with pytest.raises(ConfigError, match="did you mean 'teacher'"):
        check_file(path, None, ["teachr=embedded()"])
    with pytest.raises(SynthSyntaxError):
        parse_model_decl("teacher embedded()")
    with pytest.raises(Diagnostics) as ei:
        check_file(path, None, ["teacher=embedded(thread=2)"])
    (e,) = ei.value.errors
    assert e.message == "engine 'embedded' has no option 'thread'" and e.span.path == "--model"
    assert e.hint == "did you mean 'threads'?"


def test_plan_shows_the_engine_each_model_resolved_to(project):
    import subprocess
    import sys

    recipe(project, 'openai("gpt-4o-mini")')
    r = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "plan", "r.synth", "--model",
                        'teacher=vllm("Qwen/Qwen2.5-0.5B-Instruct")'], cwd=project, capture_output=True, text=True,
                       timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "teacher = vllm('Qwen/Qwen2.5-0.5B-Instruct')" in r.stdout


def test_registry_builds_each_engine_without_loading_it():
    assert create_engine("openai", "m", {"base_url": "http://127.0.0.1:1/v1"}).kind == "openai"
    assert create_engine("vllm", "m", {"max_model_len": 128}).kind == "vllm"   # vllm is imported only in load()
    assert create_engine("fake", "", {}).kind == "fake"
    with pytest.raises(ConfigError, match="unknown engine"):
        create_engine("tgi", "m", {})
