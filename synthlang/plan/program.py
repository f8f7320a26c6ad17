"""The resolved program: what the checker produces and the runner executes.

A :class:`Program` is a recipe with every name resolved, templates loaded,
option values evaluated, steps in dependency order and a content fingerprint
for each source and step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from synthlang import ast
from synthlang.engines.base import SamplingParams
from synthlang.errors import Span
from synthlang.ops.base import Operator


@dataclass(frozen=True)
class ModelSpec:
    """A resolved ``model`` declaration.

    Attributes:
        name: the declaration's name (``teacher``).
        kind: engine kind.
        model_id: model id ('' = the engine's default).
        sampling: sampling defaults.
        options: engine options that never change outputs (threads, base_url, concurrency, ...).
        key_options: engine options that do change outputs (``revision``).
    """

    name: str
    kind: str
    model_id: str
    sampling: SamplingParams
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    key_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    span: Span | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.kind}({self.model_id!r})" if self.model_id else f"{self.kind}()"


@dataclass(frozen=True)
class SourceSpec:
    """A resolved ``source``: where seed rows come from and their fields."""

    name: str
    loader: str
    path: Path | None
    args: dict[str, Any]
    fields: dict[str, str]
    derived: tuple[tuple[str, ast.Expr], ...]
    fingerprint: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StepSpec:
    """A resolved ``step``.

    Attributes:
        name: the step's name.
        op: the operator.
        input: the name of the source or step whose rows it reads.
        opts: option values: plain values, template texts (``prompt``),
            model names (``model``), field names, expressions.
        rename: operator output name → field name in the rows.
        fields_in: fields available to it (name → type).
        fields_out: fields of its output rows.
        fingerprint: content hash of everything that decides its rows.
        model: the resolved model for LLM operators.
    """

    name: str
    op: Operator
    input: str
    opts: dict[str, Any]
    rename: dict[str, str]
    fields_in: dict[str, str]
    fields_out: dict[str, str]
    fingerprint: str
    model: ModelSpec | None = None
    span: Span | None = field(default=None, compare=False, repr=False)
    #: the effective sampling params (the model's, overridden by the step's ``temperature``/``top_p``/``max_tokens``)
    #: (not an init field: ``dataclasses.replace`` with new options or a new model resolves them again)
    sampling: SamplingParams | None = field(default=None, compare=False, init=False)
    #: USD per million prompt / completion tokens (0 when the model declares no price)
    price: tuple[float, float] = field(default=(0.0, 0.0), compare=False, init=False)

    def __post_init__(self) -> None:
        # resolved once here; the runner, the budget and the engines read them from the step
        if self.model is not None:
            over = {k: self.opts[k] for k in ("temperature", "top_p", "max_tokens") if self.opts.get(k) is not None}
            object.__setattr__(self, "sampling", replace(self.model.sampling, **over) if over else self.model.sampling)
            o = self.model.options
            object.__setattr__(self, "price", (float(o.get("price_input", o.get("price_in")) or 0),
                                               float(o.get("price_output", o.get("price_out")) or 0)))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as plain data: the operator by name (looked up in the registry on load), never its functions."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "op" and f.init}
        return (_step_from_plain, (self.op.name, state))


def _step_from_plain(op_name: str, state: dict[str, Any]) -> StepSpec:
    """Rebuild a pickled :class:`StepSpec`: its operator from the registry, re-selected by its options."""
    from synthlang.ops import OPERATORS

    op = OPERATORS[op_name]
    if op.select is not None:
        op = op.select(state["opts"])
    return StepSpec(op=op, **state)


@dataclass(frozen=True)
class ExportSpec:
    """A resolved ``export``."""

    step: str
    path: Path
    format: str
    options: dict[str, Any]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LoopSpec:
    """A resolved ``loop NAME(rounds=N, until=EXPR, train="cmd") { steps; feed POOL from STEP }``.

    Attributes:
        name: the loop's name; after the loop it names every row fed back, all rounds.
        rounds: the most rounds to run.
        until: stop condition over ``round``, ``new_rows``, ``pool_rows``, checked after each round.
        train: an external command run between rounds, or ``None``.
        steps: the body's steps in dependency order.
        feeds: ``(pool, step)`` pairs: the new rows of ``step`` join ``pool`` for the next round.
        position: index into :attr:`Program.steps` before which the loop runs.
        fingerprint: content hash of the loop's body.
    """

    name: str
    rounds: int
    until: ast.Expr | None
    train: str | None
    steps: list[StepSpec]
    feeds: list[tuple[str, str]]
    position: int
    fingerprint: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass
class Program:
    """A checked recipe, ready to plan or run."""

    recipe: ast.Recipe
    name: str
    description: str | None
    base_dir: Path
    params: dict[str, Any]
    models: dict[str, ModelSpec]
    sources: dict[str, SourceSpec]
    templates: dict[str, str]
    steps: list[StepSpec]
    exports: list[ExportSpec]
    budget: dict[str, Any]
    fingerprint: str = ""
    loops: list[LoopSpec] = field(default_factory=list)

    def node_fields(self, name: str) -> dict[str, str]:
        if name in self.sources:
            s = self.sources[name]
            return {**s.fields, **{n: "any" for n, _ in s.derived}}
        for st in self.steps + [b for lp in self.loops for b in lp.steps]:
            if st.name == name:
                return st.fields_out
        for lp in self.loops:
            if lp.name == name:
                return self.node_fields(lp.feeds[0][0])
        raise KeyError(name)
