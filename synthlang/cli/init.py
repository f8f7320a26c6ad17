"""``synth init [DIR]``: start a project with a starter recipe, a prompt template and sample seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthlang.cli.common import console
from synthlang.errors import ConfigError

RECIPE = '''# A starter recipe: answer each seed question twice, then verify against gold.
recipe {name} "Answer augmentation on a few seed questions"

param limit: int = 5

model teacher = embedded(temperature=0.7, max_tokens=256)

source seeds = jsonl("data/seeds.jsonl", limit=limit) {{
  question: str
  answer: str
  gold = final_number(answer)
}}

template solve = file("templates/solve.j2")

step answered = answer(seeds, model=teacher, prompt=solve, n=2)
step verified = verify(answered, field=final_answer, gold=gold)

export verified to "out/{name}.jsonl" as jsonl
'''

TEMPLATE = """Solve the problem step by step. Finish with a last line of the form "The answer is N."

Problem: {{ question }}
"""

SEEDS = [
    {"question": "A shop sells pencils at 3 for $1. How many dollars do 12 pencils cost?",
     "answer": "12 / 3 = 4 groups, so 4 * 1 = 4 dollars.\n#### 4"},
    {"question": "Tom has 15 apples and gives away 6. How many apples does he have left?",
     "answer": "15 - 6 = 9\n#### 9"},
    {"question": "A train travels 60 km per hour for 3 hours. How far does it go?",
     "answer": "60 * 3 = 180\n#### 180"},
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", help="project folder (created if missing)")
    p.add_argument("--name", default="starter", help="recipe name")


def main(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    recipe = root / f"{args.name}.synth"
    if recipe.exists():
        raise ConfigError(f"{recipe} already exists; choose another --name or folder")
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE.format(name=args.name), encoding="utf-8")
    tpl = root / "templates" / "solve.j2"
    if not tpl.exists():
        tpl.write_text(TEMPLATE, encoding="utf-8")
    seeds = root / "data" / "seeds.jsonl"
    if not seeds.exists():
        seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS), encoding="utf-8")
    console.print(f"created {recipe}, {tpl} and {seeds}\nnext: synth check {recipe} && synth run {recipe}")
    return 0
