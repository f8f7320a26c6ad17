"""docs/language.md documents every built-in function, loader, engine and diagnostic code the code has."""

from __future__ import annotations

import re

from conftest import REPO

from synthlang.check.checker import EXPORT_FORMATS, EXPORT_OPTIONS, SOURCE_LOADERS, SOURCE_OPTIONS
from synthlang.engines import ENGINE_KINDS
from synthlang.expr import FUNCTIONS
from synthlang.syntax import parse

DOC = (REPO / "docs/language.md").read_text(encoding="utf-8")


def test_every_function_loader_engine_and_option_is_documented():
    for name, fn in FUNCTIONS.items():
        assert f"| `{name}(" in DOC, f"function {name} is not in docs/language.md"
        assert fn.doc
    for name in (*SOURCE_LOADERS, *ENGINE_KINDS, *EXPORT_FORMATS, *SOURCE_OPTIONS, *EXPORT_OPTIONS):
        assert f"`{name}`" in DOC, name


def test_every_diagnostic_code_in_the_checker_is_documented():
    src = "".join(p.read_text(encoding="utf-8") for p in (REPO / "synthlang/check").glob("*.py"))
    src += (REPO / "synthlang/expr.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'code="([a-z-]+)"', src)) - {"check"}
    assert len(codes) > 20
    for code in codes:
        assert f"`{code}`" in DOC, f"diagnostic code {code} is not in docs/language.md"


def test_synth_examples_in_the_doc_parse():
    blocks = re.findall(r"```synth\n(.*?)```", DOC, flags=re.S)
    assert len(blocks) >= 15
    for b in blocks:
        if "error:" in b:
            continue
        parse(b, "docs/language.md")
