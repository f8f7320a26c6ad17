"""Frozen dataclass nodes of a parsed ``.synth`` recipe; every node has a span.

The parser (:mod:`synthlang.syntax`) builds these; the checker and the planner
read them. Nothing here imports a third-party library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from synthlang.errors import NO_SPAN, Span

# ----------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Literal:
    """A number, string, boolean or ``null``."""

    value: Any
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    """A bare identifier: a field, param, model, template, step or source."""

    id: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Attr:
    """``obj.name`` — a name inside an imported recipe (``rt.backward``)."""

    obj: Expr
    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Index:
    """``obj[key]``."""

    obj: Expr
    key: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ListExpr:
    """``[a, b, c]``."""

    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """``func(args..., key=value...)`` — a built-in function or an operator."""

    func: str
    args: tuple[Arg, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def positional(self) -> tuple[Expr, ...]:
        return tuple(a.value for a in self.args if a.name is None)

    def kw(self) -> dict[str, Arg]:
        return {a.name: a for a in self.args if a.name is not None}


@dataclass(frozen=True)
class Unary:
    """``-x`` or ``not x``."""

    op: str
    operand: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Binary:
    """Arithmetic (``+ - * / %``), comparison (``== != < <= > >= in``) or ``and``/``or``."""

    op: str
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ObjectExpr:
    """``{key: value, "other key": value}`` — an object (JSON dict) literal; keys keep their order."""

    items: tuple[tuple[str, Expr], ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Cond:
    """``then if test else orelse`` — a conditional expression (Python's form).

    ``test`` is true only when it evaluates to ``true``: ``false`` and ``null`` both
    choose ``orelse`` (SQL ``CASE WHEN``).
    """

    then: Expr
    test: Expr
    orelse: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Expr = Union[Literal, Name, Attr, Index, ListExpr, ObjectExpr, Call, Unary, Binary, Cond]


@dataclass(frozen=True)
class Arg:
    """One argument of a call: positional (``name`` is None) or keyword."""

    name: str | None
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class TypeRef:
    """A declared type: ``str``, ``int``, ``float``, ``bool``, ``json``, ``list[T]``."""

    name: str
    arg: TypeRef | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.name}[{self.arg}]" if self.arg else self.name


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Header:
    """``recipe NAME "description"``."""

    name: str
    description: str | None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Param:
    """``param NAME: TYPE = default`` — overridable with ``synth run --param``."""

    name: str
    type: TypeRef
    default: Expr | None
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Model:
    """``model NAME = engine("model-id", key=value...)``."""

    name: str
    engine: Call
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class FieldDecl:
    """A declared field of a source: ``question: str``."""

    name: str
    type: TypeRef
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class DerivedField:
    """A field computed by a safe expression: ``gold = final_number(answer)``."""

    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


SourceField = Union[FieldDecl, DerivedField]


@dataclass(frozen=True)
class Source:
    """``source NAME = jsonl("path", ...) { fields }``."""

    name: str
    loader: Call
    fields: tuple[SourceField, ...]
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Template:
    """``template NAME = \"\"\"...\"\"\"`` or ``template NAME = file("x.j2")``.

    Exactly one of ``text`` and ``file`` is set.
    """

    name: str
    text: str | None
    file: str | None
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Output:
    """One output field of a step; ``replace`` allows shadowing an existing field."""

    name: str
    type: TypeRef | None
    replace: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Step:
    """``step NAME = operator(input, option=value...) -> outputs``."""

    name: str
    op: Call
    outputs: tuple[Output, ...]
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Export:
    """``export STEP to "path" as FORMAT (options)``."""

    step: Expr
    path: str
    format: str
    options: tuple[Arg, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Budget:
    """``budget calls=..., tokens=..., usd=...``."""

    args: tuple[Arg, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Use:
    """``use "path/other.synth" as alias`` — import another recipe's declarations."""

    path: str
    alias: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    args: tuple[Arg, ...] = ()
    """``use "x.synth" as rt (max_tokens=80, teacher=embedded())``: params and models set at the use site."""


@dataclass(frozen=True)
class Feed:
    """``feed POOL from STEP`` inside a loop: the new rows of STEP join POOL for the next round."""

    pool: str
    step: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Loop:
    """``loop NAME(rounds=N, until=expr) { steps; feed POOL from STEP }`` — repeat steps; only new rows feed back."""

    name: str
    args: tuple[Arg, ...]
    body: tuple[Decl, ...]
    doc: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Decl = Union[Param, Model, Source, Template, Step, Export, Budget, Use, Loop]


@dataclass(frozen=True)
class Recipe:
    """A whole ``.synth`` file."""

    path: str
    header: Header | None
    decls: tuple[Decl, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def name(self) -> str:
        if self.header is not None:
            return self.header.name
        from pathlib import Path

        return Path(self.path).stem
