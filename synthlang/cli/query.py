"""``synth query "SQL"``: read-only SQL over the store, printed as a table."""

from __future__ import annotations

import argparse
import json

from synthlang.cli.common import add_db, console, db_path, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sql", help="the SQL (tables: runs, steps, calls, rows, lineage, run_rows, exports; views step_<name>)")
    add_db(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--width", type=int, default=60, help="truncate cells to this many characters (table format)")


def main(args: argparse.Namespace) -> int:
    from synthlang.store import Store

    with Store(db_path(args), read_only=True) as store:
        cols, rows = store.query(args.sql)
    if args.format == "json":
        for r in rows:
            print(json.dumps(dict(zip(cols, r, strict=True)), default=str, ensure_ascii=False))
    elif args.format == "csv":
        import csv
        import sys

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        print_table(cols, rows, width=args.width)
        console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")
    return 0
