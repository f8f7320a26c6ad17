"""Parser tests: valid recipes become AST nodes with spans; invalid ones give one positioned error."""

from __future__ import annotations

import pytest
from conftest import RECIPES

from synthlang import ast
from synthlang.errors import SynthSyntaxError
from synthlang.syntax import parse, parse_file


def test_quickstart_parses_with_spans():
    r = parse_file(RECIPES / "quickstart.synth")
    assert r.header is not None and r.header.name == "quickstart"
    kinds = [type(d).__name__ for d in r.decls]
    assert kinds == ["Param", "Model", "Source", "Step", "Step", "Step", "Export"]
    src = r.decls[2]
    assert isinstance(src, ast.Source)
    assert [f.name for f in src.fields] == ["question", "answer", "gold"]
    gold = src.fields[2]
    assert isinstance(gold, ast.DerivedField)
    assert isinstance(gold.expr, ast.Call) and gold.expr.func == "final_number"
    # spans point at the source text
    assert src.span.line == 8 and src.span.col == 1
    assert gold.span.line == 11 and gold.span.col == 3


def test_keywords_work_as_option_names():
    r = parse('step a = answer(seeds, model=teacher, template=x, source=1, to=2, step=3)')
    step = r.decls[0]
    assert isinstance(step, ast.Step)
    assert [a.name for a in step.op.args] == [None, "model", "template", "source", "to", "step"]


def test_outputs_replace_and_types():
    r = parse("step a = f(x) -> replace question, score: int")
    outs = r.decls[0].outputs
    assert outs[0].name == "question" and outs[0].replace
    assert outs[1].name == "score" and str(outs[1].type) == "int" and not outs[1].replace


def test_multiline_template_is_dedented():
    r = parse('template t = """\n    Question: {{ question }}\n    Answer:\n"""')
    assert r.decls[0].text == "Question: {{ question }}\nAnswer:\n"


def test_expression_precedence():
    r = parse("source s = jsonl(\"x\") { a: int  b = a + 2 * 3 > 7 and not a == 1 }")
    e = r.decls[0].fields[1].expr
    assert isinstance(e, ast.Binary) and e.op == "and"
    assert e.left.op == ">" and e.left.left.op == "+" and e.left.left.right.op == "*"
    assert isinstance(e.right, ast.Unary) and e.right.op == "not"


@pytest.mark.parametrize(
    "text, line, col, expected",
    [
        ("model t = ", 1, 11, "a name"),
        ("step a = f(x,, y)", 1, 14, "')'"),
        ("recipe r\nparam n: int = )", 2, 16, "a number"),
        ("source s = jsonl(\"x\") {\n  q str\n}", 2, 5, "':'"),
        ("step a = f(x) ->", 1, 17, "a name"),
        ("model m = embedded(temperature=0.7", 1, 35, "')'"),
        ("x = 1", 1, 1, "'step'"),
        ("step a = f(x) @", 1, 15, None),
    ],
)
def test_syntax_errors_have_positions(text, line, col, expected):
    with pytest.raises(SynthSyntaxError) as ei:
        parse(text, "bad.synth")
    err = ei.value
    assert (err.span.path, err.span.line, err.span.col) == ("bad.synth", line, col)
    if expected:
        assert expected in err.data["expected"]
    rendered = err.render()
    assert rendered.startswith(f"bad.synth:{line}:{col}: error:")
    assert "^" in rendered
    assert "Token" not in rendered and "lark" not in rendered.lower()


def test_unterminated_string_is_a_syntax_error():
    with pytest.raises(SynthSyntaxError) as ei:
        parse('template t = "never closed\nstep a = f(x)', "u.synth")
    assert ei.value.span.line == 1


def test_binary_and_non_utf8_files(tmp_path):
    p = tmp_path / "junk.synth"
    p.write_bytes(b"recipe x\n\xff\xfe\x00junk")
    with pytest.raises(SynthSyntaxError) as ei:
        parse_file(p)
    assert ei.value.span.line == 2 and "UTF-8" in ei.value.message


def test_empty_file_parses_to_empty_recipe():
    assert parse("").decls == ()
