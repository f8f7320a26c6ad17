"""The golden corpus: every invalid recipe's diagnostics and every valid recipe's plan match the files beside them.

Regenerate after an intended change with ``python tests/golden/regen.py`` and review ``git diff tests/golden``.
"""

from __future__ import annotations

import pytest
from golden import regen

INVALID = regen.invalid_cases()
VALID = regen.valid_cases()


def test_corpus_is_large_enough():
    assert len(INVALID) >= 40 and len(VALID) >= 15


@pytest.mark.parametrize("name", INVALID)
def test_invalid_recipe_diagnostics(name):
    want_json, want_text = regen.expected_invalid(name)
    with regen.in_golden_dir():
        got_json, got_text = regen.diagnose(f"invalid/{name}")
    assert got_json, "an invalid recipe must produce diagnostics"
    assert got_json == want_json
    assert got_text == want_text
    assert "Traceback" not in got_text


@pytest.mark.parametrize("name", VALID)
def test_valid_recipe_plan(name):
    with regen.in_golden_dir():
        got = regen.plan_json(f"valid/{name}")
    assert got == regen.expected_plan(name)
