"""``synth lineage ROW_ID``: a row's ancestry as a tree."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.tree import Tree

from synthlang.cli.common import add_db, cell, console, db_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("row_id", help="a row id (a unique prefix is enough)")
    add_db(p)
    p.add_argument("--json", action="store_true", help="print the tree as JSON")


def _label(n: dict[str, Any], parent: dict[str, Any] | None) -> str:
    new = {k: v for k, v in n["data"].items() if parent is None or parent["data"].get(k) != v} if n["data"] else {}
    status = "" if n["status"] == "ok" else f" [red]{n['status']}: {n['error']}[/]"
    fields = "  ".join(f"[cyan]{k}[/]={cell(v, 70)}" for k, v in list(new.items())[:6])
    return f"[bold]{n['step']}[/] ({n['operator']}) {n['row_id']}{status}\n{fields}"


def main(args: argparse.Namespace) -> int:
    from synthlang.store import Store

    with Store(db_path(args), read_only=True) as store:
        tree = store.lineage(args.row_id)
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
