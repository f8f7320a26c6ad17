"""Conditional expressions, list/object literals and SQL null semantics (docs/language.md, "Null")."""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import write

import synthlang
from synthlang.errors import Diagnostics, SynthSyntaxError
from synthlang.expr import evaluate
from synthlang.syntax import parse, parse_expr
from synthlang.syntax.format import expr as fmt_expr
from synthlang.syntax.format import format_text

pytestmark = pytest.mark.timeout(60)


def ev(text, **row):
    return evaluate(parse_expr(text), row)


@pytest.mark.parametrize("text, want", [
    # comparisons and arithmetic with null are null
    ("x == 1", None), ("x != 1", None), ("x < 1", None), ("x + 1", None), ("-x", None), ("x in [1, 2]", None),
    ("1 in x", None), ("(x == \"yes\") == false", None),
    # Kleene and/or/not
    ("x and false", False), ("false and x", False), ("x and true", None), ("x or true", True), ("true or x", True),
    ("x or false", None), ("not x", None), ("not (x == 1)", None),
    # conditional: a null test takes the else branch (CASE WHEN)
    ("1 if x else 2", 2), ("1 if x == 1 else 2", 2), ("1 if true else 2", 1),
    # functions: null in, null out, except the null-aware ones
    ("lower(x)", None), ("int(x)", None), ("coalesce(x, 3)", 3), ("is_null(x)", True), ("str(x)", ""),
    ("len(x)", 0), ("min(x, 4, 2)", 2), ("max(x)", None),
])
def test_three_valued_logic(text, want):
    assert ev(text, x=None) == want


def test_conditionals_nest_and_literals_build_sft_messages():
    row = {"question": "2+2?", "reasoning": "4", "answer": True, "n": 3}
    assert ev('"yes" if answer else "no"', **row) == "yes"
    assert ev('"small" if n < 2 else "mid" if n < 5 else "big"', **row) == "mid"
    assert ev('[{role: "user", content: question}, {role: "assistant", content: reasoning}]', **row) == [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert ev('{"a key": 1, b: [n, n * 2]}["a key"]', **row) == 1


@pytest.mark.parametrize("text", [
    '"yes" if answer else "no"', "a if b else c if d else e", "(a if b else c) + 1", "[a if b else c, {k: 1}]",
    '{role: "user", "two words": x, "from": y}', "f(x=a if b else c)", "not (a if b else c)",
])
def test_format_round_trips_new_expressions(text):
    e = parse_expr(text)
    assert parse_expr(fmt_expr(e)) == e
    assert fmt_expr(parse_expr(fmt_expr(e))) == fmt_expr(e)


def test_python_style_mistakes_get_hints():
    with pytest.raises(SynthSyntaxError) as ei:
        parse("source s = jsonl(\"x\") {\n  a: bool\n  g = if a then \"yes\" else \"no\"\n}\n", "r.synth")
    assert (ei.value.span.line, ei.value.span.col) == (3, 12) and "a if condition else b" in ei.value.hint
    with pytest.raises(SynthSyntaxError) as ei:
        parse("source s = jsonl(\"x\") {\n  a: bool\n  g = a ? 1 : 2\n}\n", "r.synth")
    assert (ei.value.span.line, ei.value.span.col) == (3, 9) and "a if c else b" in ei.value.hint
    with pytest.raises(SynthSyntaxError) as ei:
        parse_expr("{a: 1, a: 2}")
    assert "twice" in str(ei.value)


def test_comparing_with_the_null_literal_is_an_error(project):
    text = 'source s = jsonl("data/gsm8k/train_first1000.jsonl") {\n  question: str\n  bad = question == null\n}\n'
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(write(project / "r.synth", text))
    (e,) = ei.value.errors
    assert e.code == "null-comparison" and e.span.line == 3 and "is_null" in e.hint


def test_conditional_branches_of_different_types_are_an_error(project):
    text = 'source s = jsonl("data/gsm8k/train_first1000.jsonl") {\n  question: str\n  v = 1 if true else "x"\n}\n'
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(write(project / "r.synth", text))
    assert [e.code for e in ei.value.errors] == ["type-mismatch"]


def test_filter_drops_rows_whose_predicate_is_null(project, fake_factory):
    """The exact case of issue 10: a null final_answer must not keep a row when answer is false."""
    rows = [
        {"q": "a", "final_answer": "yes", "answer": True},    # true == true -> kept
        {"q": "b", "final_answer": "no", "answer": False},    # false == false -> kept
        {"q": "c", "final_answer": None, "answer": False},    # null == false -> null -> dropped
        {"q": "d", "final_answer": None, "answer": True},     # null == true -> null -> dropped
        {"q": "e", "final_answer": "yes", "answer": False},   # true == false -> dropped
    ]
    write(project / "yn.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    text = """
source s = jsonl("yn.jsonl") {
  q: str
  final_answer: str
  answer: bool
  gold = "yes" if answer else "no"
}
step kept = filter(s, where=(final_answer == "yes") == answer)
step agree = derive(s, same = (final_answer == "yes") == answer)
"""
    prog = synthlang.check_file(write(project / "r.synth", text))
    synthlang.run(prog, db=project / "db.duckdb", engine_factory=fake_factory)
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    kept = sorted(json.loads(d)["q"] for (d,) in con.execute("SELECT data FROM rows WHERE step = 'kept'").fetchall())
    assert kept == ["a", "b"]
    same = {json.loads(d)["q"]: json.loads(d)["same"] for (d,) in con.execute("SELECT data FROM rows WHERE step = 'agree'").fetchall()}
    assert same == {"a": True, "b": True, "c": None, "d": None, "e": False}
    gold = {json.loads(d)["q"]: json.loads(d)["gold"] for (d,) in con.execute("SELECT data FROM rows WHERE step = 's'").fetchall()}
    assert gold == {"a": "yes", "b": "no", "c": "no", "d": "yes", "e": "no"}


def test_fmt_keeps_conditionals_and_objects_in_a_recipe():
    text = 'source s = jsonl("x") {\n  a: bool\n  g = "yes"  if a else "no"\n  m = [{role:"user", content:g}]\n}\n'
    out = format_text(text)
    assert 'g = "yes" if a else "no"' in out and 'm = [{role: "user", content: g}]' in out
    assert format_text(out) == out
