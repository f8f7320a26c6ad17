"""``synth query "SQL"``: read-only SQL over the store, printed as a table (stored text shown literally)."""

from __future__ import annotations

import argparse
import json

from synthlang.cli.common import add_db, console, db_path, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sql", help="the SQL (tables: runs, steps, calls, rows, lineage, run_rows, exports; views step_<name>)")
    add_db(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--width", type=int, default=60, help="truncate cells to this many characters (table format)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="table format: print at most N rows (default 200 on a terminal, all otherwise; 0 = all)")


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

        # "\n", not csv's default "\r\n": `$(synth query ... | tail -1)` must not carry a carriage return.
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
    else:
        cap = args.limit if args.limit is not None else (200 if console.is_terminal else 0)
        shown = rows[:cap] if cap and len(rows) > cap else rows
        print_table(cols, shown, width=args.width)
        more = f" ({len(rows) - len(shown)} more not shown; --limit 0 shows all, --format csv/json prints all)" \
            if len(shown) < len(rows) else ""
        console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}{more}", markup=False)
    return 0
