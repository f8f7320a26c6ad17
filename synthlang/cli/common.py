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


def cell(v: Any, width: int = 60) -> str:
    if v is None:
        return "NULL"
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else str(v)
    s = s.replace("\n", "⏎ ")
    return s if len(s) <= width else s[: width - 1] + "…"


def print_table(cols: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, width: int = 60) -> None:
    t = Table(title=title, show_lines=False)
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(cell(v, width) for v in r))
    console.print(t)
