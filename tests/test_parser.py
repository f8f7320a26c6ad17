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


# ------------------------------------------------------------------------------------------------
# The reduce callbacks build AST nodes directly (no Lark tree). Oracle: Lark's own parse tree with
# propagate_positions=True, turned into nodes by the same builders with the tree's positions (as the
# parser did before); the two must agree on every node and span (spans are compare=False in the
# dataclasses, so they are compared here) and on every error.

_ORACLE: list = []


def _oracle(text: str, path: str):
    import lark
    from lark.exceptions import UnexpectedInput

    from synthlang.syntax import parser as P

    if not _ORACLE:
        _ORACLE.append(lark.Lark(P._GRAMMAR.read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                                 propagate_positions=True, maybe_placeholders=True))
    try:
        tree = _ORACLE[0].parse(text)
    except UnexpectedInput as exc:
        raise P._syntax_error(exc, path, text) from None
    build = P._Build()
    build.path = path

    def conv(t):
        if not isinstance(t, lark.Tree):
            return t
        kids = [conv(c) for c in t.children]
        m = t.meta
        span = P.Span(path, 0, 0, 0, 0) if m.empty else P.Span(path, m.line, m.column, m.end_line, m.end_column)
        try:
            return getattr(build, t.data)(span, kids)
        except ValueError:
            raise SynthSyntaxError("bad escape sequence in a string", span, code="bad-escape") from None

    return conv(tree)


def _with_spans(x):
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__,) + tuple((f.name, _with_spans(getattr(x, f.name))) for f in dataclasses.fields(x))
    if isinstance(x, (tuple, list)):
        return tuple(_with_spans(i) for i in x)
    return (type(x).__name__, x)


def _outcome(fn, text):
    try:
        return ("ok", _with_spans(fn(text)))
    except SynthSyntaxError as e:
        return ("error", e.message, e.span, e.code, e.data.get("expected"))


def _same(text: str) -> bool:
    from synthlang.syntax.parser import parse_with_comments

    ours = _outcome(lambda t: parse_with_comments(t, "d.synth")[0], text)
    ref = _outcome(lambda t: _oracle(t, "d.synth"), text)
    if ours[0] == "ok" and ref[0] == "ok":   # docs (## comments) are attached after building: drop them
        return _with_spans(_strip_docs(parse_with_comments(text, "d.synth")[0])) == ref[1]
    return ours == ref


def _strip_docs(recipe):
    import dataclasses

    def strip(d):
        if isinstance(d, ast.Loop):
            d = dataclasses.replace(d, body=tuple(strip(x) for x in d.body))
        return dataclasses.replace(d, doc=None) if "doc" in getattr(d, "__dataclass_fields__", {}) else d

    return dataclasses.replace(recipe, decls=tuple(strip(d) for d in recipe.decls))


def _corpus() -> list[str]:
    from conftest import REPO

    files = sorted({*REPO.glob("recipes/**/*.synth"), *REPO.glob("tests/golden/**/*.synth"), *REPO.glob("docs/**/*.synth")})
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def test_ast_and_spans_match_lark_parse_tree_on_every_shipped_recipe():
    corpus = _corpus()
    assert len(corpus) > 50
    bad = [t[:80] for t in corpus if not _same(t)]
    assert not bad, bad


def test_ast_and_spans_match_lark_parse_tree_on_mutated_recipes():
    """Random edits of the shipped recipes (fixed seed): both agree on nodes, spans and builder errors."""
    import random

    rng = random.Random(9)
    corpus = [t for t in _corpus() if len(t) < 6000]
    alphabet = list('()[]{},.:=-+*/%<>!"#\\ \n\tabxyz019_') + ["step ", "if ", "else ", "not ", "->", '"""', "replace ",
                                                             "recipe r\n", "{a: 1, a: 2}", "\\q", "9" * 5000]
    checked = 0
    for _ in range(300):
        t = rng.choice(corpus)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(0, len(t) + 1)
            t = t[:i] + rng.choice(alphabet) + t[i + rng.randint(0, 4):]
        assert _same(t), t
        checked += 1
    assert checked == 300


def test_deep_nesting_is_a_positioned_error_not_a_traceback():
    from synthlang.syntax.parser import MAX_NESTING

    ok = "param p: int = " + "-" * (MAX_NESTING - 10) + "1\n"
    assert isinstance(parse(ok).decls[0], ast.Param)
    for deep in ("-" * (MAX_NESTING + 5) + "1", "f(" * MAX_NESTING + ")" * MAX_NESTING, "[" * 5000 + "]" * 5000):
        with pytest.raises(SynthSyntaxError) as ei:
            parse("recipe r\nparam p: int = " + deep + "\n", "deep.synth")
        assert "nests too deeply" in ei.value.message and ei.value.span.path == "deep.synth"
    # parentheses add no node: 50,000 of them stay a valid recipe
    assert parse("param p: int = " + "(" * 50000 + "1" + ")" * 50000 + "\n").decls[0].default.value == 1


def test_a_later_syntax_error_wins_over_an_earlier_builder_error():
    """Builder errors (duplicate object key) are raised after the parse, so a syntax error below them is reported."""
    with pytest.raises(SynthSyntaxError) as ei:
        parse('param p: json = {a: 1, a: 2}\nstep s = f(x,, y)\n', "o.synth")
    assert ei.value.span.line == 2 and "unexpected" in ei.value.message
    with pytest.raises(SynthSyntaxError) as ei:
        parse('param p: json = {a: 1, a: 2}\n', "o.synth")
    assert "appears twice" in ei.value.message and ei.value.span.line == 1


def test_parses_from_threads_at_once_stay_apart():
    from concurrent.futures import ThreadPoolExecutor

    texts = [f'recipe r{i}\nparam p{i}: int = {i} + {i}\n' for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda t: parse(t, t.split()[1] + ".synth"), texts * 4))
    for r, t in zip(out, texts * 4, strict=True):
        assert r.header.name == t.split()[1] and r.path == t.split()[1] + ".synth"
        assert r.decls[0].name == "p" + t.split()[1][1:]


def test_the_installed_lark_gives_the_fast_path_its_tables():
    """The parser reads Lark's per-state lexers and LALR table; a Lark release that moved them would silently
    fall back to Lark's own (3x slower) loop: bench/check_bench.py's target depends on this."""
    from synthlang.syntax.parser import _reducer

    red = _reducer("start")
    assert red.lexers is not None and set(red.lexers) == set(red.states)
    assert red.parse('recipe r\nparam p: int = 1\n')[0].decls[0].name == "p"


def test_parse_expr_gives_builder_errors_as_positioned_errors():
    """`--param` values go through parse_expr: an integer Python refuses to convert (over 4,300 digits) was a
    raw VisitError traceback there; it is now the same positioned error a recipe gets."""
    from synthlang.syntax import parse_expr

    with pytest.raises(SynthSyntaxError) as ei:
        parse_expr("1 + " + "9" * 5000, "--param n")
    assert ei.value.span.path == "--param n" and ei.value.span.col == 5
    with pytest.raises(SynthSyntaxError) as ei:
        parse_expr("{a: 1, a: 2}", "--param o")
    assert "appears twice" in ei.value.message
