"""The public Python API; every CLI verb is a thin layer over these functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthlang.plan.program import ModelSpec, Program
from synthlang.syntax import parse, parse_file


def check_file(path: str | Path, params: dict[str, str] | None = None, allow_outside: bool = False) -> Program:
    """Parse and check a recipe file.

    Args:
        path: the ``.synth`` file.
        params: ``--param`` overrides (strings, converted to each param's type).
        allow_outside: let source, template and export paths leave the project directory.

    Raises:
        SynthSyntaxError: the first syntax error.
        Diagnostics: all semantic errors.
        ConfigError: unreadable file or bad ``--param``.
    """
    from synthlang.check import check

    return check(parse_file(path), params, allow_outside=allow_outside)


def run(program: Program, db: str | Path | None = None, progress: Any = None,
        engine_factory: Callable[[ModelSpec], Any] | None = None, argv: list[str] | None = None,
        budget: Any = None, retry_failed: bool = False) -> Any:
    """Run a checked program, writing everything to the DuckDB file ``db``.

    Args:
        budget: a :class:`synthlang.execute.budget.Budget` (default: the recipe's ``budget``).
        retry_failed: re-issue the calls of rows stored as failed.

    Raises:
        BudgetExceeded: the budget stopped the run (its state is saved).
        KeyboardInterrupt: SIGINT/SIGTERM stopped the run (its state is saved).

    Returns:
        A :class:`synthlang.execute.runner.RunSummary`.
    """
    from synthlang.execute.runner import run_program
    from synthlang.store import DEFAULT_DB, Store

    with Store(db or DEFAULT_DB) as store:
        return run_program(program, store, progress, engine_factory, argv, budget, retry_failed)


__all__ = ["check_file", "parse", "parse_file", "run"]
