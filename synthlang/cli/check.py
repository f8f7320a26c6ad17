"""``synth check RECIPE...``: exit 0 when clean, 1 with diagnostics."""

from __future__ import annotations

import argparse

from synthlang.cli.common import console
from synthlang.errors import SynthError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipes", nargs="+", help=".synth files")
    p.add_argument("--allow-outside", action="store_true",
                   help="let the recipe read and write files outside its project directory")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")


def main(args: argparse.Namespace) -> int:
    from synthlang.api import check_file
    from synthlang.cli.main import err_console
    from synthlang.cli.run import parse_params
    from synthlang.plan.train import describe as describe_train

    bad = 0
    for path in args.recipes:
        try:
            program = check_file(path, parse_params(args.param), allow_outside=args.allow_outside)
            console.print(f"{path}: ok", markup=False)
            for line in describe_train(program):   # external commands are shown, never hidden
                console.print(f"{path}: {line}", markup=False)
        except SynthError as exc:
            bad += 1
            err_console.print(exc.render(), markup=False)
    return 1 if bad else 0
