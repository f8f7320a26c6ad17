"""``synth fmt``: parse(fmt(x)) == parse(x), fmt is idempotent, and every comment survives."""

from __future__ import annotations

import re

from conftest import RECIPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthlang.cli.main import main as synth_main
from synthlang.syntax import parse
from synthlang.syntax.format import format_text

KEYWORDS = {"recipe", "param", "model", "source", "template", "step", "export", "to", "as", "budget", "use",
            "loop", "feed", "from", "or", "and", "not", "in", "true", "false", "null", "replace", "if", "else"}
names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
ws = st.sampled_from([" ", "  ", "\n  ", " \t"])
comment = st.from_regex(r"##?[ a-z#]{0,10}", fullmatch=True)
text_chars = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


def str_lit(s: str) -> str:
    # only the language's escapes: \" \\ \n \t \uXXXX \u{X..X} (docs/language.md, "String escapes")
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + "".join(c if c.isprintable() or c in "\\" else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                         else f"\\u{{{ord(c):x}}}" for c in out) + '"'


@st.composite
def exprs(draw, depth=0):
    if depth > 2 or draw(st.booleans()):
        return draw(st.one_of(
            names, st.integers(0, 10**6).map(str), st.floats(0, 1e6, allow_nan=False).map(lambda f: repr(float(f))),
            text_chars.map(str_lit), st.sampled_from(["true", "false", "null"]),
        ))
    kind = draw(st.integers(0, 9))
    if kind == 7:
        return draw(chains())
    if kind == 8:  # conditionals: `a if c else b`, nested to the right, or parenthesized inside another expression
        c = draw(exprs(depth + 1))
        return f"({draw(exprs(depth + 1))}) if ({c}) else {draw(exprs(depth + 1))}"
    if kind == 9:  # object literals: name or string keys (distinct)
        keys = draw(st.lists(st.one_of(names, text_chars.map(str_lit)), min_size=0, max_size=3, unique=True))
        return "{" + ", ".join(f"{k}: {draw(exprs(depth + 1))}" for k in keys) + "}"
    a = draw(exprs(depth + 1))
    b = draw(exprs(depth + 1))
    if kind == 0:  # operands parenthesized when compound: `a == b + c == d` is not valid syntax
        a, b = (x if re.fullmatch(r'[\w."]+', x) else f"({x})" for x in (a, b))
        return f"{a} {draw(st.sampled_from(['or', 'and', '+', '-', '*', '/', '%']))} {b}"
    if kind == 1:
        return f"({a}) {draw(st.sampled_from(['==', '!=', '<', '>=', 'in']))} ({b})"
    if kind == 2:
        return f"not ({a})"
    if kind == 3:
        return f"-({a})"
    if kind == 4:
        return f"{draw(names)}({a}, {draw(names)}={b})"
    if kind == 5:
        return f"[{a},{b}]"
    return f"({a})[{b}].{draw(names)}"


@st.composite
def chains(draw):
    """Unparenthesized chains of one precedence level, where the formatter must keep associativity."""
    ops = draw(st.sampled_from([["or"], ["and"], ["+", "-"], ["*", "/", "%"]]))
    parts = draw(st.lists(names, min_size=2, max_size=5))
    out = parts[0]
    for p in parts[1:]:
        out += f" {draw(st.sampled_from(ops))} {p}"
    return out


@st.composite
def decls(draw):
    kind = draw(st.integers(0, 9))
    n = draw(names)
    e = draw(exprs())
    if kind == 0:
        return f"param {n}: {draw(st.sampled_from(['int', 'str', 'list[int]']))} = {e}"
    if kind == 1:
        return f"model {n} = {draw(names)}({e}, temperature={e})"
    if kind == 2:
        body = "".join(f"{draw(ws)}{draw(names)}: str{draw(st.sampled_from([',', '']))}" for _ in range(draw(st.integers(0, 2))))
        derived = f" {draw(names)} = {e} {draw(comment)}\n" if draw(st.booleans()) else ""
        return f"source {n} = jsonl(\"x.jsonl\", limit={e}) {{{body}\n{derived}}}"
    if kind == 3:
        t = draw(text_chars)
        return f'template {n} = """\n{t.replace(chr(92), "").replace(chr(34), "")}\nend\n"""'
    if kind == 4:
        inner = draw(st.sampled_from(["", " " + draw(comment) + "\n"]))
        return f"step {n} = {draw(names)}({draw(names)},{inner}{draw(ws)}opt={e}) -> replace {draw(names)}, {draw(names)}: int"
    if kind == 5:
        return f'export {n} to "out/x" as hf (shards={e})'
    if kind == 6:
        return f"budget calls={e}, usd=1.5"
    if kind == 7:
        setting = draw(st.sampled_from(["", f" ({draw(names)}={e})"]))
        return f'use "lib/{n}.synth" as {draw(names)}{setting}'
    if kind == 8:
        return f"## doc for {n}\nstep {n} = f({draw(names)})"
    inner = f"step {draw(names)} = g({n}, n={e})"
    head = draw(st.sampled_from(["", " " + draw(comment)]))
    return f"loop {n}(rounds=3, until={e}) {{{head}\n {draw(comment)}\n {inner}\n feed pool from {n}\n}}"


@st.composite
def recipes(draw):
    parts = []
    if draw(st.booleans()):
        parts.append(f'recipe {draw(names)} "{draw(st.sampled_from(["", "a description"]))}"')
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            parts.append(draw(comment))
        d = draw(decls())
        if draw(st.booleans()):
            d += "  " + draw(comment)
        parts.append(d)
    return draw(st.sampled_from(["\n", "\n\n", "\n\n\n"])).join(parts)


def comments_of(text: str) -> list[str]:
    return [m.group(0).rstrip() for m in re.finditer(r"#[^\n]*", text)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_fmt_round_trip_and_idempotent(text):
    once = format_text(text, "h.synth")
    assert parse(once, "h.synth") == parse(text, "h.synth")
    assert format_text(once, "h.synth") == once
    # every comment is kept (comments never contain quotes here, so the regex sees only comments);
    # comments inside a multi-line declaration may be joined into one end-of-line comment
    if '"' not in text:
        joined = "\n".join(comments_of(once))
        for c in comments_of(text):
            assert c in joined


def test_fmt_quickstart_is_stable_and_keeps_comments():
    text = (RECIPES / "quickstart.synth").read_text(encoding="utf-8")
    once = format_text(text)
    assert parse(once) == parse(text)
    assert format_text(once) == once
    assert "gold = final_number(answer)  # the number after '####', thousands separators removed" in once
    assert once.count("#") >= text.count("# ")


def test_fmt_layout_and_parens():
    text = 'step   a=f( x ,n= (1+2)*3 , c = not (a or b) , d = (a+b)+c, e = a-(b-c))->replace  q,s:int'
    assert format_text(text) == "step a = f(x, n=(1 + 2) * 3, c=not (a or b), d=a + b + c, e=a - (b - c)) -> replace q, s: int\n"


def test_fmt_formats_loops_and_feeds():
    text = "loop grow(rounds=3,until=n>5){\n## doc\nstep s=answer(pool)   # c\n\n\nfeed pool  from s\n}"
    assert format_text(text) == ("loop grow(rounds=3, until=n > 5) {\n  ## doc\n  step s = answer(pool)  # c\n\n"
                                 "  feed pool from s\n}\n")


def test_fmt_cli_check_and_write(tmp_path, capsys):
    p = tmp_path / "r.synth"
    p.write_text("param  n:int=3\n", encoding="utf-8")
    assert synth_main(["fmt", "--check", str(p)]) == 1
    assert synth_main(["fmt", "-w", str(p)]) == 0
    assert p.read_text(encoding="utf-8") == "param n: int = 3\n"
    assert synth_main(["fmt", "--check", str(p)]) == 0
    bad = tmp_path / "bad.synth"
    bad.write_text("step = \n", encoding="utf-8")
    assert synth_main(["fmt", str(bad)]) == 1
    assert "bad.synth:1:6: error" in capsys.readouterr().err


def test_shipped_recipes_are_formatted():
    """`synth fmt --check` passes on every recipe we ship (the README uses it as an example)."""
    for path in sorted(RECIPES.glob("*.synth")):
        text = path.read_text(encoding="utf-8")
        assert format_text(text, str(path)) == text, f"{path.name} is not fmt-clean: run synth fmt -w {path}"


def test_one_newline_strings_stay_escaped():
    out = format_text('model m = embedded(stop=["\\n"])\n')
    assert out == 'model m = embedded(stop=["\\n"])\n'
    assert parse(out).decls == parse('model m = embedded(stop=["\\n"])').decls
