"""The safe expression language: static typing and evaluation, never Python ``eval``.

Expressions appear in derived fields (``gold = final_number(answer)``), filter
conditions, ``verify``'s condition and ``loop ... until``. They may use
literals, field names, comparisons, ``and``/``or``/``not``, arithmetic,
``in``, indexing and the built-in functions in :data:`FUNCTIONS` — nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from synthlang import ast
from synthlang.errors import CheckError, SynthError

_NUM_RE = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\$?\.\d+")


def parse_number(text: Any) -> float | int | None:
    """Parse one number written the way people write them.

    Accepts thousands separators (``2,125``), a currency sign (``$18``), a
    trailing ``.0``, fractions (``1/2``), percentages (``50%`` → 50) and
    surrounding text. Returns an ``int`` when the value is integral, else a
    ``float``; ``None`` when ``text`` holds no number.
    """
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return _norm(Fraction(text).limit_denominator(10**9)) if math.isfinite(text) else None
    m = _NUM_RE.search(str(text))
    if not m:
        return None
    return _to_number(m.group(0))


def _to_number(tok: str) -> float | int | None:
    s = tok.replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            if float(den) == 0:
                return None
            return _norm(Fraction(num) / Fraction(den))
        return _norm(Fraction(s))
    except (ValueError, ZeroDivisionError):
        return None


def _norm(f: Fraction) -> float | int:
    return int(f) if f.denominator == 1 else float(f)


def final_number(text: Any) -> float | int | None:
    """The final numeric answer in ``text``.

    Looks, in order, for the number after GSM8K's ``####`` marker, inside the
    last ``\\boxed{...}``, after "answer is"/"answer:", and otherwise takes
    the last number in the text. Thousands separators are removed
    (``#### 2,125`` → 2125). Returns ``None`` when there is no number.
    """
    if text is None:
        return None
    s = str(text)
    for pat in (r"####\s*([^\n]*)", r"\\boxed\{([^{}]*)\}", r"answer\s*(?:is|:)\s*:?\s*([^\n]*)"):
        hits = re.findall(pat, s, flags=re.IGNORECASE)
        if hits:
            v = parse_number(hits[-1])
            if v is not None:
                return v
    nums = _NUM_RE.findall(s)
    for tok in reversed(nums):
        v = _to_number(tok)
        if v is not None:
            return v
    return None


def _len(x: Any) -> int:
    return len(x) if x is not None else 0


def _word_count(x: Any) -> int:
    return len(str(x).split()) if x is not None else 0


def _contains(x: Any, sub: Any) -> bool:
    return x is not None and str(sub) in str(x)


def _num_or_none(x: Any) -> float | int | None:
    return parse_number(x)


def _strict(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` returning null when any argument is null (SQL: a function of null is null)."""
    def wrapped(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)
    return wrapped


# Self-Instruct (Wang et al., 2022), yizhongw/self-instruct bootstrap_instructions.py: the keyword blocklist of
# instructions a text-only model cannot carry out (the official list; Stanford Alpaca's adds five more).
SELF_INSTRUCT_BLOCKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                           "draw", "plot", "go to")
_NUMBERED = re.compile(r"\n\d+\s?\. ")
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"   # string.punctuation


def numbered_items(text: str) -> list[str]:
    r"""The items of a numbered-list continuation, split as Self-Instruct does.

    ``re.split(r"\n\d+\s?\. ", text)`` (the text before the first numbered line is the item the prompt's
    last number started), then each item's whitespace collapsed, stripped and ``str.capitalize()``-d; empty
    items dropped (bootstrap_instructions.py, ``post_process_gpt3_response``). Linear-time regex.
    """
    out = []
    for part in _NUMBERED.split(str(text)):
        item = re.sub(r"\s+", " ", part).strip().capitalize()
        if item:
            out.append(item)
    return out


def self_instruct_filter(text: str) -> str | None:
    """Why Self-Instruct's rule filters drop a new instruction, or ``None`` to keep it.

    The official rules in order: 3 words or fewer, or more than 150; a blocklisted keyword
    (:data:`SELF_INSTRUCT_BLOCKLIST`, whole words, any case); starting with "Write a program"; starting
    with punctuation; starting with a non-ASCII character. (ROUGE-L > 0.7 to the pool is a ``dedup`` step.)
    """
    s = str(text)
    n = len(s.split())
    if n <= 3 or n > 150:
        return f"{n} words (needs 4-150)"
    for w in SELF_INSTRUCT_BLOCKLIST:
        if re.search(rf"\b{re.escape(w)}\b", s, flags=re.IGNORECASE):
            return f"mentions '{w}' (blocklist)"
    if s.startswith("Write a program"):
        return "starts with 'Write a program'"
    if s[0] in _PUNCT:
        return "starts with punctuation"
    if not s[0].isascii():
        return "starts with a non-ASCII character"
    return None


def _least(*xs: Any) -> Any:
    vals = [x for x in xs if x is not None]
    return min(vals) if vals else None


def _greatest(*xs: Any) -> Any:
    vals = [x for x in xs if x is not None]
    return max(vals) if vals else None


@dataclass(frozen=True)
class Function:
    """A built-in function of the expression language.

    Attributes:
        fn: the implementation (pure, no I/O).
        arity: (min, max) positional arguments.
        returns: the result type name (``str``, ``int``, ``float``, ``number``, ``bool``, ``any``).
        doc: one line for ``docs/language.md``.
    """

    fn: Callable[..., Any]
    arity: tuple[int, int]
    returns: str
    doc: str
    args: tuple[str, ...] = ()
    """Expected argument types (``str``, ``number``, ``list``, ``text``= str or list, ``any``); the last repeats."""


FUNCTIONS: dict[str, Function] = {
    "final_number": Function(final_number, (1, 1), "number", "final numeric answer of a text (after ####, \\boxed{}, 'answer is', or the last number); null if none", ('str',)),
    "number": Function(_num_or_none, (1, 1), "number", "parse the first number in a text ('1,000', '$18', '1/2'); null if none", ('any',)),
    "lower": Function(_strict(lambda x: str(x).lower()), (1, 1), "str", "lower-case text", ('str',)),
    "upper": Function(_strict(lambda x: str(x).upper()), (1, 1), "str", "upper-case text", ('str',)),
    "strip": Function(_strict(lambda x: str(x).strip()), (1, 1), "str", "text without surrounding whitespace", ('str',)),
    "len": Function(_len, (1, 1), "int", "length of a text or list", ('text',)),
    "word_count": Function(_word_count, (1, 1), "int", "number of whitespace-separated words", ('str',)),
    "contains": Function(_contains, (2, 2), "bool", "whether a text contains a substring", ('str', 'str')),
    "startswith": Function(_strict(lambda x, p: str(x).startswith(str(p))), (2, 2), "bool", "whether a text starts with a prefix", ('str', 'str')),
    "endswith": Function(_strict(lambda x, p: str(x).endswith(str(p))), (2, 2), "bool", "whether a text ends with a suffix", ('str', 'str')),
    "replace": Function(_strict(lambda x, a, b: str(x).replace(str(a), str(b))), (3, 3), "str", "replace every occurrence of a substring", ('str', 'str', 'str')),
    "split": Function(_strict(lambda x, sep=None: str(x).split(sep)), (1, 2), "list", "split a text into a list", ('str', 'str')),
    "join": Function(_strict(lambda xs, sep="": str(sep).join(str(x) for x in xs)), (1, 2), "str", "join a list into a text", ('list', 'str')),
    "str": Function(lambda x: "" if x is None else str(x), (1, 1), "str", "convert to text", ('any',)),
    "int": Function(_strict(lambda x: int(float(x))), (1, 1), "int", "convert to an integer (truncates)", ('any',)),
    "float": Function(_strict(lambda x: float(x)), (1, 1), "float", "convert to a float", ('any',)),
    "round": Function(_strict(lambda x, nd=0: round(x, int(nd))), (1, 2), "number", "round to n decimals", ('number', 'int')),
    "abs": Function(_strict(abs), (1, 1), "number", "absolute value", ('number',)),
    "min": Function(_least, (1, 16), "any", "smallest argument that is not null (null if all are)", ('any',)),
    "max": Function(_greatest, (1, 16), "any", "largest argument that is not null (null if all are)", ('any',)),
    "coalesce": Function(lambda *xs: next((x for x in xs if x is not None), None), (1, 16), "any", "first argument that is not null", ('any',)),
    "is_null": Function(lambda x: x is None, (1, 1), "bool", "whether a value is null", ('any',)),
    "numbered_items": Function(_strict(numbered_items), (1, 1), "list", "the items of a numbered list (Self-Instruct's split: a new item at each line starting 'N. ')", ('str',)),
    "self_instruct_filter": Function(_strict(self_instruct_filter), (1, 1), "str", "why Self-Instruct's rule filters drop an instruction (4-150 words, keyword blocklist, 'Write a program', leading punctuation or non-ASCII); null to keep it", ('str',)),
}


class ExprError(SynthError):
    """An expression failed at run time for one row (for example ``1 / 0``)."""


def subexpressions(e: ast.Expr) -> list[ast.Expr]:
    """Every node of an expression tree, parents before children, in source order."""
    out: list[ast.Expr] = []

    def walk(x: Any) -> None:
        out.append(x)
        if isinstance(x, ast.Call):
            for a in x.args:
                walk(a.value)
        elif isinstance(x, ast.Binary):
            walk(x.left)
            walk(x.right)
        elif isinstance(x, ast.Unary):
            walk(x.operand)
        elif isinstance(x, ast.ListExpr):
            for i in x.items:
                walk(i)
        elif isinstance(x, ast.ObjectExpr):
            for _, v in x.items:
                walk(v)
        elif isinstance(x, ast.Cond):
            walk(x.then)
            walk(x.test)
            walk(x.orelse)
        elif isinstance(x, ast.Index):
            walk(x.obj)
            walk(x.key)
        elif isinstance(x, ast.Attr):
            walk(x.obj)

    walk(e)
    return out


def free_names(e: ast.Expr) -> list[ast.Name]:
    """Every field name an expression reads, in source order."""
    return [x for x in subexpressions(e) if isinstance(x, ast.Name)]


def calls(e: ast.Expr) -> list[ast.Call]:
    """Every function call in an expression, in source order."""
    return [x for x in subexpressions(e) if isinstance(x, ast.Call)]


NUMERIC = {"int", "float", "number"}


def infer_type(e: ast.Expr, env: dict[str, str]) -> tuple[str, list[CheckError]]:
    """Static type of an expression given field types; also returns type errors.

    Types are names: ``str``, ``int``, ``float``, ``number``, ``bool``,
    ``list``, ``json``, ``any``, ``null``. ``any``/``json`` are compatible
    with everything. Unknown names are reported by the checker, not here.
    """
    errs: list[CheckError] = []

    def compat(a: str, b: str) -> bool:
        if "any" in (a, b) or "json" in (a, b) or "null" in (a, b):
            return True
        if a in NUMERIC and b in NUMERIC:
            return True
        return a == b or (a.startswith("list") and b.startswith("list"))

    def t(x: ast.Expr) -> str:
        if isinstance(x, ast.Literal):
            v = x.value
            if v is None:
                return "null"
            if isinstance(v, bool):
                return "bool"
            if isinstance(v, int):
                return "int"
            if isinstance(v, float):
                return "float"
            return "str"
        if isinstance(x, ast.Name):
            return env.get(x.id, "any")
        if isinstance(x, ast.ListExpr):
            for i in x.items:
                t(i)
            return "list"
        if isinstance(x, ast.ObjectExpr):
            for _, v in x.items:
                t(v)
            return "json"
        if isinstance(x, ast.Cond):
            t(x.test)
            ta, tb = t(x.then), t(x.orelse)
            if ta == "null":
                return tb
            if tb == "null" or ta == tb:
                return ta
            if ta in NUMERIC and tb in NUMERIC:
                return "number"
            if not compat(ta, tb):
                errs.append(CheckError(f"the two branches of this conditional have different types ({ta} and {tb})", x.span,
                                       code="type-mismatch", left=ta, right=tb,
                                       hint="convert one branch, e.g. str(x) or number(x)"))
            return "any"
        if isinstance(x, ast.Index):
            t(x.obj)
            t(x.key)
            return "any"
        if isinstance(x, ast.Attr):
            return "any"
        if isinstance(x, ast.Unary):
            ot = t(x.operand)
            if x.op == "not":
                return "bool"
            if not compat(ot, "number"):
                errs.append(CheckError(f"cannot negate a value of type {ot}", x.span, code="type-mismatch", expected="number", found=ot))
            return ot
        if isinstance(x, ast.Call):
            fn = FUNCTIONS.get(x.func)
            for k, a in enumerate(x.args):
                at = t(a.value)
                if fn is None or not fn.args:
                    continue
                want = fn.args[min(k, len(fn.args) - 1)]
                ok = compat(at, "str") or compat(at, "list") if want == "text" else True if want == "any" else compat(at, want)
                if not ok:
                    errs.append(CheckError(
                        f"{x.func}() argument {k + 1} must be {'str or list' if want == 'text' else want}, not {at}", a.span,
                        code="type-mismatch", function=x.func, expected=want, found=at,
                        hint="convert it first, e.g. str(x) or number(x)"))
            return fn.returns if fn else "any"
        if isinstance(x, ast.Binary):
            lt, rt = t(x.left), t(x.right)
            if x.op in ("and", "or"):
                return "bool"
            if x.op == "in":
                if not compat(rt, "list") and not compat(rt, "str"):
                    errs.append(CheckError(f"'in' needs a list or text on its right, not {rt}", x.right.span, code="type-mismatch", expected="list or str", found=rt))
                return "bool"
            if x.op in ("==", "!=", "<", "<=", ">", ">="):
                if x.op in ("==", "!=") and "null" in (lt, rt):
                    errs.append(CheckError(f"'{x.op} null' is always null, so it is never true", x.span, code="null-comparison",
                                           hint=("write is_null(x)" if x.op == "==" else "write not is_null(x)")
                                           + "; comparisons with null are null (SQL three-valued logic)"))
                    return "bool"
                if not compat(lt, rt):
                    errs.append(CheckError(f"cannot compare {lt} with {rt} using '{x.op}'", x.span, code="type-mismatch", left=lt, right=rt,
                                           hint="convert one side, e.g. number(x) or str(x)"))
                return "bool"
            if x.op == "+" and compat(lt, "str") and compat(rt, "str") and "str" in (lt, rt):
                return "str"
            if x.op == "+" and "str" in (lt, rt):
                errs.append(CheckError(f"cannot mix {lt} and {rt} in '+'", x.span, code="type-mismatch", left=lt, right=rt,
                                       hint="'+' joins two texts or adds two numbers; convert with str(x) or number(x)"))
                return "any"
            for side, ty in ((x.left, lt), (x.right, rt)):
                if not compat(ty, "number"):
                    errs.append(CheckError(f"'{x.op}' needs numbers, but this is {ty}", side.span, code="type-mismatch", expected="number",
                                           found=ty, hint="convert with number(x), int(x) or float(x)"))
            if lt == "int" and rt == "int" and x.op != "/":
                return "int"
            return "number"
        return "any"

    return t(e), errs


def evaluate(e: ast.Expr, row: dict[str, Any], consts: dict[str, Any] | None = None) -> Any:
    """Evaluate an expression against one row's fields, with SQL's null semantics.

    ``null`` (Python ``None``) follows SQL's three-valued logic (ISO SQL, as in
    DuckDB and PostgreSQL): a comparison, ``in``, arithmetic or ``-`` with a null
    operand is null; ``and``/``or``/``not`` are Kleene logic (``false and null`` is
    false, ``true or null`` is true, ``not null`` is null); ``a if c else b``
    takes ``b`` when ``c`` is false *or* null (``CASE WHEN``). Callers that keep
    rows (``filter(where=...)``) keep a row only when the result is ``true``.
    Text and number functions return null for a null argument, except
    ``coalesce``, ``is_null``, ``str`` (``""``), ``len``/``word_count`` (0) and
    ``contains`` (false).

    Args:
        e: the expression.
        row: field name → value.
        consts: params and other constants, looked up after the row.

    Returns:
        The value: ``None`` for null, a bool, number, str, list or dict.

    Raises:
        ExprError: on a run-time failure (division by zero, bad conversion,
            a missing field), naming the expression's position.
    """
    consts = consts or {}

    def truth(v: Any) -> bool | None:
        return None if v is None else bool(v)

    def ev(x: ast.Expr) -> Any:
        if isinstance(x, ast.Literal):
            return x.value
        if isinstance(x, ast.Name):
            if x.id in row:
                return row[x.id]
            if x.id in consts:
                return consts[x.id]
            raise ExprError(f"{x.span}: no field '{x.id}' in this row")
        if isinstance(x, ast.ListExpr):
            return [ev(i) for i in x.items]
        if isinstance(x, ast.ObjectExpr):
            return {k: ev(v) for k, v in x.items}
        if isinstance(x, ast.Cond):
            return ev(x.then) if truth(ev(x.test)) is True else ev(x.orelse)
        if isinstance(x, ast.Index):
            obj, key = ev(x.obj), ev(x.key)
            try:
                return obj[key]
            except (KeyError, IndexError, TypeError):
                return None
        if isinstance(x, ast.Attr):
            obj = ev(x.obj)
            return obj.get(x.name) if isinstance(obj, dict) else None
        if isinstance(x, ast.Unary):
            v = ev(x.operand)
            if v is None:
                return None
            if x.op == "not":
                return not v
            return -v
        if isinstance(x, ast.Binary):
            if x.op == "and":
                a = truth(ev(x.left))
                if a is False:
                    return False
                b = truth(ev(x.right))
                return False if b is False else (None if a is None or b is None else True)
            if x.op == "or":
                a = truth(ev(x.left))
                if a is True:
                    return True
                b = truth(ev(x.right))
                return True if b is True else (None if a is None or b is None else False)
            a, b = ev(x.left), ev(x.right)
            if a is None or b is None:
                return None
            op = x.op
            if op == "==":
                return _eq(a, b)
            if op == "!=":
                return not _eq(a, b)
            if op == "in":
                return a in b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            if op == ">=":
                return a >= b
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            if op == "%":
                return a % b
        if isinstance(x, ast.Call):
            fn = FUNCTIONS[x.func]
            args = [ev(a.value) for a in x.args]
            return fn.fn(*args)
        raise ExprError(f"cannot evaluate {type(x).__name__}")

    try:
        return ev(e)
    except ExprError:
        raise
    except (ZeroDivisionError, ValueError, TypeError, OverflowError) as exc:
        raise ExprError(f"{e.span}: {exc}") from None


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)
