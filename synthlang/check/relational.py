"""Checking the relational steps (derive, explode, group, pair, join, union; see ops/relational.py).

The checker's generic step code resolves options; this module types what those
steps add: the fields a ``derive`` or ``group`` writes from its free keyword
arguments, the item type of ``explode``, the other node's fields for ``join`` and
``union``, and the required options of each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthlang import ast
from synthlang.expr import free_names
from synthlang.ops.base import KIND_NODE, Operator, OutputField
from synthlang.ops.relational import AGGREGATES, RELATIONAL, REQUIRED, group_key_fields

if TYPE_CHECKING:
    from synthlang.check.checker import _Checker

RELATIONS = {op.name for op in RELATIONAL}


def is_relational(op: Operator) -> bool:
    """Whether this module types the step: the relational steps, and operators that bring their own check
    (``extra["check"]``, e.g. cross and retrieve in ops/crossing.py, ops/retrieval.py)."""
    return op.name in RELATIONS or "check" in op.extra

_EXPR_TYPES = ast.Expr.__args__  # type: ignore[attr-defined]


def opt_key(v: Any) -> Any:
    """An option value as it enters a step fingerprint: expressions by their repr."""
    if isinstance(v, _EXPR_TYPES):
        return repr(v)
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return [[k, opt_key(x)] for k, x in v]
    return v


def node_fingerprints(ck: _Checker, op: Operator, opts: dict[str, Any]) -> dict[str, str]:
    """Fingerprints of the nodes a join/union reads besides its input (their rows decide its rows)."""
    if not is_relational(op):
        return {}
    return {k: ck.fps.get(v, v) for k, v in opts.items()
            if k in op.options and op.options[k].kind == KIND_NODE and isinstance(v, str)}


def outputs_for(op: Operator, fields: dict[str, str]) -> tuple[OutputField, ...]:
    """The output fields of a relational step, in order, with their checked types."""
    return tuple(OutputField(n, t) for n, t in fields.items())


def replaces(op: Operator, fields: dict[str, str] | None) -> set[str]:
    """Fields a step may overwrite without ``-> replace``: a ``derive`` names each one it writes."""
    return set(fields or ()) if op.name == "derive" else set()


def _type_of(t: str) -> tuple[str, str]:
    """``list[str]`` -> (``list``, ``str``); other types -> (t, ``any``)."""
    if t.startswith("list[") and t.endswith("]"):
        return "list", t[5:-1]
    return t, "any"


def check_step(ck: _Checker, d: ast.Step, op: Operator, opts: dict[str, Any], fields_in: dict[str, str],
               free: list[tuple[str, ast.Arg]]) -> dict[str, str] | None:
    """Check a relational step; return the fields it adds (name -> type), or ``None`` after an error.

    Free keyword arguments become ``opts["__fields__"]`` (``derive``: expressions; ``group``:
    aggregate calls).
    """
    if "check" in op.extra:   # papersb (issue 15): the operator's own check (cross, retrieve)
        return op.extra["check"](ck, d, op, opts, fields_in, free)
    kw = d.op.kw()
    for name in REQUIRED.get(op.name, ()):
        if name not in kw:
            ck.err(f"{op.name}() needs {name}=", d.op.span, code="missing-argument", operator=op.name, name=name,
                   hint=_EXAMPLES.get(op.name))
            return None
    if any(opts.get(n) is None for n in REQUIRED.get(op.name, ())):
        return None  # the option's own error is reported
    if op.name == "derive":
        return _derive(ck, d, opts, fields_in, free)
    if op.name == "group":
        return _group(ck, d, opts, fields_in, free)
    if op.name == "explode":
        kind, item = _type_of(fields_in.get(opts["field"], "any"))
        if kind not in ("list", "json", "any"):
            ck.err(f"explode needs a list field, but '{opts['field']}' is {kind}", kw["field"].value.span,
                   code="type-mismatch", expected="list", found=kind,
                   hint="split a text first: derive(rows, items = split(text, \"\\n\")), then explode(field=items)")
            return None
        return {"item": item, "item_index": "int"}
    if op.name == "pair":
        t = ck._check_expr(opts["rank"], fields_in)
        if t not in ("bool", "int", "float", "number", "any", "json"):
            ck.err(f"pair's rank must be a number or a bool, not {t}", kw["rank"].value.span, code="type-mismatch",
                   expected="number or bool", found=t)
        ft = fields_in.get(opts["field"], "any")
        return {"chosen": ft, "rejected": ft, "chosen_score": "float", "rejected_score": "float"}
    other = opts["with"]
    other_fields = ck.fields.get(other, {})
    if op.name == "join":
        if opts.get("right_on") is not None:
            ck._check_expr(opts["right_on"], other_fields)
        elif opts.get("on") is not None:
            for n in free_names(opts["on"]):
                if n.id not in other_fields and n.id not in ck.params:
                    ck.err(f"join key field '{n.id}' is not a field of '{other}'", n.span, code="unknown-field",
                           name=n.id, available=sorted(other_fields),
                           hint="`on` is evaluated on both sides; give the other side's key with right_on=")
        prefix = opts.get("prefix") or "right_"
        return {(prefix + k if k in fields_in else k): t for k, t in other_fields.items()}
    # union
    out = dict(fields_in)
    for k, t in other_fields.items():
        if k in out and not _compatible(out[k], t):
            ck.err(f"union: field '{k}' is {out[k]} in '{d.op.positional[0].id if isinstance(d.op.positional[0], ast.Name) else 'the input'}'"
                   f" but {t} in '{other}'", kw["with"].value.span, code="type-mismatch", name=k, left=out[k], right=t,
                   hint="convert one side with derive(...) first")
            continue
        out.setdefault(k, t)
    return out


def _compatible(a: str, b: str) -> bool:
    if "any" in (a, b) or "json" in (a, b) or a == b:
        return True
    num = {"int", "float", "number"}
    return (a in num and b in num) or (a.startswith("list") and b.startswith("list"))


def _derive(ck: _Checker, d: ast.Step, opts: dict[str, Any], fields_in: dict[str, str],
            free: list[tuple[str, ast.Arg]]) -> dict[str, str] | None:
    if not free:
        ck.err("derive() needs at least one new field: derive(rows, name = expression)", d.op.span,
               code="missing-argument", operator="derive", hint=_EXAMPLES["derive"])
        return None
    env = dict(fields_in)
    out: dict[str, str] = {}
    for name, arg in free:
        t = ck._check_expr(arg.value, env)
        env[name] = out[name] = t if t != "null" else "any"
    opts["__fields__"] = tuple((n, a.value) for n, a in free)
    return out


def _group(ck: _Checker, d: ast.Step, opts: dict[str, Any], fields_in: dict[str, str],
           free: list[tuple[str, ast.Arg]]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    by = opts.get("by")
    if by is not None:
        for name, e in group_key_fields(by):
            out[name] = ck._check_expr(e, fields_in) if not isinstance(e, ast.Name) else fields_in.get(e.id, "any")
    ok = True
    for name, arg in free:
        v = arg.value
        if name in out:
            ck.err(f"group: '{name}' is already the group key", arg.span, code="duplicate-definition", name=name)
            ok = False
            continue
        if not isinstance(v, ast.Call) or v.func not in AGGREGATES:
            ck.err(f"group: '{name}' must be an aggregate such as count(), mean(x), list(x)", v.span,
                   code="not-an-aggregate", name=name, valid=sorted(AGGREGATES),
                   hint=f"aggregates: {', '.join(f'{a}()' if a == 'count' else f'{a}(x)' for a in AGGREGATES)}")
            ok = False
            continue
        n_args = len(v.args)
        if n_args > 1 or (n_args == 0 and v.func != "count") or any(a.name for a in v.args):
            ck.err(f"{v.func}() takes one expression" + (" (or none: count() counts rows)" if v.func == "count" else ""),
                   v.span, code="arity", name=v.func)
            ok = False
            continue
        at = ck._check_expr(v.args[0].value, fields_in) if v.args else "int"
        rt = AGGREGATES[v.func]
        if v.func in ("sum", "mean") and not _compatible(at, "number") and at != "bool":
            ck.err(f"{v.func}() needs numbers or bools, not {at}", v.args[0].span, code="type-mismatch",
                   expected="number", found=at, hint="convert with number(x) or float(x)")
            ok = False
        out[name] = at if rt == "arg" else (f"list[{at}]" if rt == "list" and at not in ("any", "json", "null") else rt)
    if not ok:
        return None
    opts["__fields__"] = tuple((n, a.value) for n, a in free)
    return out


_EXAMPLES = {
    "derive": "e.g. step graded = derive(answered, correct = final_answer == gold)",
    "explode": "e.g. step items = explode(drafts, field=questions) -> question, question_index",
    "pair": "e.g. step prefs = pair(checked, rank=verified, field=reasoning)",
    "join": "e.g. step both = join(forward, with=backward) (common ancestry) or join(a, with=b, on=question)",
    "union": "e.g. step all_rows = union(seeds, with=generated)",
}
