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
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: one document {recipes: [{path, ok, diagnostics: [{code, message, path, line, col, hint, data}]}]}")


def main(args: argparse.Namespace) -> int:
    from synthlang.api import check_file
    from synthlang.cli.main import err_console
    from synthlang.cli.run import parse_params
    from synthlang.plan.train import describe as describe_train

    bad = 0
    report = []
    for path in args.recipes:
        try:
            program = check_file(path, parse_params(args.param), allow_outside=args.allow_outside)
            trains = list(describe_train(program))   # external commands are shown, never hidden
            report.append({"path": path, "ok": True, "diagnostics": [], "train_commands": trains})
            if args.format == "text":
                console.print(f"{path}: ok", markup=False)
                for line in trains:
                    console.print(f"{path}: {line}", markup=False)
        except SynthError as exc:
            bad += 1
            report.append({"path": path, "ok": False, "diagnostics": diagnostics(exc)})
            if args.format == "text":
                err_console.print(exc.render(), markup=False)
    if args.format == "json":
        import json
        import sys

        sys.stdout.write(json.dumps({"version": 1, "recipes": report}, indent=2, ensure_ascii=False, default=str) + "\n")
    return 1 if bad else 0


def diagnostics(exc: SynthError) -> list[dict]:
    """lang (issue 10): structured diagnostics of a failed check, for ``--format json`` (editors, tools)."""
    from synthlang.errors import Diagnostics, SourceError

    if isinstance(exc, Diagnostics):
        return [e.as_dict() for e in exc.errors]
    if isinstance(exc, SourceError):
        return [exc.as_dict()]
    return [{"code": type(exc).__name__, "message": str(exc), "path": None, "line": None, "col": None, "hint": None}]
