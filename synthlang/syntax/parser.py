"""The Lark LALR parser and its transformer into AST nodes.

Lark is hidden behind this module: its exceptions become
:class:`~synthlang.errors.SynthSyntaxError` with a position and the expected
tokens in words (``a name``, ``'='``), never a Lark traceback.
"""

from __future__ import annotations

import dataclasses
import threading
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.parsers.lalr_analysis import Shift

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


def _parser() -> Lark:
    """The Lark LALR parser of whole recipes (built once; its reduce callbacks build AST nodes)."""
    return _reducer("start").lark


@cache
def _reducer(start: str) -> _Reducer:
    lark = Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        maybe_placeholders=True,   # positions: _Reducer computes them as propagate_positions=True would
        start=start,
        lexer_callbacks={"COMMENT": _collect} if start == "start" else {},
    )
    return _Reducer(lark, _Build())


# One parse at a time: the reducer's path and error, and the comment sink, are per parse.
_LOCK = threading.Lock()


def _run(start: str, text: str, path: str) -> Any:
    """Parse ``text`` from rule ``start`` into its AST value (under ``_LOCK``).

    Raises:
        SynthSyntaxError: at a Lark syntax error, else at the first error an AST builder raised.
    """
    red = _reducer(start)
    red.build.path = path
    red.error = None
    try:
        out = red.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, path, text) from None
    except RecursionError:
        raise SynthSyntaxError(_NESTS, Span(path, 1, 1, 1, 2), code="syntax", expected=[]) from None
    finally:
        error, red.error = red.error, None
    if error is not None:
        raise error
    return out[0] if out.__class__ is tuple else out


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


class _Build:
    """AST node builders, one method per grammar rule (or alias) that makes a node.

    Each method takes the node's ``span`` (its own extent in the text, as Lark's
    ``propagate_positions`` computes it) and its children after Lark's filtering
    (anonymous tokens and ``_KW_*`` keywords dropped, ``None`` for an absent ``[...]``
    part, ``_rule`` children spliced in) and returns an :mod:`synthlang.ast` node.
    They run as LALR reduce callbacks (see :class:`_Reducer`), so no Lark tree is built.
    """

    def __init__(self) -> None:
        self.path = "<string>"

    # declarations
    def start(self, span, items):
        header = None
        decls = list(items)
        for i, it in enumerate(decls):
            if isinstance(it, ast.Header):
                if i != 0 or header is not None:
                    raise SynthSyntaxError("'recipe' must be the first declaration of the file", it.span,
                                           hint="move the 'recipe NAME \"description\"' line to the top", code="syntax",
                                           expected=[])
                header = it
        return ast.Recipe(self.path, header, tuple(d for d in decls if not isinstance(d, ast.Header)), span)

    def header(self, span, c):
        return ast.Header(str(c[0]), c[1], span)

    def param(self, span, c):
        return ast.Param(str(c[0]), c[1], c[2], span=span)

    def model(self, span, c):
        return ast.Model(str(c[0]), c[1], span=span)

    def source(self, span, c):
        fields = c[2] if c[2] is not None else ()
        return ast.Source(str(c[0]), c[1], tuple(fields), span=span)

    def source_body(self, span, c):
        return tuple(c)

    def field_decl(self, span, c):
        return ast.FieldDecl(str(c[0]), c[1], span)

    def derived_field(self, span, c):
        return ast.DerivedField(str(c[0]), c[1], span)

    def template(self, span, c):
        name, body = str(c[0]), c[1]
        if isinstance(body, ast.Call):
            if body.func != "file" or len(body.args) != 1 or not isinstance(body.args[0].value, ast.Literal) \
                    or not isinstance(body.args[0].value.value, str):
                raise SynthSyntaxError(
                    f"template '{name}' must be a string or file(\"path.j2\")",
                    body.span,
                    hint='write template t = """...""" or template t = file("templates/t.j2")',
                )
            return ast.Template(name, None, body.args[0].value.value, span=span)
        return ast.Template(name, body, None, span=span)

    def step(self, span, c):
        outs = c[2] if c[2] is not None else ()
        return ast.Step(str(c[0]), c[1], tuple(outs), span=span)

    def outputs(self, span, c):
        return tuple(c)

    def output(self, span, c):
        return ast.Output(str(c[1]), c[2], c[0] is not None, span)

    def export(self, span, c):
        fmt = str(c[2]) if c[2] is not None else "jsonl"
        opts = c[3].args if c[3] is not None else ()
        return ast.Export(c[0], c[1], fmt, tuple(opts), span)

    def budget(self, span, c):
        return ast.Budget(tuple(c), span)

    def use(self, span, c):
        args = c[2].args if c[2] is not None else ()
        for a in args:
            if a.name is None:
                raise SynthSyntaxError("use-site settings are named: use \"x.synth\" as rt (max_tokens=80, teacher=embedded())",
                                       a.span, code="syntax", expected=[])
        return ast.Use(c[0], str(c[1]), span, tuple(args))

    def loop(self, span, c):
        args = c[1].args if c[1] is not None else ()
        return ast.Loop(str(c[0]), tuple(args), tuple(c[2:]), span=span)

    def feed(self, span, c):
        return ast.Feed(str(c[0]), str(c[1]), span)

    def type(self, span, c):
        return ast.TypeRef(str(c[0]), c[1], span)

    def string(self, span, c):
        return _unquote(c[0], self.path)

    # expressions
    def or_expr(self, span, c):
        return self._chain("or", c, span)

    def and_expr(self, span, c):
        return self._chain("and", c, span)

    def _chain(self, op, c, span):
        out = c[0]
        for nxt in c[1:]:
            out = ast.Binary(op, out, nxt, span)
        return out

    def not_(self, span, c):
        return ast.Unary("not", c[0], span)

    def neg(self, span, c):
        return ast.Unary("-", c[0], span)

    def compare(self, span, c):
        return ast.Binary(str(c[1]), c[0], c[2], span)

    def in_(self, span, c):
        return ast.Binary("in", c[0], c[1], span)

    def sum(self, span, c):
        return self._binops(c, span)

    def product(self, span, c):
        return self._binops(c, span)

    def _binops(self, c, span):
        out = c[0]
        for i in range(1, len(c), 2):
            out = ast.Binary(str(c[i]), out, c[i + 1], span)
        return out

    def call(self, span, c):
        args = c[1].args if c[1] is not None else ()
        return ast.Call(str(c[0]), tuple(args), span)

    def attr(self, span, c):
        return ast.Attr(c[0], str(c[1]), span)

    def index(self, span, c):
        return ast.Index(c[0], c[1], span)

    def number(self, span, c):
        s = str(c[0])
        val: int | float = float(s) if any(ch in s for ch in ".eE") else int(s)
        return ast.Literal(val, span)

    def strlit(self, span, c):
        return ast.Literal(c[0], span)

    def true(self, span, c):
        return ast.Literal(True, span)

    def false(self, span, c):
        return ast.Literal(False, span)

    def null(self, span, c):
        return ast.Literal(None, span)

    def name(self, span, c):
        return ast.Name(str(c[0]), span)

    def cond(self, span, c):
        return ast.Cond(c[0], c[1], c[2], span)

    def obj(self, span, c):
        items = tuple(x for x in c if x is not None)
        seen: set[str] = set()
        for key, _value, key_span in items:
            if key in seen:
                raise SynthSyntaxError(f"key '{key}' appears twice in this object", key_span, code="syntax", expected=[],
                                       hint="each key of an object literal is written once")
            seen.add(key)
        return ast.ObjectExpr(tuple((k, v) for k, v, _ in items), span)

    def obj_item(self, span, c):
        key = c[0] if isinstance(c[0], str) and not isinstance(c[0], Token) else str(c[0])
        return (key, c[1], span)

    def list(self, span, c):
        return ast.ListExpr(tuple(x for x in c if x is not None), span)

    def arglist(self, span, c):
        return ast.Call("", tuple(c), span)

    def kwarg(self, span, c):
        return ast.Arg(str(c[0]), c[1], span)

    def budget_arg(self, span, c):
        return ast.Arg(str(c[0]), c[1], span)

    def posarg(self, span, c):
        return ast.Arg(None, c[0], span)

    def __default_token__(self, tok):
        return tok


# Deeper than this many nested nodes (a Lark tree's depth, e.g. ``-(-(-(...)))`` or ``f(f(f(...)))``),
# a recipe is refused with "nests too deeply": the checker and the planner walk expressions
# recursively. The tree transformer this module used before hit Python's recursion limit (1,000
# frames, two per level) between 480 and 492 levels depending on the caller's stack, sometimes as a
# VisitError traceback; 492 accepts everything it accepted, always with the clean error beyond.
MAX_NESTING = 492

_NESTS = "the recipe nests too deeply to parse"


class _Reducer:
    """LALR reduce callbacks that build AST nodes directly, with Lark's positions.

    Lark's default callbacks build a parse tree (a ``Tree`` and a ``Meta`` per node, with
    ``propagate_positions`` walking each node's children twice), which a ``Transformer``
    then walks again; for a 1,000-step recipe (84 KB, 21,000 tokens, 56,000 reductions)
    that was two thirds of the parse. These callbacks replace Lark's per rule and do the
    same work in one pass, keeping exactly what the tree gave:

    - children filtered as ``lark.parse_tree_builder`` does: anonymous and ``_``-prefixed
      tokens dropped, ``None`` in place of an absent ``[...]`` (``maybe_placeholders``),
      ``_rule`` results spliced into their parent, a ``?rule`` with one child replaced
      by that child;
    - positions as ``PropagatePositions`` computes them: a node starts where its first
      child's *container* starts and ends where its last child's container ends (the
      container of ``( expr )`` includes the parentheses; the ``expr`` node does not).

    A stack value is a lexer ``Token`` or a tuple ``(value, line, col, end_line, end_col,
    depth)`` (container position, ``line`` None when empty; ``depth`` the Lark tree
    depth). An error raised by a builder is kept and raised after the parse, so that a
    syntax error later in the file wins, as it did when the tree was transformed after
    parsing.
    """

    def __init__(self, lark: Lark, build: _Build) -> None:
        self.lark = lark
        self.build = build
        self.error: SynthSyntaxError | None = None
        callbacks = lark.parser.parser.parser.callbacks
        if set(callbacks) != set(lark.rules):  # pragma: no cover - a Lark release that moved its internals
            raise RuntimeError("this Lark version keeps its LALR callbacks elsewhere; synthlang needs lark>=1.2,<2")
        for rule in lark.rules:
            callbacks[rule] = self._callback(rule)
        # The LALR table with plain-str keys and each reduce as (size, callback, goto symbol): Lark's own loop
        # (ParserState.feed_token) hashes and compares Rule and Token objects in Python on every reduction.
        table = lark.parser.parser.parser.parse_table
        (start,) = lark.options.start
        self.start_state = table.start_states[start]
        self.end_state = table.end_states[start]
        self.states: dict[Any, dict[str, tuple[bool, Any]]] = {
            state: {str(sym): (True, arg) if action is Shift else
                    (False, (len(arg.expansion), None if callbacks[arg] is _first else callbacks[arg], str(arg.origin.name)))
                    for sym, (action, arg) in actions.items()}
            for state, actions in table.states.items()
        }
        self.lexers = self._state_lexers()

    def _state_lexers(self) -> dict[Any, tuple[tuple[Any, ...], dict[str, Any], frozenset[str], frozenset[str]]] | None:
        """Per LALR state, what Lark's contextual lexer uses there: its regexes, token callbacks, newline and ignored types.

        None when this Lark release keeps them elsewhere (then :meth:`parse` uses Lark's own lexer and loop).
        """
        try:
            out = {}
            for state, lexer in self.lark.parser.lexer.lexers.items():
                scanner = lexer.scanner   # builds lexer.callback too
                out[state] = (tuple(scanner._mres), dict(lexer.callback), frozenset(lexer.newline_types),
                              frozenset(lexer.ignore_types))
            if set(out) != set(self.states) or self.lark.options.postlex is not None:
                return None
            return out
        except AttributeError:  # pragma: no cover - a Lark release that moved its internals
            return None

    def parse(self, text: str) -> Any:
        """Parse ``text`` into its top AST value, running the lexer and the LALR loop here.

        The loop is Lark's (``ContextualLexer.lex`` with ``BasicLexer.next_token``, and
        ``ParserState.feed_token``) over the same regexes and parse table, without Lark's per-token
        generator and attribute updates or its per-reduction Python-level ``Rule``/``Token`` comparisons.
        Tokens are the same ``Token`` objects with the same positions, and lexer callbacks (comments) run
        as in Lark. At any error it parses again with Lark's own lexer and loop, which raise exactly the
        exception Lark gives (with its parser state, for the expected-token list).

        Raises:
            lark.exceptions.UnexpectedInput: the text is not in the grammar.
        """
        lexers = self.lexers
        if lexers is None:  # pragma: no cover - see _state_lexers
            return self.lark.parse(text)
        states = self.states
        state_stack = [self.start_state]
        value_stack: list[Any] = []
        pos, line, line_start, size_text = 0, 1, 0, len(text)
        try:
            while pos < size_text:
                mres, token_callbacks, newline_types, ignore_types = lexers[state_stack[-1]]
                for mre in mres:
                    m = mre.match(text, pos)
                    if m:
                        break
                else:
                    raise KeyError("no token")
                value = m.group(0)
                ttype = m.lastgroup
                start, start_line, start_col = pos, line, pos - line_start + 1
                if ttype in newline_types:
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                if ttype in ignore_types:
                    if ttype in token_callbacks:
                        token_callbacks[ttype](_token(ttype, value, start, start_line, start_col, line, pos - line_start + 1, pos))
                    continue
                token = _token(ttype, value, start, start_line, start_col, line, pos - line_start + 1, pos)
                if ttype in token_callbacks:
                    token = token_callbacks[ttype](token)
                    ttype = token.type
                while True:
                    shift, arg = states[state_stack[-1]][ttype]
                    if shift:
                        state_stack.append(arg)
                        value_stack.append(token)
                        break
                    size, callback, origin = arg
                    if callback is None:  # `?a: b`: the value stays, only the state changes
                        state_stack[-1] = states[state_stack[-2]][origin][1]
                        continue
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    value_stack.append(callback(children))
                    state_stack.append(states[state_stack[-1]][origin][1])
            end = self.end_state
            while True:
                shift, arg = states[state_stack[-1]]["$END"]
                if shift:
                    raise KeyError("$END")
                size, callback, origin = arg
                if callback is None:
                    state_stack[-1] = states[state_stack[-2]][origin][1]
                else:
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    value_stack.append(callback(children))
                    state_stack.append(states[state_stack[-1]][origin][1])
                if state_stack[-1] == end:
                    return value_stack[-1]
        except KeyError:
            self.error = None
            return self.lark.parse(text)   # raises Lark's own exception at the same token

    def _callback(self, rule: Any) -> Any:
        name = rule.alias or rule.options.template_source or rule.origin.name
        expansion = rule.expansion
        # Which children survive, and how many placeholders come before each (Lark's maybe_create_child_filter).
        empty = rule.options.empty_indices if self.lark.options.maybe_placeholders else ()
        if empty:
            counts = [len(ones) for ones in "".join(str(int(b)) for b in empty).split("0")]
        else:
            counts = [0] * (len(expansion) + 1)
        include: list[tuple[int, bool, int]] = []
        nones = 0
        for i, sym in enumerate(expansion):
            nones += counts[i]
            if rule.options.keep_all_tokens or not (sym.is_term and sym.filter_out):
                include.append((i, not sym.is_term and sym.name.startswith("_"), nones))
                nones = 0
        trailing = nones + counts[len(expansion)]
        expand1 = bool(rule.options.expand1 and not rule.alias)
        inline = rule.origin.name.startswith("_")
        method = None if inline else getattr(self.build, name, None)
        if method is None and not inline and not (expand1 and len(include) == 1 and not include[0][2] and not trailing):
            raise RuntimeError(f"grammar rule {name!r} has no AST builder")  # pragma: no cover - grammar/builder drift
        single = include[0][0] if len(include) == 1 and not include[0][1] else None  # the one child a ?rule may become

        plain = (not trailing and all(not exp and not n for _, exp, n in include)
                 and [i for i, _, _ in include] == list(range(len(expansion))))
        if expand1 and plain and len(expansion) == 1:
            return _first  # `?a: b`: the child itself, its position unchanged
        reducer = self
        build = self.build

        def callback(children: list[Any]) -> Any:
            # position: first child's container start, last child's container end
            line = col = end_line = end_col = None
            for c in children:
                if c.__class__ is tuple:
                    if c[1] is not None:
                        line, col = c[1], c[2]
                        break
                elif c is not None:
                    line, col = c.line, c.column
                    break
            if line is not None:
                for c in reversed(children):
                    if c.__class__ is tuple:
                        if c[3] is not None:
                            end_line, end_col = c[3], c[4]
                            break
                    elif c is not None:
                        end_line, end_col = c.end_line, c.end_column
                        break
            # children as Lark's tree would hold them
            if plain:
                kids = [c[0] if c.__class__ is tuple else c for c in children]
                depth = max([c[5] for c in children if c.__class__ is tuple], default=0)
            else:
                kids = []
                depth = 0
                for i, exp, n in include:
                    if n:
                        kids.extend([None] * n)
                    c = children[i]
                    if c.__class__ is tuple:
                        if c[5] > depth:
                            depth = c[5]
                        if exp:
                            kids.extend(c[0])
                        else:
                            kids.append(c[0])
                    else:
                        kids.append(c)
                if trailing:
                    kids.extend([None] * trailing)
            if expand1 and len(kids) == 1:
                if kids[0] is None:
                    return None
                if single is None:  # pragma: no cover - `?a: _b` whose _b made one child: not in this grammar
                    raise RuntimeError(f"grammar rule {name!r}: a ?rule became a spliced child")
                only = children[single]
                if only.__class__ is not tuple:
                    return only   # a token stands for itself, with its own position
                return (only[0], line if line is not None else only[1], col if line is not None else only[2],
                        end_line if line is not None else only[3], end_col if line is not None else only[4], only[5])
            if inline:
                return (kids, line, col, end_line, end_col, depth)
            depth += 1
            if reducer.error is not None:
                return (None, line, col, end_line, end_col, depth)
            path = build.path
            span = Span(path, line, col, end_line, end_col) if line is not None else Span(path, 0, 0, 0, 0)
            if depth > MAX_NESTING:
                reducer.error = SynthSyntaxError(_NESTS, Span(path, 1, 1, 1, 2), code="syntax", expected=[])
                return (None, line, col, end_line, end_col, depth)
            try:
                value = method(span, kids)
            except SynthSyntaxError as exc:
                reducer.error = exc
                value = None
            except (ValueError, SyntaxError):  # a literal Python cannot decode (e.g. an over-long integer)
                reducer.error = SynthSyntaxError("bad escape sequence in a string", span, code="bad-escape",
                                                 expected=[], hint=ESCAPE_HINT)
                value = None
            except RecursionError:
                reducer.error = SynthSyntaxError(_NESTS, Span(path, 1, 1, 1, 2), code="syntax", expected=[])
                value = None
            return (value, line, col, end_line, end_col, depth)

        return callback


# Token(type, value, start_pos, line, column, end_line, end_column, end_pos); lark 1.3 routes Token() through _future_new.
_token = getattr(Token, "_future_new", Token)


def _first(children: list[Any]) -> Any:
    return children[0]




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
    with _LOCK:
        _COMMENT_SINK.clear()
        try:
            recipe = _run("start", text, path)
        finally:
            comments = sorted({(t.line or 0, t.column or 0, str(t)) for t in _COMMENT_SINK})
            _COMMENT_SINK.clear()
    docs = _doc_lines(text, comments)
    if docs:
        recipe = dataclasses.replace(recipe, decls=_attach_docs(recipe.decls, docs))
    return recipe, comments


def parse_expr(text: str, path: str = "<expr>") -> ast.Expr:
    """Parse one expression (used for ``--param`` values and tests).

    Raises:
        SynthSyntaxError: when ``text`` is not one expression.
    """
    remember_source(path, text)
    with _LOCK:
        return _run("expr", text, path)


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
