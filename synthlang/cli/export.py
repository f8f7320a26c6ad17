"""``synth export STEP --to PATH``: write a step's rows (latest run) as JSONL, a HF dataset or Parquet."""

from __future__ import annotations

import argparse

from synthlang.cli.common import add_db, console, db_path
from synthlang.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("step", help="the step (or source) whose rows to export")
    p.add_argument("--to", required=True, metavar="PATH", help="output file (jsonl, parquet) or folder (hf)")
    p.add_argument("--format", choices=("jsonl", "hf", "parquet"), default=None,
                   help="default: from the extension (.jsonl, .parquet), else hf")
    p.add_argument("--run", default=None, help="run id (default: the latest run that has the step)")
    p.add_argument("--include-failed", action="store_true", help="also export rows whose status is failed")
    add_db(p)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from synthlang.execute.export import export_rows
    from synthlang.store import Store

    fmt = args.format or ("jsonl" if args.to.endswith(".jsonl") else "parquet" if args.to.endswith(".parquet") else "hf")
    with Store(db_path(args), read_only=True) as store:
        run = args.run
        if run is None:
            _, rows = store.query("SELECT rr.run_id FROM run_rows rr JOIN runs r USING (run_id) WHERE rr.step = ? "
                                  "ORDER BY r.started_at DESC LIMIT 1", [args.step])
            if not rows:
                raise ConfigError(f"no run has a step '{args.step}' in {store.path}")
            run = rows[0][0]
        data = store.run_rows(run, args.step, None if args.include_failed else "ok")
    n = export_rows(data, Path(args.to), fmt, {})
    console.print(f"exported {n} rows of '{args.step}' (run {run}) to {args.to} ({fmt})")
    return 0
