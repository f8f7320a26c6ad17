"""The TextMate grammar is valid JSON, its regexes compile, and it scopes the quickstart's keywords and strings."""

from __future__ import annotations

import json
import re

from conftest import RECIPES, REPO

GRAMMAR = REPO / "editors/vscode/syntaxes/synth.tmLanguage.json"


def _patterns(node):
    if isinstance(node, dict):
        for k in ("match", "begin", "end"):
            if k in node:
                yield node[k]
        for v in node.values():
            yield from _patterns(v)
    elif isinstance(node, list):
        for v in node:
            yield from _patterns(v)


def test_grammar_is_valid_and_regexes_compile():
    g = json.loads(GRAMMAR.read_text(encoding="utf-8"))
    assert g["scopeName"] == "source.synth"
    pkg = json.loads((REPO / "editors/vscode/package.json").read_text(encoding="utf-8"))
    assert pkg["contributes"]["languages"][0]["extensions"] == [".synth"]
    pats = list(_patterns(g))
    assert len(pats) > 15
    for p in pats:
        re.compile(p)  # Oniguruma syntax used here is a subset Python's re accepts


def test_grammar_keywords_match_the_real_grammar():
    g = json.loads(GRAMMAR.read_text(encoding="utf-8"))
    text = json.dumps(g)
    lark = (REPO / "synthlang/syntax/grammar.lark").read_text(encoding="utf-8")
    keywords = re.findall(r"^_?(?:KW_|REPLACE)\w*\.2: /(\w+)\\b/", lark, flags=re.M)
    assert len(keywords) >= 20
    for kw in keywords:
        assert kw in text, f"keyword {kw} is not highlighted"
    decl = g["repository"]["declaration"]["patterns"][0]["match"]
    line = (RECIPES / "quickstart.synth").read_text(encoding="utf-8").splitlines()[7]
    assert re.match(decl, line).group(1) == "source"
