"""``synth lineage ROW_ID``: a row's ancestry as a tree, with each row's step, round and the fields it added."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.text import Text
from rich.tree import Tree

from synthlang.cli.common import add_db, cell, console, db_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("row_id", help="a row id (a unique prefix is enough)")
    add_db(p)
    p.add_argument("--json", action="store_true", help="print the tree as JSON")


def _label(n: dict[str, Any], parent: dict[str, Any] | None) -> Text:
    """One node: step (operator), round when in a loop, row id, status, and the fields it added. Stored text is
    appended as plain text, never parsed as rich markup (a prompt holding ``[/INST]`` prints as is)."""
    new = {k: v for k, v in n["data"].items() if parent is None or parent["data"].get(k) != v} if n["data"] else {}
    t = Text()
    t.append(str(n["step"]), style="bold")
    t.append(f" ({n['operator']})")
    if n.get("round"):
        t.append(f" round {n['round']}", style="magenta")
    t.append(f" {n['row_id']}")
    if n["status"] != "ok":
        t.append(f" {n['status']}: {n['error']}", style="red")
    t.append("\n")
    for i, (k, v) in enumerate(list(new.items())[:6]):
        if i:
            t.append("  ")
        t.append(str(k), style="cyan")
        t.append("=" + cell(v, 70))
    return t


def main(args: argparse.Namespace) -> int:
    from synthlang.store import Store

    with Store(db_path(args), read_only=True) as store:
        tree = store.lineage(args.row_id)
        ids = []

        def collect(n: dict[str, Any]) -> None:
            ids.append(n["row_id"])
            for p in n["parents"]:
                collect(p)

        collect(tree)
        _, rounds = store.query("SELECT row_id, round FROM rows WHERE row_id IN (SELECT unnest(?))", [ids])
    rnd = {r: k for r, k in rounds}

    def fill(n: dict[str, Any]) -> None:
        n.setdefault("round", rnd.get(n["row_id"]) or 0)
        for p in n["parents"]:
            fill(p)

    fill(tree)
    if args.json:
        print(json.dumps(tree, ensure_ascii=False, indent=2, default=str))
        return 0
    # print the row first, then its ancestors: each node lists the fields it added
    def add(t: Tree, n: dict[str, Any]) -> None:
        for p in n["parents"]:
            sub = t.add(_label(p, p["parents"][0] if p["parents"] else None))
            add(sub, p)

    root = Tree(_label(tree, tree["parents"][0] if tree["parents"] else None))
    add(root, tree)
    console.print(root)
    return 0
