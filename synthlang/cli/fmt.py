"""``synth fmt RECIPE...``: canonical formatting that keeps comments.

By default the formatted text goes to stdout (one file) like ``gofmt``;
``-w`` rewrites the files in place, ``--check`` lists files that are not
formatted and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synthlang.errors import ConfigError, SynthError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipes", nargs="+", help=".synth files")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    g.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted; change nothing")


def main(args: argparse.Namespace) -> int:
    from synthlang.cli.main import err_console
    from synthlang.syntax.format import format_text
    from synthlang.syntax.parser import read_recipe_text

    status = 0
    for path in args.recipes:
        try:
            text = read_recipe_text(path)
            out = format_text(text, path)
        except SynthError as exc:
            err_console.print(exc.render(), markup=False)
            status = 1
            continue
        if args.check:
            if out != text:
                print(f"{path}: not formatted")
                status = 1
        elif args.write:
            if out != text:
                try:
                    Path(path).write_text(out, encoding="utf-8")
                except OSError as exc:
                    raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
                print(f"{path}: formatted")
        else:
            sys.stdout.write(out)
    return status
