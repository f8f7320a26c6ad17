"""``synth push STEP --repo ORG/NAME``: a step's rows as Parquet shards, the dataset card and the recipe bundle, to a
dataset repository on the Hugging Face Hub (token from HF_TOKEN or the HF login; HF_ENDPOINT for another Hub)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from synthlang.cli.common import add_db, console, db_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from synthlang.outputs.shapes import FORMATS

    p.add_argument("step", help="the step, source or loop whose rows to push")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the dataset repository (created if missing)")
    p.add_argument("--format", choices=[f for f in FORMATS if f not in ("jsonl", "parquet")], default="hf",
                   help="hf: the rows as they are (default); or a training format")
    p.add_argument("--map", action="append", default=[], metavar="SLOT=FIELD", help="as in synth export")
    p.add_argument("--system", default=None, metavar="TEXT", help="as in synth export")
    p.add_argument("--fields", default=None, metavar="A,B", help="as in synth export")
    p.add_argument("--split", default=None, metavar="NAME=FRAC,...", help="as in synth export")
    p.add_argument("--stratify", default=None, metavar="FIELD", help="as in synth export")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--license", default=None)
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--run", default=None, help="run id (default: the latest run that has the step)")
    add_db(p)


def main(args: argparse.Namespace) -> int:
    from synthlang.cli.export import options_from_args
    from synthlang.outputs.push import push
    from synthlang.store import Store

    args.no_card = False
    opts = options_from_args(args)
    with Store(db_path(args), read_only=True) as store:
        res = push(store, args.step, args.repo, args.format, opts, run_id=args.run, private=args.private or None)
    for w in res.export.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}")
    console.print(f"pushed {res.export.rows} rows of '{escape(args.step)}' (run {res.export.run_id}) to {escape(res.url)}: "
                  f"{len(res.files)} files (data, README.md, recipe bundle)")
    return 0 if res.export.rows else 1
