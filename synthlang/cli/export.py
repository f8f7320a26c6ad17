"""``synth export STEP --to PATH``: write a step's rows as JSONL, Parquet, a HF dataset, or a training format.

The same code path as a recipe's ``export`` (:func:`synthlang.execute.export.export_step`): rows come from
the store in input order; a loop's name exports the rows it fed back; a fed pool includes them.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from synthlang.cli.common import add_db, console, db_flag, db_path
from synthlang.errors import ConfigError, StoreError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from synthlang.outputs.shapes import FORMATS

    p.add_argument("step", help="the step, source or loop whose rows to export")
    p.add_argument("--to", required=True, metavar="PATH", help="output file (.jsonl, .parquet) or folder (HF dataset)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="jsonl/parquet/hf: the rows as they are; chat, sharegpt, alpaca, preference, kto, views: training "
                        "examples (default: from the extension, else hf)")
    p.add_argument("--map", action="append", default=[], metavar="SLOT=FIELD",
                   help="where a training format's part comes from, e.g. --map user=question --map assistant=reasoning "
                        "(chat/sharegpt: user, assistant; alpaca: instruction, input, output; preference: prompt, chosen, "
                        "rejected or completion + rank_by; kto: prompt, completion, label); omitted ones are guessed")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message for chat/sharegpt")
    p.add_argument("--fields", default=None, metavar="A,B", help="plain formats: only these fields, in this order")
    p.add_argument("--split", default=None, metavar="NAME=FRAC,...",
                   help="split by seed ancestor, e.g. train=0.9,test=0.1 (a HF folder gets a DatasetDict)")
    p.add_argument("--stratify", default=None, metavar="FIELD", help="with --split: cut each value of FIELD by the fractions")
    p.add_argument("--seed", type=int, default=0, help="with --split: which seed groups land where")
    p.add_argument("--license", default=None, help="the card's licence (default: from the sources)")
    p.add_argument("--no-card", action="store_true", help="no README.md dataset card in a HF folder")
    p.add_argument("--run", default=None, help="run id (default: the latest run that has the step)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="the recipe whose step to export (needed when several recipes in the store have that step)")
    p.add_argument("--include-failed", action="store_true", help="also export rows whose status is failed (plain formats)")
    add_db(p)


def options_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The export options the flags give (the same dict a recipe's export options check into)."""
    from synthlang.outputs.shapes import parse_split

    opts: dict[str, object] = {}
    for item in args.map:
        slot, eq, fld = item.partition("=")
        if not eq or not slot or not fld:
            raise ConfigError(f"--map {item}: expected SLOT=FIELD, e.g. --map user=question")
        opts[slot.strip()] = {"field": fld.strip()}
    if args.system is not None:
        opts["system"] = {"text": args.system}
    if args.fields:
        opts["fields"] = [f.strip() for f in args.fields.split(",") if f.strip()]
    if args.split:
        opts["split"] = parse_split(args.split)
    if args.stratify:
        if not args.split:
            raise ConfigError("--stratify needs --split")
        opts["stratify"] = args.stratify
    if args.split:
        opts["seed"] = args.seed
    if args.license:
        opts["license"] = args.license
    if args.no_card:
        opts["card"] = False
    return opts


def main(args: argparse.Namespace) -> int:
    from synthlang.execute.export import container_for, export_step
    from synthlang.outputs.shapes import PLAIN, SLOTS, options_for
    from synthlang.store import Store

    fmt = args.format or ("jsonl" if args.to.endswith(".jsonl") else "parquet" if args.to.endswith(".parquet") else "hf")
    opts = options_from_args(args)
    for k in opts:
        if k not in options_for(fmt) and k in {s for v in SLOTS.values() for s in v}:
            raise ConfigError(f"--map {k}=...: format {fmt} has no part '{k}'"
                              + (f"; its parts: {', '.join(SLOTS[fmt])}" if SLOTS.get(fmt) else ""))
    if fmt in PLAIN and args.system:
        raise ConfigError("--system needs a chat or sharegpt format")
    with Store(db_path(args), read_only=True) as store:
        run = args.run
        if run is None:
            try:   # issue 9: a step name two recipes share is an error naming them (--recipe picks one)
                run = store.step_run(args.step, getattr(args, "recipe", None))
            except StoreError as exc:
                if "ambiguous" in str(exc) or getattr(args, "recipe", None):
                    raise ConfigError(str(exc)) from None
                run = None   # a loop's name, or no such step: export_step finds it or says what exists
        res = export_step(store, args.step, args.to, fmt, opts, run_id=run, include_failed=args.include_failed)
    for w in res.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}")
    for n in res.notes:
        console.print(escape(n))
    for k, (g, n) in res.splits.items():
        console.print(f"split {escape(k)}: {n} examples from {g} seed groups")
    kind = container_for(args.to, fmt)
    console.print(f"exported {res.rows} {'rows' if fmt in PLAIN else fmt + ' examples'} of '{escape(args.step)}' "
                  f"(run {res.run_id}) to {escape(args.to)} ({kind}{'' if fmt in PLAIN else ', ' + fmt})"
                  + (f" with a dataset card {escape(str(res.card))}" if res.card else ""))
    if res.rows == 0:
        console.print(f"[red]error[/]: nothing exported (try: synth show {res.run_id}{db_flag(args)})")
        return 1
    return 0
