"""The public Python API; every CLI verb is a thin layer over these functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthlang.plan.program import ModelSpec, Program
from synthlang.syntax import parse, parse_file


def check_file(path: str | Path, params: dict[str, str] | None = None, models: list[str] | None = None,
               allow_outside: bool = False) -> Program:
    """Parse and check a recipe file.

    Args:
        path: the ``.synth`` file.
        params: ``--param`` overrides (strings, converted to each param's type).
        models: ``--model`` overrides, each ``NAME=ENGINE(...)``; each replaces the recipe's model NAME.
        allow_outside: let source, template and export paths leave the project directory.

    Raises:
        SynthSyntaxError: the first syntax error.
        Diagnostics: all semantic errors.
        ConfigError: unreadable file or bad ``--param``.
    """
    from synthlang.check import check

    recipe = parse_file(path)
    if models:
        recipe = override_models(recipe, models)
    return check(recipe, params, Path(path).resolve().parent, allow_outside=allow_outside)


def override_models(recipe: Any, models: list[str]) -> Any:
    """Replace model declarations of a parsed recipe with ``NAME=ENGINE(...)`` texts (``synth run --model``).

    Raises:
        SynthSyntaxError: a text that is not ``NAME=ENGINE(...)``.
        ConfigError: a NAME the recipe does not declare.
    """
    from dataclasses import replace

    from synthlang import ast
    from synthlang.errors import ConfigError
    from synthlang.syntax import parse_model_decl

    decls = list(recipe.decls)
    names = {d.name: i for i, d in enumerate(decls) if isinstance(d, ast.Model)}
    uses = {d.alias: i for i, d in enumerate(decls) if isinstance(d, ast.Use)}
    for text in models:
        new = parse_model_decl(text)
        if "." in new.name:  # rt.teacher: set at the use site of `rt` (check/imports.py keeps its sampling)
            alias, _, member = new.name.partition(".")
            if alias not in uses:
                raise ConfigError(f"--model {text}: the recipe imports nothing as '{alias}'"
                                  + (f"; imports: {', '.join(uses)}" if uses else ""))
            use = decls[uses[alias]]
            decls[uses[alias]] = replace(use, args=tuple(a for a in use.args if a.name != member)
                                         + (ast.Arg(member, new.engine, new.engine.span),))
            continue
        if new.name not in names:
            import difflib

            close = difflib.get_close_matches(new.name, sorted(names), n=1)
            raise ConfigError(f"--model {text}: the recipe declares no model '{new.name}'"
                              + (f"; did you mean '{close[0]}'?" if close else f"; models: {', '.join(names) or 'none'}"))
        old = decls[names[new.name]]
        decls[names[new.name]] = replace(new, engine=keep_sampling(old.engine, new.engine), doc=old.doc, span=old.span)
    return replace(recipe, decls=tuple(decls))


from synthlang.check.imports import keep_sampling  # noqa: E402  (re-exported: --model keeps the recipe's sampling)


def plan(program: Program) -> dict[str, Any]:
    """The plan of a checked program as a JSON-able dict (see :func:`synthlang.plan.estimate.estimate`).

    Sources are read (at most ``limit`` rows) to count rows; ``sql`` sources
    count on their database when it exists, else their rows are ``None``.
    ``over_context`` (present only when non-empty) lists steps whose rows' prompts plus ``max_tokens`` exceed the
    model's declared context (see :mod:`synthlang.plan.context`).
    """
    from synthlang.execute.sources import load_source, source_stats
    from synthlang.plan.context import over_context
    from synthlang.plan.estimate import estimate

    p = estimate(program, source_stats)
    # prompts over a model's declared context, before any call (plan/context.py)
    over = over_context(program, lambda spec: load_source(spec, program.params))
    if over:   # only when there is something to say: plans without it are unchanged
        p["over_context"] = over
    return p


def run(program: Program, db: str | Path | None = None, progress: Any = None,
        engine_factory: Callable[[ModelSpec], Any] | None = None, argv: list[str] | None = None,
        budget: Any = None, retry_failed: bool = False, allow_train: list[str] | None = None,
        on: str | None = None) -> Any:
    """Run a checked program, writing everything to the DuckDB file ``db``.

    Args:
        budget: a :class:`synthlang.execute.budget.Budget` (default: the recipe's ``budget``).
        retry_failed: re-issue the calls of rows stored as failed.
        allow_train: recipe files whose loops' ``train=`` commands may run, as they are now
            (see :mod:`synthlang.plan.train`).
        on: where inference runs, as ``synth run --on``: ``local``, ``ray`` or ``ray://ADDRESS``
            (default: ``[executor]`` in ``synth.toml`` beside the recipe, else local; see
            docs/scale.md). Ignored when ``engine_factory`` is given.

    Raises:
        ConfigError: a ``train=`` command that was not allowed (before any call); a bad ``on`` or
            ``synth.toml``, or Ray missing or unreachable.
        BudgetExceeded: the budget stopped the run (its state is saved).
        KeyboardInterrupt: SIGINT/SIGTERM stopped the run (its state is saved).

    Returns:
        A :class:`synthlang.execute.runner.RunSummary`.
    """
    from synthlang.execute.cluster import engine_factory as cluster_factory
    from synthlang.execute.cluster import load_config
    from synthlang.execute.runner import run_program
    from synthlang.plan import train
    from synthlang.store import DEFAULT_DB, Store

    if allow_train:
        train.allow(allow_train)
    train.require_allowed(program)
    if engine_factory is None:
        engine_factory = cluster_factory(program, load_config(program.base_dir, on))
    with Store(db or DEFAULT_DB) as store:
        return run_program(program, store, progress, engine_factory, argv, budget, retry_failed)


__all__ = ["check_file", "parse", "parse_file", "plan", "run"]
