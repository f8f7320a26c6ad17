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
