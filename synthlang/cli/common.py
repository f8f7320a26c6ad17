"""Helpers shared by the CLI verbs: the --db flag and table printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Not a terminal (CI logs, pipes): use a wide console rather than rich's 80 columns.
console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="PATH", help="DuckDB file (default: .synth/synth.duckdb)")


def db_path(args: argparse.Namespace) -> str:
    from synthlang.store import DEFAULT_DB

    return args.db or str(DEFAULT_DB)


def db_flag(args: argparse.Namespace) -> str:
    """`` --db PATH`` when the command was given one (for the commands a verb suggests), else ``""``."""
    import shlex

    db = getattr(args, "db", None)
    return f" --db {shlex.quote(db)}" if db else ""


def cell(v: Any, width: int = 60) -> str:
    if v is None:
        return "NULL"
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else str(v)
    s = s.replace("\n", "⏎ ")
    return s if len(s) <= width else s[: width - 1] + "…"


def print_table(cols: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, width: int = 60) -> None:
    """Print a table; stored text is shown literally (``[/INST]`` is not rich markup)."""
    from rich.text import Text

    t = Table(title=Text(title) if title else None, show_lines=False)
    for c in cols:
        t.add_column(Text(str(c)), overflow="fold")
    for r in rows:
        t.add_row(*(Text(cell(v, width)) for v in r))
    console.print(t)
