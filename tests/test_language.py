"""Language features beyond the golden corpus: doc comments, syntax wording, imports, --param errors, structured fields."""

from __future__ import annotations

import pytest
from conftest import write

from synthlang import ast
from synthlang.api import check_file
from synthlang.errors import Diagnostics, SynthSyntaxError
from synthlang.syntax import parse


def test_doc_comments_attach_to_the_next_declaration():
    r = parse("## top\nrecipe x\n## the limit\n## in rows\nparam n: int = 3\n# plain\nmodel m = fake()\n"
              "loop l(rounds=2) {\n  ## inner\n  step a = f(x)\n  feed p from a\n}\n## before export\nexport a to \"o\"\n## dangling\n")
    p, m, loop, exp = r.decls
    assert p.doc == "the limit\nin rows" and m.doc is None
    assert isinstance(loop, ast.Loop) and loop.body[0].doc == "inner"
    assert isinstance(exp, ast.Export)
    # docs are part of the AST: changing one changes equality, moving a plain comment does not
    assert parse("## a\nparam n: int = 3") != parse("## b\nparam n: int = 3")
    assert parse("# a\nparam n: int = 3") == parse("param n: int = 3  # b")


def test_header_must_come_first():
    with pytest.raises(SynthSyntaxError, match="'recipe' must be the first declaration") as ei:
        parse("param n: int = 1\nrecipe late", "h.synth")
    assert (ei.value.span.line, ei.value.span.col) == (2, 1)


@pytest.mark.parametrize("text, hint", [
    ("param n: int = )", "expected an expression"),
    ("step a = f(x,, y)", "expected ')' or an expression"),
    ("x", "a declaration (param, model, source, template, step, loop, export, budget, use)"),
    ('template t = "open', 'close it with "'),
])
def test_expected_sets_read_as_words(text, hint):
    with pytest.raises(SynthSyntaxError) as ei:
        parse(text)
    assert hint in ei.value.hint
    assert "NAME" not in ei.value.hint and "LPAR" not in ei.value.hint


def test_param_type_error_is_positioned_and_structured(tmp_path):
    p = write(tmp_path / "p.synth", "param limit: int = 3\nparam on: bool = true\n")
    with pytest.raises(Diagnostics) as ei:
        check_file(p, {"limit": "ten", "on": "maybe"})
    errs = [e.as_dict() for e in ei.value.errors]
    assert [(e["code"], e["line"], e["data"]["value"]) for e in errs] == [("param-type", 1, "ten"), ("param-type", 2, "maybe")]
    assert check_file(p, {"limit": "7", "on": "no"}).params == {"limit": 7, "on": False}


def test_all_errors_are_collected_and_sorted(tmp_path):
    p = write(tmp_path / "m.synth", 'step b = answr(a)\nmodel m = vlm()\nsource s = jsonl("nope.jsonl") { q: strr }\n')
    with pytest.raises(Diagnostics) as ei:
        check_file(p)
    pos = [(e.span.line, e.span.col) for e in ei.value.errors]
    assert pos == sorted(pos)
    assert {e.code for e in ei.value.errors} >= {"unknown-operator", "unknown-engine", "missing-file", "unknown-type"}
    op = next(e for e in ei.value.errors if e.code == "unknown-operator")
    assert op.data["name"] == "answr" and "answer" in op.data["valid"] and op.hint == "did you mean 'answer'?"


def test_import_paths_resolve_relative_to_the_imported_file(tmp_path):
    write(tmp_path / "a/b/lib.synth", 'template t = file("t.j2")\nmodel m = fake()\n')
    write(tmp_path / "a/b/t.j2", "Q: {{ question }}")
    write(tmp_path / "a/data.jsonl", '{"question": "q"}\n')
    p = write(tmp_path / "a/main.synth", 'use "b/lib.synth" as lib\nsource s = jsonl("data.jsonl") { question: str }\n'
              "step g = generate(s, model=lib.m, prompt=lib.t)\n")
    prog = check_file(p)
    assert prog.steps[0].opts["prompt"] == "Q: {{ question }}" and prog.steps[0].model.name == "lib.m"
    # the imported template's variables are checked against the importing step's fields
    write(tmp_path / "a/b/t.j2", "Q: {{ questoin }}")
    with pytest.raises(Diagnostics) as ei:
        check_file(p)
    assert ei.value.errors[0].code == "template-variable" and ei.value.errors[0].data["name"] == "questoin"


def test_deep_chain_of_steps_checks_without_recursion_limit(tmp_path):
    write(tmp_path / "d.jsonl", '{"q": "x"}\n')
    lines = ['model m = fake()', 'source s = jsonl("d.jsonl") { q: str }', "step s0 = verify(s, field=q, gold=q) -> v0, w0"]
    lines += [f"step s{i} = verify(s{i - 1}, field=q, gold=q) -> v{i}, w{i}" for i in range(1, 2500)]
    prog = check_file(write(tmp_path / "deep.synth", "\n".join(lines)))
    assert len(prog.steps) == 2500 and prog.steps[-1].name == "s2499"


def test_double_hash_comments_parse_anywhere_and_only_own_line_ones_are_docs():
    r = parse('source s = jsonl("x") {\n  a: str  ## trailing\n  b = a ## also trailing\n}\n'
              "step t = f(s,  ## inside a call\n  n=1)  ## after\nstep u = f(t)\n")
    s, t, u = r.decls
    assert s.doc is None and t.doc is None and u.doc is None  # none of these stands alone on its line
    assert parse("step a = f(x)\n\n## after a blank line\n\nstep b = f(a)").decls[1].doc is None

