"""``synth plan RECIPE``: steps in order, fields in and out, models, estimated calls, tokens and cost."""

from __future__ import annotations

import argparse

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
    from synthlang.api import check_file, plan
    from synthlang.cli.run import parse_params
    from synthlang.plan.estimate import to_json, to_mermaid
    from synthlang.plan.train import describe as describe_train

    program = check_file(args.recipe, parse_params(args.param), getattr(args, "model", None),
                         allow_outside=args.allow_outside)
    p = plan(program)
    if args.format == "json":
        print(to_json(p), end="")
        return 0
    if args.format == "mermaid":
        print(to_mermaid(p), end="")
        return 0
    model_rows = [(k, m["engine"], m["model_id"] or "(default)", "yes" if m["used"] else "no",
                   "/".join(f"${x:g}" for x in m["price_per_mtok"]) if m["price_per_mtok"] else "") for k, m in p["models"].items()]
    print_table(("model", "engine", "model id", "used", "USD / Mtok in/out"), model_rows, title=f"plan · {p['recipe']}")
    srcs = [(s["name"], s["loader"], s["path"] or "", "?" if s["rows"] is None else s["rows"], ", ".join(s["fields"]))
            for s in p["sources"]]
    print_table(("source", "loader", "path", "rows", "fields"), srcs)

    def num(v: object) -> object:
        return "?" if v is None else v

    rows = [(s["name"] + (f" [loop {s['loop']['name']} ×{s['loop']['rounds']}]" if s.get("loop") else ""), s["operator"] + (f" ({s['answer_type']})" if s.get("answer_type") else ""), s["input"] or "",
             f"{s['model']} = {s['engine']}" + _sampling_text(s.get("sampling")) if s.get("model") else "", num(s["rows"]), num(s["calls"]), s["tokens"],
             "" if s["usd"] is None else f"${s['usd']:.4f}", ", ".join(s["fields_in"]), ", ".join(s["fields_added"]))
            for s in p["steps"]]
    print_table(("step", "operator", "input", "model = engine", "rows", "calls", "tokens", "USD", "fields in", "adds"), rows)
    t = p["total"]
    cost = f", ~${t['usd']:.4f}" if t["usd"] is not None else " (no price declared: cost unknown)"
    more = "" if t["complete"] else " (some source row counts are unknown)"
    console.print(f"total: {t['calls']} calls, ~{t['tokens']} tokens (upper bound){cost}{more}")
    if p["budget"]:
        console.print("budget: " + ", ".join(f"{k}={v}" for k, v in p["budget"].items()))
    for line in describe_train(program):
        console.print(line, markup=False)
    from synthlang.plan.context import describe as describe_context

    for line in describe_context(p.get("over_context") or []):
        console.print("warning: " + line, markup=False)
    return 0


def _sampling_text(sp: dict | None) -> str:
    """lang (issue 10): the step's effective sampling, e.g. `` T=0.8 top_p=0.9 max=96``."""
    if not sp:
        return ""
    out = [f"T={sp['temperature']:g}" if "temperature" in sp else "", f"top_p={sp['top_p']:g}" if sp.get("top_p", 1.0) != 1.0 else "",
           f"max={sp['max_tokens']}" if "max_tokens" in sp else ""]
    return " " + " ".join(x for x in out if x)
