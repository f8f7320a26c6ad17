"""The Lark LALR parser and its transformer into AST nodes.

Lark is hidden behind this module: its exceptions become
:class:`~synthlang.errors.SynthSyntaxError` with a position and the expected
tokens in words (``a name``, ``'='``), never a Lark traceback.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from synthlang import ast
from synthlang.errors import Span, SynthSyntaxError, remember_source

_GRAMMAR = Path(__file__).with_name("grammar.lark")

_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "$END": "the end of the file",
    "LPAR": "'('",
    "LSQB": "'['",
    "MINUS": "'-'",
}


# Comment tokens seen by the lexer during the current parse (``synth fmt`` keeps them).
_COMMENT_SINK: list[Token] = []


def _collect(tok: Token) -> Token:
    _COMMENT_SINK.append(tok)
    return tok


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _collect},
    )


@lru_cache(maxsize=1)
def _expr_parser() -> Lark:
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        start="expr",
    )


def _words(terminals: set[str] | frozenset[str]) -> list[str]:
    defs = {t.name: t for t in _parser().terminals}
    out: set[str] = set()
    for name in terminals:
        if name in _WORDS:
            out.add(_WORDS[name])
            continue
        if name.startswith(("_KW_", "KW_")) or name == "REPLACE":
            out.add("'" + name.split("KW_")[-1].lower() + "'")
            continue
        tdef = defs.get(name)
        if tdef is not None and tdef.pattern.type == "str":
            out.add(f"'{tdef.pattern.value}'")
        else:
            out.add(name.lower())
    return sorted(out)


# Words for the tokens that can start an expression / a declaration; when most of a
# group is expected, the hint names the group instead of listing token soup.
_EXPR_START = {"a name", "a number", "a string", "'('", "'['", "'{'", "'-'", "'not'", "'true'", "'false'", "'null'"}
_DECL_START = {"'param'", "'model'", "'source'", "'template'", "'step'", "'export'", "'budget'", "'use'", "'loop'"}


def _collapse(expected: list[str]) -> list[str]:
    out = list(expected)
    if len(_EXPR_START & set(out)) >= 6:
        out = [w for w in out if w not in _EXPR_START] + ["an expression"]
    if len(_DECL_START & set(out)) >= 6:
        out = [w for w in out if w not in _DECL_START and w not in ("'recipe'", "'feed'")]
        out.append("a declaration (param, model, source, template, step, loop, export, budget, use)")
    return out


def _expected_text(expected: list[str]) -> str:
    expected = _collapse(expected)
    if not expected:
        return ""
    if len(expected) == 1:
        return expected[0]
    if len(expected) > 8:
        return ", ".join(expected[:8]) + ", ..."
    return ", ".join(expected[:-1]) + " or " + expected[-1]


def _syntax_error(exc: UnexpectedInput, path: str, text: str) -> SynthSyntaxError:
    line = getattr(exc, "line", None) or 1
    col = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        expected = _words({str(t) for t in (exc.expected if isinstance(exc, UnexpectedEOF) else exc.accepts or exc.expected)})
        msg = "unexpected end of file"
    elif isinstance(exc, UnexpectedToken):
        expected = _words(exc.accepts or exc.expected)
        tok = exc.token
        found = repr(str(tok)) if str(tok) else tok.type
        msg = f"unexpected {found}"
        line, col = tok.line or line, tok.column or col
        if tok.type in ("_KW_IF", "_KW_ELSE") or str(tok) == "then":
            span = Span(path, line, col, line, col + len(str(tok)))
            return SynthSyntaxError(msg, span, code="syntax", expected=expected,
                                    hint="a conditional is written as in Python: `a if condition else b`")
    elif isinstance(exc, UnexpectedCharacters):
        expected = _words(exc.allowed or set())
        pos = exc.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        msg = f"unexpected character {ch!r}"
        if ch == "?":
            span = Span(path, line, col, line, col + 1)
            return SynthSyntaxError(msg, span, code="syntax", expected=[],
                                    hint="there is no `c ? a : b`; a conditional is written as in Python: `a if c else b`")
        if ch == '"':
            span = Span(path, line, col, line, col + 1)
            return SynthSyntaxError("unterminated string", span, code="syntax", expected=[],
                                    hint='close it with " on the same line, or use """...""" for text over several lines')
        if len(_collapse(expected)) > 6:  # the lexer's whole alphabet: not a useful list
            span = Span(path, line, col, line, col + 1)
            return SynthSyntaxError(msg, span, hint="this character is not part of the .synth language here; "
                                    "text goes in double quotes and comments start with '#'", expected=expected)
    else:  # pragma: no cover - lark has no other kinds today
        expected, msg = [], str(exc)
    hint = f"expected {_expected_text(expected)}" if expected else None
    span = Span(path, line, col, line, col + 1)
    return SynthSyntaxError(msg, span, hint=hint, expected=expected)


def _span(meta: Any, path: str) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 0, 0, 0, 0)
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token, path: str) -> Span:
    return Span(path, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
ESCAPE_HINT = ('a backslash in a "..." string starts an escape: \\" \\\\ \\n \\t \\uXXXX or \\u{X..X}; write a '
               'backslash as \\\\, or put the text in a triple-quoted string """...""", where backslashes are literal '
               '(LaTeX such as \\frac{a}{b} and \\boxed{x} needs no doubling there)')


def unescape(body: str, tok: Token | None = None, path: str = "<string>") -> str:
    """Decode the escapes of a one-line ``"..."`` string body (docs/language.md, "String escapes").

    Escapes are ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\uXXXX`` (4 hex digits) and ``\\u{X..X}``
    (1 to 6 hex digits, any code point but a surrogate); Python's others (``\\f``, ``\\b``, ``\\x``,
    ``\\N{...}``, octal) are not escapes here, so ``\\frac`` cannot turn into a form feed silently.

    Raises:
        SynthSyntaxError: at the backslash of an unknown or malformed escape (code ``bad-escape``).
    """
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _ESCAPES and nxt:
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if nxt == "u":
            if body[i + 2:i + 3] == "{":
                end = body.find("}", i + 3)
                digits = body[i + 3:end] if end > 0 else ""
                if end > 0 and 1 <= len(digits) <= 6 and set(digits) <= _HEX and int(digits, 16) <= 0x10FFFF \
                        and not 0xD800 <= int(digits, 16) <= 0xDFFF:
                    out.append(chr(int(digits, 16)))
                    i = end + 1
                    continue
            else:
                digits = body[i + 2:i + 6]
                if len(digits) == 4 and set(digits) <= _HEX and not 0xD800 <= int(digits, 16) <= 0xDFFF:
                    out.append(chr(int(digits, 16)))
                    i += 6
                    continue
            raise _escape_error(body, i, "malformed \\u escape: use \\uXXXX (4 hex digits) or \\u{X..X}", tok, path)
        raise _escape_error(body, i, f"unknown escape \\{nxt} in a string" if nxt else "a string ends with a lone backslash",
                            tok, path)
    return "".join(out)


def _escape_error(body: str, i: int, msg: str, tok: Token | None, path: str) -> SynthSyntaxError:
    line, col = (tok.line or 1, (tok.column or 1) + 1 + i) if tok is not None else (1, 1 + i)
    return SynthSyntaxError(msg, Span(path, line, col, line, col + 2), code="bad-escape", expected=[], hint=ESCAPE_HINT)


def _unquote(tok: Token, path: str = "<string>") -> str:
    s = str(tok)
    if s.startswith('"""'):   # triple-quoted: raw text, backslashes are literal (LaTeX-friendly)
        body = s[3:-3]
        if body.startswith("\n"):
            body = body[1:]
        return _dedent(body)
    return unescape(s[1:-1], tok, path)


def _dedent(s: str) -> str:
    import textwrap

    return textwrap.dedent(s)


def _doc_lines(text: str, comments: list[tuple[int, int, str]]) -> dict[int, str]:
    """Line → doc text of every ``##`` comment that stands alone on its line."""
    lines = text.split("\n")
    out: dict[int, str] = {}
    for line, col, body in comments:
        if body.startswith("##") and 1 <= line <= len(lines) and not lines[line - 1][: max(col - 1, 0)].strip():
            doc = body[2:].rstrip()
            out[line] = doc[1:] if doc.startswith(" ") else doc
    return out


def _attach_docs(decls: Any, docs: dict[int, str]) -> tuple[Any, ...]:
    """Set ``doc`` on each declaration from the ``##`` lines directly above it (no blank line between)."""
    out = []
    for d in decls:
        if isinstance(d, ast.Loop):
            d = dataclasses.replace(d, body=_attach_docs(d.body, docs))
        if "doc" in getattr(d, "__dataclass_fields__", {}) and d.span.line - 1 in docs:
            run, line = [], d.span.line - 1
            while line in docs:
                run.append(docs[line])
                line -= 1
            d = dataclasses.replace(d, doc="\n".join(reversed(run)))
        out.append(d)
    return tuple(out)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, path: str) -> None:
        super().__init__(visit_tokens=False)
        self.path = path

    def _s(self, meta: Any) -> Span:
        return _span(meta, self.path)

    # declarations
    def start(self, meta, items):
        header = None
        decls = list(items)
        for i, it in enumerate(decls):
            if isinstance(it, ast.Header):
                if i != 0 or header is not None:
                    raise SynthSyntaxError("'recipe' must be the first declaration of the file", it.span,
                                           hint="move the 'recipe NAME \"description\"' line to the top", code="syntax",
                                           expected=[])
                header = it
        return ast.Recipe(self.path, header, tuple(d for d in decls if not isinstance(d, ast.Header)), self._s(meta))

    def header(self, meta, c):
        return ast.Header(str(c[0]), c[1], self._s(meta))

    def param(self, meta, c):
        return ast.Param(str(c[0]), c[1], c[2], span=self._s(meta))

    def model(self, meta, c):
        return ast.Model(str(c[0]), c[1], span=self._s(meta))

    def source(self, meta, c):
        fields = c[2] if c[2] is not None else ()
        return ast.Source(str(c[0]), c[1], tuple(fields), span=self._s(meta))

    def source_body(self, meta, c):
        return tuple(c)

    def field_decl(self, meta, c):
        return ast.FieldDecl(str(c[0]), c[1], self._s(meta))

    def derived_field(self, meta, c):
        return ast.DerivedField(str(c[0]), c[1], self._s(meta))

    def template(self, meta, c):
        name, body = str(c[0]), c[1]
        if isinstance(body, ast.Call):
            if body.func != "file" or len(body.args) != 1 or not isinstance(body.args[0].value, ast.Literal) \
                    or not isinstance(body.args[0].value.value, str):
                raise SynthSyntaxError(
                    f"template '{name}' must be a string or file(\"path.j2\")",
                    body.span,
                    hint='write template t = """...""" or template t = file("templates/t.j2")',
                )
            return ast.Template(name, None, body.args[0].value.value, span=self._s(meta))
        return ast.Template(name, body, None, span=self._s(meta))

    def step(self, meta, c):
        outs = c[2] if c[2] is not None else ()
        return ast.Step(str(c[0]), c[1], tuple(outs), span=self._s(meta))

    def outputs(self, meta, c):
        return tuple(c)

    def output(self, meta, c):
        return ast.Output(str(c[1]), c[2], c[0] is not None, self._s(meta))

    def export(self, meta, c):
        fmt = str(c[2]) if c[2] is not None else "jsonl"
        opts = c[3].args if c[3] is not None else ()
        return ast.Export(c[0], c[1], fmt, tuple(opts), self._s(meta))

    def budget(self, meta, c):
        return ast.Budget(tuple(c), self._s(meta))

    def use(self, meta, c):
        args = c[2].args if c[2] is not None else ()
        for a in args:
            if a.name is None:
                raise SynthSyntaxError("use-site settings are named: use \"x.synth\" as rt (max_tokens=80, teacher=embedded())",
                                       a.span, code="syntax", expected=[])
        return ast.Use(c[0], str(c[1]), self._s(meta), tuple(args))

    def loop(self, meta, c):
        args = c[1].args if c[1] is not None else ()
        return ast.Loop(str(c[0]), tuple(args), tuple(c[2:]), span=self._s(meta))

    def feed(self, meta, c):
        return ast.Feed(str(c[0]), str(c[1]), self._s(meta))

    def type(self, meta, c):
        return ast.TypeRef(str(c[0]), c[1], self._s(meta))

    def string(self, meta, c):
        return _unquote(c[0], self.path)

    # expressions
    def or_expr(self, meta, c):
        return self._chain("or", c, meta)

    def and_expr(self, meta, c):
        return self._chain("and", c, meta)

    def _chain(self, op, c, meta):
        out = c[0]
        for nxt in c[1:]:
            out = ast.Binary(op, out, nxt, self._s(meta))
        return out

    def not_(self, meta, c):
        return ast.Unary("not", c[0], self._s(meta))

    def neg(self, meta, c):
        return ast.Unary("-", c[0], self._s(meta))

    def compare(self, meta, c):
        return ast.Binary(str(c[1]), c[0], c[2], self._s(meta))

    def in_(self, meta, c):
        return ast.Binary("in", c[0], c[1], self._s(meta))

    def sum(self, meta, c):
        return self._binops(c, meta)

    def product(self, meta, c):
        return self._binops(c, meta)

    def _binops(self, c, meta):
        out = c[0]
        for i in range(1, len(c), 2):
            out = ast.Binary(str(c[i]), out, c[i + 1], self._s(meta))
        return out

    def call(self, meta, c):
        args = c[1].args if c[1] is not None else ()
        return ast.Call(str(c[0]), tuple(args), self._s(meta))

    def attr(self, meta, c):
        return ast.Attr(c[0], str(c[1]), self._s(meta))

    def index(self, meta, c):
        return ast.Index(c[0], c[1], self._s(meta))

    def number(self, meta, c):
        s = str(c[0])
        val: int | float = float(s) if any(ch in s for ch in ".eE") else int(s)
        return ast.Literal(val, self._s(meta))

    def strlit(self, meta, c):
        return ast.Literal(c[0], self._s(meta))

    def true(self, meta, c):
        return ast.Literal(True, self._s(meta))

    def false(self, meta, c):
        return ast.Literal(False, self._s(meta))

    def null(self, meta, c):
        return ast.Literal(None, self._s(meta))

    def name(self, meta, c):
        return ast.Name(str(c[0]), self._s(meta))

    def cond(self, meta, c):
        return ast.Cond(c[0], c[1], c[2], self._s(meta))

    def obj(self, meta, c):
        items = tuple(x for x in c if x is not None)
        seen: set[str] = set()
        for key, _value, span in items:
            if key in seen:
                raise SynthSyntaxError(f"key '{key}' appears twice in this object", span, code="syntax", expected=[],
                                       hint="each key of an object literal is written once")
            seen.add(key)
        return ast.ObjectExpr(tuple((k, v) for k, v, _ in items), self._s(meta))

    def obj_item(self, meta, c):
        key = c[0] if isinstance(c[0], str) and not isinstance(c[0], Token) else str(c[0])
        return (key, c[1], self._s(meta))

    def list(self, meta, c):
        return ast.ListExpr(tuple(x for x in c if x is not None), self._s(meta))

    def arglist(self, meta, c):
        return ast.Call("", tuple(c), self._s(meta))

    def kwarg(self, meta, c):
        return ast.Arg(str(c[0]), c[1], self._s(meta))

    def budget_arg(self, meta, c):
        return ast.Arg(str(c[0]), c[1], self._s(meta))

    def posarg(self, meta, c):
        return ast.Arg(None, c[0], self._s(meta))

    def __default_token__(self, tok):
        return tok


def parse(text: str, path: str = "<string>") -> ast.Recipe:
    """Parse recipe text into a :class:`synthlang.ast.Recipe`.

    Args:
        text: the ``.synth`` source.
        path: the file name used in spans and diagnostics.

    Raises:
        SynthSyntaxError: at the first syntax error, with line, column and
            what was expected in words.
    """
    return parse_with_comments(text, path)[0]


def parse_with_comments(text: str, path: str = "<string>") -> tuple[ast.Recipe, list[tuple[int, int, str]]]:
    """Parse recipe text; also return its comments as ``(line, col, text)`` in file order.

    ``##`` doc comments are included (they are also attached to declarations).
    Used by ``synth fmt``, which must keep every comment.

    Raises:
        SynthSyntaxError: at the first syntax error.
    """
    remember_source(path, text)
    _COMMENT_SINK.clear()
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, path, text) from None
    except RecursionError:
        raise SynthSyntaxError("the recipe nests too deeply to parse", Span(path, 1, 1, 1, 2), code="syntax",
                               expected=[]) from None
    comments = sorted({(t.line or 0, t.column or 0, str(t)) for t in _COMMENT_SINK})
    _COMMENT_SINK.clear()
    try:
        recipe = _ToAst(path).transform(tree)
        docs = _doc_lines(text, comments)
        if docs:
            recipe = dataclasses.replace(recipe, decls=_attach_docs(recipe.decls, docs))
        return recipe, comments
    except VisitError as exc:
        if isinstance(exc.orig_exc, SynthSyntaxError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, (ValueError, SyntaxError)):  # a string literal Python cannot decode
            span = _span(exc.obj.meta, path) if hasattr(exc.obj, "meta") else Span(path, 1, 1, 1, 2)
            raise SynthSyntaxError("bad escape sequence in a string", span, code="bad-escape", expected=[],
                                   hint=ESCAPE_HINT) from None
        raise
    except RecursionError:
        raise SynthSyntaxError("the recipe nests too deeply to parse", Span(path, 1, 1, 1, 2), code="syntax",
                               expected=[]) from None


def parse_expr(text: str, path: str = "<expr>") -> ast.Expr:
    """Parse one expression (used for ``--param`` values and tests).

    Raises:
        SynthSyntaxError: when ``text`` is not one expression.
    """
    remember_source(path, text)
    try:
        tree = _expr_parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, path, text) from None
    try:
        return _ToAst(path).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SynthSyntaxError):
            raise exc.orig_exc from None
        raise


def parse_model_decl(text: str, path: str = "--model") -> ast.Model:
    """Parse ``NAME=ENGINE(...)`` (the ``synth run --model`` flag) into a :class:`synthlang.ast.Model`.

    Example: ``teacher=embedded()`` or ``teacher=openai("gpt-4o-mini", concurrency=8)``; a dotted
    NAME (``rt.teacher=embedded()``) names a model of an imported recipe (``use ... as rt``).

    Raises:
        SynthSyntaxError: when ``text`` is not ``NAME=`` followed by one engine call.
    """
    from synthlang.errors import SynthSyntaxError

    name, eq, decl = text.partition("=")
    if not eq or not all(part.isidentifier() for part in name.strip().split(".")):
        raise SynthSyntaxError(f"--model {text!r}: expected NAME=ENGINE(...), e.g. teacher=embedded()",
                               Span(path, 1, 1, 1, len(text) + 1))
    qname = name.strip()
    recipe = parse(f"model {qname.rsplit('.', 1)[-1]} = {decl.strip()}", path)
    if len(recipe.decls) != 1 or not isinstance(recipe.decls[0], ast.Model):
        raise SynthSyntaxError(f"--model {text!r}: expected one engine call after '='", Span(path, 1, 1, 1, len(text) + 1))
    return dataclasses.replace(recipe.decls[0], name=qname)  # `rt.teacher`: a model of the import `rt`


def parse_file(path: str | Path) -> ast.Recipe:
    """Read and parse a ``.synth`` file.

    Raises:
        ConfigError: when the file cannot be read or is not UTF-8 text.
        SynthSyntaxError: at the first syntax error.
    """
    return parse(read_recipe_text(path), str(path))


def read_recipe_text(path: str | Path) -> str:
    """Read a recipe file as UTF-8 text.

    Raises:
        ConfigError: when the file cannot be read.
        SynthSyntaxError: when it is not UTF-8 text or holds a NUL byte (binary data).
    """
    from synthlang.errors import ConfigError

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    if p.is_dir():
        raise ConfigError(f"{path} is a folder, not a recipe file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SynthSyntaxError(
            "the file is not UTF-8 text", Span(str(path), line, col, line, col + 1),
            hint="save the recipe as UTF-8",
        ) from None
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise SynthSyntaxError("the file contains a NUL byte (binary data?)", Span(str(path), line, col, line, col + 1))
    return text
