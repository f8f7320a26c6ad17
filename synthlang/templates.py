"""Jinja2 prompt templates, rendered in a bounded sandbox with strict undefined.

This is the only module that imports jinja2. Values from data are passed as
template *variables*, so a seed whose text is ``{{ 7*7 }}`` is inserted
literally and never rendered again.

A shared recipe is untrusted input (docs/reliability.md, "Untrusted recipes"),
so the sandbox (``jinja2.sandbox.SandboxedEnvironment``: no attributes that
start with ``_``, no unsafe callables) is bounded as well:

* ``range()`` yields at most :data:`MAX_RANGE` items;
* no operator, filter or method builds a string or list over
  :data:`MAX_STRING` characters/items (``'x' * 10**9``, ``'x'|center(10**9)``,
  ``'%0*d' % (10**9, 1)``), and ``**`` refuses results over
  :data:`MAX_POW_BITS` bits; these operators are never constant-folded at
  compile time, so ``synth check`` does not evaluate them;
* a render stops after :data:`RENDER_TIME_S` seconds (checked on every loop
  iteration, call and operator) and after :data:`MAX_OUTPUT` characters of
  output.

A render that hits a limit raises :class:`TemplateError`; the runner stores
that row as failed with the reason. :func:`unsafe_attributes` finds, without
rendering, the attribute accesses the sandbox would refuse, so ``synth check``
reports them before any call.
"""

from __future__ import annotations

import hashlib
import operator
import re
import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache, wraps
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    SandboxedEnvironment,
)

from synthlang.errors import SynthError

MAX_RANGE = 100_000
"""Most items one ``range()`` in a template may yield."""
MAX_STRING = 4_000_000
"""Most characters (or list items) one template operation may build."""
MAX_OUTPUT = 4_000_000
"""Most characters one rendered template may have."""
MAX_POW_BITS = 4096
"""Largest result of ``**`` in a template, in bits."""
RENDER_TIME_S = 2.0
"""Most wall seconds one render may take."""

# Names the sandbox refuses whatever the object (besides every name starting with "_").
_UNSAFE_NAMES = frozenset({"mro", "func_globals", "func_code", "f_globals", "f_locals", "f_builtins",
                           "tb_frame", "tb_next", "co_code"}) \
    | UNSAFE_GENERATOR_ATTRIBUTES | UNSAFE_COROUTINE_ATTRIBUTES | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "format", "format_map"})
_WIDE_FORMAT = re.compile(r"\d{7,}")


class TemplateError(SynthError):
    """A template failed to compile or to render.

    Attributes:
        name: the template's name.
        line: 1-based line inside the template, when known.
        code: ``template-syntax``, ``template-unsafe`` (an attribute the sandbox refuses)
            or ``template-limit`` (a size or time bound of the sandbox).
    """

    def __init__(self, message: str, name: str, line: int | None = None, code: str = "template-syntax") -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.code = code


class _LimitHit(Exception):
    """Raised inside a render when a bound of the sandbox is hit."""


_state = threading.local()


def _tick() -> None:
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise _LimitHit(f"render took longer than {RENDER_TIME_S:g} s")


def _size(v: Any) -> int:
    return len(v) if isinstance(v, (str, bytes, list, tuple)) else 0


def _check_size(v: Any, what: str) -> Any:
    if _size(v) > MAX_STRING:
        raise _LimitHit(f"{what} built {_size(v):,} characters/items, over the limit of {MAX_STRING:,}")
    return v


def _bounded_range(*args: int) -> Iterator[int]:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise _LimitHit(f"range() of {len(rng):,} items, over the limit of {MAX_RANGE:,}")
    return _guard_iter(rng)


def _guard_iter(it: Iterable[Any]) -> Iterator[Any]:
    for i, x in enumerate(it):
        if not i & 255:
            _tick()
        yield x


def _big_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_STRING


def _bounded_filter(f: Any, name: str) -> Any:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if name in _PADDING_METHODS and any(_big_int(a) for a in [*args, *kwargs.values()]):
            raise _LimitHit(f"filter '{name}' asked for a width over {MAX_STRING:,}")
        return _check_size(f(*args, **kwargs), f"filter '{name}'")
    return wrapper


class _GuardedCodeGenerator(CodeGenerator):
    """Wraps the iterable of every ``{% for %}`` in ``environment.guard_iter`` (the render time limit)."""

    def visit_For(self, node: nodes.For, frame: Any) -> None:
        if not getattr(node, "_guarded", False):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_iter"), [node.iter], [], None, None,
                                   lineno=node.lineno)
            node._guarded = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)


class BoundedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox with bounds on size, range, power and time (see the module docstring).

    Follows the Jinja2 sandbox documentation, "Operator Intercepting"
    (https://jinja.palletsprojects.com/en/stable/sandbox/#operator-intercepting).
    """

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _bounded_range
        self.filters = {k: _bounded_filter(f, k) for k, f in self.filters.items()}

    @staticmethod
    def guard_iter(it: Iterable[Any]) -> Iterator[Any]:
        """The iterable of a ``for`` loop, checking the render deadline as it goes."""
        return _guard_iter(it)

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        _tick()
        if op == "*":
            for a, b in ((left, right), (right, left)):
                if isinstance(a, (str, list, tuple)) and isinstance(b, int) and len(a) * max(b, 0) > MAX_STRING:
                    raise _LimitHit(f"'*' would build {len(a) * b:,} characters/items, over the limit of {MAX_STRING:,}")
        elif op == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                and right * max(abs(left).bit_length(), 1) > MAX_POW_BITS:
            raise _LimitHit(f"'**' result over {MAX_POW_BITS} bits")
        elif op == "%" and isinstance(left, str):
            args = right if isinstance(right, tuple) else (right,)
            if _WIDE_FORMAT.search(left) or ("*" in left and any(_big_int(a) for a in args)):
                raise _LimitHit(f"'%' format asks for a width over {MAX_STRING:,}")
        return _check_size(operator.getitem(self.binop_table, op)(left, right), f"'{op}'")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _tick()
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if owner is None:   # the sandbox wraps str.format / format_map
            owner = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if isinstance(owner, str) and name in _PADDING_METHODS:
            if any(_big_int(a) for a in [*args, *kwargs.values()]):
                raise _LimitHit(f"str.{name}() asked for a width over {MAX_STRING:,}")
            if name.startswith("format") and _WIDE_FORMAT.search(owner):
                raise _LimitHit(f"str.{name}() asks for a width over {MAX_STRING:,}")
        return _check_size(super().call(__context, __obj, *args, **kwargs), f"{name or 'a call'}()")


@lru_cache(maxsize=1)
def _env() -> BoundedSandbox:
    return BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=512)
def compile_template(text: str, name: str = "<template>") -> jinja2.Template:
    """Compile template text once (cached by text).

    Raises:
        TemplateError: on a Jinja2 syntax error, with the template line.
    """
    try:
        return _env().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}", name, exc.lineno) from None


def variables(text: str, name: str = "<template>") -> set[str]:
    """The variables a template reads (``jinja2.meta.find_undeclared_variables``).

    Raises:
        TemplateError: on a syntax error (code ``template-syntax``), or when the template
            reads an attribute the sandbox refuses at run time (code ``template-unsafe``,
            see :func:`unsafe_attributes`).
    """
    bad = unsafe_attributes(text, name)
    if bad:
        attr, line = bad[0]
        raise TemplateError(f"template '{name}' line {line}: the sandbox refuses attribute '{attr}' "
                            "(names that start with '_' and Python internals are never readable)", name, line,
                            code="template-unsafe")
    return set(_variables(text, name))


@lru_cache(maxsize=1024)
def _parse(text: str, name: str) -> nodes.Template:
    try:
        return _env().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}", name, exc.lineno) from None


@lru_cache(maxsize=1024)
def _variables(text: str, name: str) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables(_parse(text, name)))


def unsafe_attributes(text: str, name: str = "<template>") -> list[tuple[str, int]]:
    """Attribute reads the sandbox will refuse whatever the data: ``(attribute, line)`` pairs, in order.

    Finds ``x.__class__``, ``x['__globals__']``, ``x|attr('__class__')`` and Python internals such as
    ``mro`` and ``gi_frame``, statically, from the template's syntax tree.

    Raises:
        TemplateError: on a syntax error.
    """
    out: list[tuple[str, int]] = []

    def bad(attr: Any) -> bool:
        return isinstance(attr, str) and (attr.startswith("_") or attr in _UNSAFE_NAMES)

    tree = _parse(text, name)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and bad(node.attr):
            out.append((node.attr, node.lineno))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and bad(node.arg.value):
            out.append((node.arg.value, node.lineno))
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const) and bad(node.args[0].value):
            out.append((node.args[0].value, node.lineno))
    return sorted(out, key=lambda x: x[1])


@lru_cache(maxsize=1024)
def printed_variables(text: str, name: str = "<template>") -> frozenset[str]:
    """Variables the template prints unconditionally: ``{{ x }}`` or ``{{ x|filter }}`` outside any
    ``if``, ``for``, macro or block, and not through ``default``.

    :func:`render` fails a row whose value for one of them is null or blank (the DataDesigner #629
    pattern: a prompt that silently says ``None`` or nothing where the question should be).

    Raises:
        TemplateError: on a syntax error.
    """
    out: set[str] = set()
    for node in _parse(text, name).body:
        if not isinstance(node, nodes.Output):
            continue
        for expr in node.nodes:
            while isinstance(expr, nodes.Filter) and expr.name not in ("default", "d") and expr.node is not None:
                expr = expr.node
            if isinstance(expr, nodes.Name) and expr.ctx == "load":
                out.add(expr.name)
    return frozenset(out)


def _blank(v: Any) -> str | None:
    if v is None:
        return "null"
    if isinstance(v, str) and not v.strip():
        return "empty" if not v else "blank (only whitespace)"
    return None


@lru_cache(maxsize=512)
def _prepared(text: str, name: str) -> tuple[jinja2.Template, tuple[str, ...], dict[str, Any]]:
    """A template compiled once with what each render needs: the variables it prints unconditionally (sorted)
    and a snapshot of its globals (Jinja merges the environment's globals into every render's context through
    a ChainMap, the largest part of a small render's cost; the sandbox's globals never change after setup)."""
    tpl = compile_template(text, name)
    return tpl, tuple(sorted(printed_variables(text, name))), dict(tpl.globals)


def render(text: str, values: dict[str, Any], name: str = "<template>") -> str:
    """Render a template with row values, within the sandbox's bounds.

    Returns:
        The rendered text, stripped.

    Raises:
        TemplateError: when a variable is missing, a variable the template prints
            unconditionally is null or blank (code ``template-empty-field``, see
            :func:`printed_variables`), the sandbox refuses an
            attribute (``__class__``, ``__globals__``, ...), a bound is hit
            (:data:`MAX_RANGE`, :data:`MAX_STRING`, :data:`MAX_OUTPUT`,
            :data:`RENDER_TIME_S`; code ``template-limit``) or rendering fails.
    """
    tpl, printed, globals_ = _prepared(text, name)
    for var in printed:
        why = _blank(values.get(var, 0))
        if why is not None:
            via = " (the value of the step's field= option)" if var == "input" else ""
            raise TemplateError(f"template '{name}': field '{var}'{via} is {why} in this row, and the prompt prints it",
                                name, code="template-empty-field")
    outer = getattr(_state, "deadline", None)
    _state.deadline = time.monotonic() + RENDER_TIME_S
    try:
        parts: list[str] = []
        size = 0
        # the same context Template.render builds (globals, then the row's values over them), from the snapshot
        for piece in tpl.root_render_func(tpl.new_context({**globals_, **values}, shared=True)):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise _LimitHit(f"output over {MAX_OUTPUT:,} characters")
            parts.append(piece)
        return "".join(parts).strip()
    except _LimitHit as exc:
        raise TemplateError(f"template '{name}': a sandbox limit was hit: {exc}", name, code="template-limit") from None
    except (OverflowError, MemoryError, RecursionError) as exc:
        raise TemplateError(f"template '{name}': a sandbox limit was hit: {type(exc).__name__}: {exc}", name,
                            code="template-limit") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template '{name}': {exc.message}", name) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template '{name}': unsafe operation refused by the sandbox: {exc}", name,
                            code="template-unsafe") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template '{name}': {exc}", name) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, ArithmeticError) as exc:
        raise TemplateError(f"template '{name}': {type(exc).__name__}: {exc}", name) from None
    finally:
        _state.deadline = outer


@lru_cache(maxsize=1024)
def template_hash(text: str) -> str:
    """sha256 of a template's text, first 16 hex digits (recorded in lineage)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
