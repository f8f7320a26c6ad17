"""Canonical formatting of ``.synth`` text (``synth fmt``).

The formatter prints the AST back in one canonical layout and re-inserts every
comment the lexer saw:

* one declaration per line (no wrapping), two-space indentation inside
  ``source { }`` and ``loop { }`` bodies, spaces around ``=`` and binary
  operators, none inside calls (``f(a, b=1)``);
* at most one blank line between declarations, kept where the input had one;
* comments before a declaration stay before it; a comment at the end of a
  declaration's last line stays there (two spaces before ``#``); comments
  *inside* a multi-line declaration join that end-of-line comment (moving
  them above would turn them into, or cut off, a ``##`` doc comment);
* parentheses only where precedence needs them;
* strings with newlines print as ``\"\"\"`` strings when that gives the same
  value, otherwise as escaped one-line strings.

Guarantees (tested with hypothesis): ``parse(format(x)) == parse(x)`` (AST
equality ignores spans) and ``format(format(x)) == format(x)``.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from synthlang import ast
from synthlang.syntax.parser import parse_with_comments

INDENT = "  "

# Binding strength of each binary operator (higher binds tighter); see grammar.lark.
_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_NOT, _NEG, _POSTFIX = 3, 7, 8


def _escape(s: str) -> str:
    """A one-line ``"..."`` body for ``s``, using only the language's escapes (parser.unescape)."""
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\u{{{code:x}}}")
        else:
            out.append(ch)
    return "".join(out)


def _raw_ok(s: str) -> bool:
    """Whether ``s`` can be written as a raw triple-quoted string (no escapes exist there)."""
    return ('"""' not in s and not s.endswith(("\"", "\\")) and not s.startswith("\n")
            and all(ch.isprintable() or ch in "\n\t" for ch in s))


def quote(s: str) -> str:
    """A string literal whose parsed value is ``s``: ``\"\"\"`` form for dedented multi-line text.

    Short values with one newline (``stop=["\\n"]``) stay on one line with the escape. Triple-quoted
    strings are raw (backslashes literal), so text they cannot hold goes on one line, escaped.
    """
    multi_line = s.count("\n") >= 2 or ("\n" in s and len(s) > 60)
    if multi_line and textwrap.dedent(s) == s and _raw_ok(s):
        return '"""\n' + s + '"""'
    return '"' + _escape(s) + '"'


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # the grammar's NAME
_KEYWORDS = {"recipe", "param", "model", "source", "template", "step", "export", "to", "as", "budget", "use", "loop",
             "feed", "from", "or", "and", "not", "in", "if", "else", "true", "false", "null", "replace"}


def _is_keyword(k: str) -> bool:
    return k in _KEYWORDS


def expr(e: ast.Expr, parent: int = 0) -> str:
    """An expression in canonical form; ``parent`` is the binding strength required by the context."""
    if isinstance(e, ast.Literal):
        v = e.value
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, str):
            return quote(v)
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return "1e999"  # what the user wrote was too large for a float; keep its value
            text = repr(v)
            return text if ("." in text or "e" in text) else text + ".0"
        return str(v)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attr):
        return f"{expr(e.obj, _POSTFIX)}.{e.name}"
    if isinstance(e, ast.Index):
        return f"{expr(e.obj, _POSTFIX)}[{expr(e.key)}]"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr(i) for i in e.items) + "]"
    if isinstance(e, ast.ObjectExpr):
        return "{" + ", ".join(f"{k if _NAME_RE.fullmatch(k) and not _is_keyword(k) else quote(k)}: {expr(v)}"
                               for k, v in e.items) + "}"
    if isinstance(e, ast.Cond):  # lowest binding: `a if c else b`; the test is an or-expression
        text = f"{expr(e.then, 1)} if {expr(e.test, 1)} else {expr(e.orelse, 0)}"
        return f"({text})" if parent > 0 else text
    if isinstance(e, ast.Call):
        return f"{e.func}({args(e.args)})"
    if isinstance(e, ast.Unary):
        if e.op == "not":
            text, prec = f"not {expr(e.operand, _NOT)}", _NOT
        else:
            text, prec = f"-{expr(e.operand, _NEG)}", _NEG
        return f"({text})" if prec < parent else text
    if isinstance(e, ast.Binary):
        prec = _PREC[e.op]
        if prec == 4:  # comparisons do not chain: both sides must bind tighter
            text = f"{expr(e.left, 5)} {e.op} {expr(e.right, 5)}"
        else:  # left-associative
            text = f"{expr(e.left, prec)} {e.op} {expr(e.right, prec + 1)}"
        return f"({text})" if prec < parent else text
    raise TypeError(f"not an expression: {e!r}")  # pragma: no cover - the parser builds only the above


def args(a: tuple[ast.Arg, ...]) -> str:
    return ", ".join(expr(x.value) if x.name is None else f"{x.name}={expr(x.value)}" for x in a)


def _type(t: ast.TypeRef) -> str:
    return f"{t.name}[{_type(t.arg)}]" if t.arg is not None else t.name


def _output(o: ast.Output) -> str:
    return ("replace " if o.replace else "") + o.name + (f": {_type(o.type)}" if o.type is not None else "")


# Steps whose free keyword arguments are new fields, with their fixed options (ops/relational.py).
_FIELD_STEPS = {"derive": (), "group": ("by",)}


def _head(d: Any) -> str:
    """The one-line text of a declaration without a body."""
    if isinstance(d, ast.Header):
        return f"recipe {d.name}" + (f" {quote(d.description)}" if d.description is not None else "")
    if isinstance(d, ast.Param):
        return f"param {d.name}: {_type(d.type)}" + (f" = {expr(d.default)}" if d.default is not None else "")
    if isinstance(d, ast.Model):
        return f"model {d.name} = {expr(d.engine)}"
    if isinstance(d, ast.Source):
        return f"source {d.name} = {expr(d.loader)}"
    if isinstance(d, ast.Template):
        body = f"file({quote(d.file)})" if d.file is not None else quote(d.text or "")
        return f"template {d.name} = {body}"
    if isinstance(d, ast.Step):
        outs = (" -> " + ", ".join(_output(o) for o in d.outputs)) if d.outputs else ""
        if d.op.func in _FIELD_STEPS:  # derive/group: a new field reads like one in a source, `name = expr`
            fixed = _FIELD_STEPS[d.op.func]
            body = ", ".join(expr(x.value) if x.name is None else f"{x.name}={expr(x.value)}" if x.name in fixed
                             else f"{x.name} = {expr(x.value)}" for x in d.op.args)
            return f"step {d.name} = {d.op.func}({body}){outs}"
        return f"step {d.name} = {expr(d.op)}{outs}"
    if isinstance(d, ast.Export):
        opts = f" ({args(d.options)})" if d.options else ""
        return f"export {expr(d.step)} to {quote(d.path)} as {d.format}{opts}"
    if isinstance(d, ast.Budget):
        return "budget " + ", ".join(f"{a.name}={expr(a.value)}" for a in d.args)
    if isinstance(d, ast.Use):
        return f"use {quote(d.path)} as {d.alias}" + (f" ({args(d.args)})" if d.args else "")
    if isinstance(d, ast.Feed):
        return f"feed {d.pool} from {d.step}"
    if isinstance(d, ast.Loop):
        return f"loop {d.name}({args(d.args)})"
    if isinstance(d, ast.FieldDecl):
        return f"{d.name}: {_type(d.type)}"
    if isinstance(d, ast.DerivedField):
        return f"{d.name} = {expr(d.expr)}"
    raise TypeError(f"cannot format {type(d).__name__}")  # pragma: no cover


class _Printer:
    def __init__(self, comments: list[tuple[int, int, str]]) -> None:
        self.comments = comments
        self.pos = 0  # comments before this index are printed
        self.lines: list[str] = []

    def _take_before(self, line: int) -> list[tuple[int, int, str]]:
        out = []
        while self.pos < len(self.comments) and self.comments[self.pos][0] < line:
            out.append(self.comments[self.pos])
            self.pos += 1
        return out

    def _take_on(self, line: int) -> str | None:
        if self.pos < len(self.comments) and self.comments[self.pos][0] == line:
            self.pos += 1
            return self.comments[self.pos - 1][2].rstrip()
        return None

    def block(self, items: list[Any], end_line: int | None, indent: str) -> None:
        """Print items (each with a span) and the comments between them; stop before ``end_line``."""
        last: int | None = None
        for d in items:
            for c in self._take_before(d.span.line):
                self._blank_if_gap(last, c[0])
                self.lines.append(indent + c[2].rstrip())
                last = c[0]
            self._blank_if_gap(last, d.span.line)
            body = self._body(d)
            head = _head(d)
            if body is None:
                # comments inside a multi-line declaration join the comment at the end of its last line
                # (moved above it they could become, or break, a `##` doc comment)
                inner = [c[2].rstrip() for c in self._take_before(d.span.end_line)]
                trailing = self._take_on(d.span.end_line)
                self._emit(indent, head, " ".join(inner + ([trailing] if trailing else [])) or None)
            else:
                self._emit(indent, head + " {", self._take_on(d.span.line))
                self.block(body, d.span.end_line, indent + INDENT)
                self._emit(indent, "}", self._take_on(d.span.end_line))
            last = d.span.end_line
        if end_line is not None:
            for c in self._take_before(end_line):
                self._blank_if_gap(last, c[0])
                self.lines.append(indent + c[2].rstrip())
                last = c[0]

    def _emit(self, indent: str, text: str, trailing: str | None) -> None:
        lines = (indent + text).split("\n")
        if trailing:
            lines[-1] += "  " + trailing
        self.lines.extend(lines)

    def _blank_if_gap(self, last: int | None, line: int) -> None:
        if last is not None and line > last + 1 and self.lines and self.lines[-1] != "":
            self.lines.append("")

    @staticmethod
    def _body(d: Any) -> list[Any] | None:
        if isinstance(d, ast.Source) and d.fields:
            return list(d.fields)
        if isinstance(d, ast.Loop):
            return list(d.body)
        return None


def format_text(text: str, path: str = "<string>") -> str:
    """Format recipe text canonically, keeping every comment.

    Raises:
        SynthSyntaxError: when ``text`` does not parse (nothing is formatted).
    """
    recipe, comments = parse_with_comments(text, path)
    items: list[Any] = ([recipe.header] if recipe.header is not None else []) + list(recipe.decls)
    p = _Printer(comments)
    p.block(items, None, "")
    rest = p._take_before(10**9)
    if rest:
        if p.lines:
            p.lines.append("")
        p.lines.extend(c[2].rstrip() for c in rest)
    out = "\n".join(p.lines).strip("\n")
    return out + "\n" if out else ""
