"""``synth``: the command line. One module per verb, each thin over the Python API.

Errors a user can fix print as ``path:line:col: error: ...`` (or name the
file, row and field) with exit status 1 — never a traceback. Set
``SYNTH_DEBUG=1`` to see tracebacks of internal errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from rich.console import Console

from synthlang import __version__
from synthlang.errors import SynthError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _verbs() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]]:
    return {
        "run": ("synthlang.cli.run", lambda p: None, "run a recipe: generate rows, store calls and lineage"),
        "check": ("synthlang.cli.check", lambda p: None, "check recipes for errors without running them"),
        "plan": ("synthlang.cli.plan", lambda p: None, "show the graph and estimated calls and tokens"),
        "fmt": ("synthlang.cli.fmt", lambda p: None, "format recipes canonically, keeping comments"),
        "query": ("synthlang.cli.query", lambda p: None, "run read-only SQL on the store"),
        "lineage": ("synthlang.cli.lineage", lambda p: None, "print a row's ancestry as a tree"),
        "export": ("synthlang.cli.export", lambda p: None,
                   "export a step's rows: JSONL, Parquet, a HF dataset, or chat/preference/kto/... training formats"),
        "push": ("synthlang.cli.push", lambda p: None,
                 "upload a step's rows, dataset card and recipe bundle to a Hugging Face dataset repository"),
        "runs": ("synthlang.cli.runs", lambda p: None, "list the runs of a store"),
        "show": ("synthlang.cli.show", lambda p: None, "print a run's summary: funnel, failures per reason, cost"),
        "report": ("synthlang.cli.report", lambda p: None, "write a run's report as one self-contained HTML page"),
        "init": ("synthlang.cli.init", lambda p: None, "start a project with a starter recipe"),
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""
    import importlib

    parser = argparse.ArgumentParser(prog="synth", description="synthlang: declarative distillation datasets")
    parser.add_argument("--version", action="version", version=f"synthlang {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (mod, _, help_) in _verbs().items():
        p = sub.add_parser(name, help=help_, description=help_)
        m = importlib.import_module(mod)
        m.add_arguments(p)
        p.set_defaults(func=m.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``synth`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    args.argv = ["synth", *argv]
    try:
        return int(args.func(args) or 0)
    except SynthError as exc:
        err_console.print(exc.render(), markup=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a message
        if os.environ.get("SYNTH_DEBUG"):
            traceback.print_exc()
        err_console.print(f"internal error: {type(exc).__name__}: {exc}\n"
                          "This is a bug in synthlang. Re-run with SYNTH_DEBUG=1 for the traceback.", markup=False)
        return 3


if __name__ == "__main__":
    sys.exit(main())
