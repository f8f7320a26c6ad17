"""``synth runs``: the runs of a store, newest first."""

from __future__ import annotations

import argparse

from synthlang.cli.common import add_db, console, db_path, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_db(p)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show the N newest runs (0 = all)")


def main(args: argparse.Namespace) -> int:
    from synthlang.store import Store

    sql = ("SELECT r.run_id, r.recipe, r.status, strftime(r.started_at, '%Y-%m-%d %H:%M:%S') AS started, "
           "round(r.wall_s, 1) AS seconds, r.calls_made AS calls, r.calls_cached AS cached, "
           "r.prompt_tokens + r.completion_tokens AS tokens, "
           "(SELECT count(*) FROM run_rows rr JOIN rows w USING (row_id) WHERE rr.run_id = r.run_id AND w.status = 'failed') AS failed, "
           "(SELECT string_agg(e.step || ' -> ' || e.path, ', ') FROM exports e WHERE e.run_id = r.run_id) AS exports "
           "FROM runs r ORDER BY r.started_at DESC" + (f" LIMIT {int(args.limit)}" if args.limit else ""))
    with Store(db_path(args), read_only=True) as store:
        cols, rows = store.query(sql)
    print_table(cols, rows, width=60)
    console.print(f"{len(rows)} run{'s' if len(rows) != 1 else ''} in {db_path(args)} (details: synth show RUN)", markup=False)
    return 0
