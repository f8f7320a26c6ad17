"""``synth plan RECIPE``: steps in order, fields in and out, models, estimated calls."""

from __future__ import annotations

import argparse
import json

from synthlang.cli.common import console, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe")
    p.add_argument("--allow-outside", action="store_true",
                   help="let the recipe read and write files outside its project directory")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--format", choices=("text", "json", "mermaid"), default="text")
    from synthlang.cli.run import add_model_flag

    add_model_flag(p)


def main(args: argparse.Namespace) -> int:
    from synthlang.api import check_file
    from synthlang.cli.run import parse_params
    from synthlang.plan.estimate import estimate, to_mermaid

    prog = check_file(args.recipe, parse_params(args.param), getattr(args, "model", None),
                      allow_outside=args.allow_outside)
    plan = estimate(prog)
    if args.format == "json":
        print(json.dumps(plan, indent=2, ensure_ascii=False))
    elif args.format == "mermaid":
        print(to_mermaid(plan))
    else:
        rows = [(s["name"], s["operator"], s["input"] or "",
                 f"{s['model']} = {s['engine']}" if s.get("model") else "", s["rows"], s["calls"], s["tokens"],
                 ", ".join(s["fields_added"])) for s in plan["steps"]]
        print_table(("step", "operator", "input", "model", "rows", "calls", "tokens", "adds"), rows,
                    title=f"plan · {plan['recipe']}")
        console.print(f"total: {plan['total']['calls']} calls, ~{plan['total']['tokens']} tokens (upper bound)")
    return 0
