"""Turning exported rows into training examples (see :mod:`synthlang.outputs.shapes`) and typed ``datasets.Features``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from synthlang.errors import ConfigError
from synthlang.outputs.read import Row
from synthlang.outputs.shapes import PLAIN, SHAREGPT_FROM, SLOTS


def _value(part: dict[str, Any], row: Row) -> Any:
    if "field" in part:
        return row.data.get(part["field"])
    if "template" in part:
        from synthlang.templates import TemplateError, render

        try:
            return render(part["text"], row.data, part["template"])
        except TemplateError as exc:
            raise ConfigError(f"export: row {row.row_id[:12]}: {exc}") from None
    return part.get("text")


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


def _messages(parts: list[dict[str, Any]], row: Row) -> list[dict[str, str]]:
    out = []
    for p in parts:
        if p["role"] == "*":   # papersa (issue 15): a field holding messages (a dialogue), copied as they are
            v = _value(p, row)
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    v = None
            for m in v if isinstance(v, list) else []:
                if isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and _text(m.get("content")):
                    out.append({"role": m["role"], "content": _text(m["content"])})
            continue
        content = _text(_value(p, row))
        if content is None or content == "":
            continue
        out.append({"role": p["role"], "content": content})
    return out


def _slot_parts(opts: dict[str, Any]) -> list[dict[str, Any]]:
    """chat/sharegpt messages from ``messages=`` or from the system/user/assistant slots."""
    if opts.get("messages"):
        return list(opts["messages"])
    return [{"role": r, **opts[r]} for r in ("system", "user", "assistant") if r in opts]


def shape_rows(fmt: str, rows: Sequence[Row], opts: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Row], list[str]]:
    """Training examples from rows.

    Args:
        fmt: a format of :data:`synthlang.outputs.shapes.FORMATS`.
        rows: rows in input order.
        opts: the export's checked options (slots resolved).

    Returns:
        ``(examples, origin, notes)``: the examples, the row each came from (same length, for splits), and
        notes such as how many rows were skipped and why.

    Raises:
        ConfigError: a template that fails on a row.
    """
    notes: list[str] = []
    ex: list[dict[str, Any]] = []
    origin: list[Row] = []
    skipped = 0
    if fmt in PLAIN:
        fields = opts.get("fields")
        for r in rows:
            rec = {k: r.data.get(k) for k in fields} if fields else dict(r.data)
            if opts.get("row_id", True):
                rec = {"row_id": r.row_id, **rec}
            ex.append(rec)
            origin.append(r)
        return ex, origin, notes
    if fmt in ("chat", "sharegpt"):
        parts = _slot_parts(opts)
        for r in rows:
            msgs = _messages(parts, r)
            if not any(m["role"] == "assistant" for m in msgs) or not any(m["role"] == "user" for m in msgs):
                skipped += 1
                continue
            if fmt == "sharegpt":
                ex.append({"conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in msgs]})
            else:
                ex.append({"messages": msgs})
            origin.append(r)
    elif fmt == "views":
        for r in rows:
            for v in opts["views"]:
                msgs = _messages(v["messages"], r)
                if not any(m["role"] == "assistant" for m in msgs):
                    skipped += 1
                    continue
                ex.append({"view": v["name"], "messages": msgs})
                origin.append(r)
    elif fmt == "alpaca":
        for r in rows:
            out = _text(_value(opts["output"], r))
            if not out:
                skipped += 1
                continue
            ex.append({"instruction": _text(_value(opts["instruction"], r)) or "",
                       "input": _text(_value(opts["input"], r)) or "" if "input" in opts else "", "output": out})
            origin.append(r)
    elif fmt == "kto":
        for r in rows:
            label = _value(opts["label"], r)
            comp = _text(_value(opts["completion"], r))
            if not isinstance(label, bool) or not comp:
                skipped += 1
                continue
            ex.append({"prompt": _text(_value(opts["prompt"], r)) or "", "completion": comp, "label": label})
            origin.append(r)
    elif fmt == "preference":
        if "chosen" in opts:
            for r in rows:
                c, j = _text(_value(opts["chosen"], r)), _text(_value(opts["rejected"], r))
                if not c or not j or c == j:
                    skipped += 1
                    continue
                ex.append({"prompt": _text(_value(opts["prompt"], r)) or "", "chosen": c, "rejected": j})
                origin.append(r)
        else:
            ex, origin, ties, groups = _ranked_pairs(rows, opts)
            notes.append(f"{len(ex)} pairs from {groups} parents with 2 or more samples ranked by {opts['rank_by']['field']}"
                         + (f"; {ties} parents skipped: their samples rank the same" if ties else ""))
    else:
        raise ConfigError(f"unknown export format '{fmt}'")
    if skipped:
        what = {"views": "views", "preference": "rows"}.get(fmt, "rows")
        why = {"kto": "no bool label or an empty completion", "preference": "an empty or identical chosen/rejected",
               "alpaca": "an empty output"}.get(fmt, "an empty user or assistant part")
        notes.append(f"{skipped} {what} skipped: {why}")
    return ex, origin, notes


def _rank(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return float(v)
    return None


def _ranked_pairs(rows: Sequence[Row], opts: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Row], int, int]:
    """One (chosen, rejected) pair per sampling parent (``Row.group``, see :func:`synthlang.outputs.read.sample_groups`):
    its best-ranked sample against its worst, when they differ in rank."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group or r.parent or r.row_id, []).append(r)
    ex, origin, skipped, multi = [], [], 0, 0
    key = opts["rank_by"]["field"]
    for members in groups.values():
        ranked = [(s, r) for r in members if (s := _rank(r.data.get(key))) is not None
                  and _text(_value(opts["completion"], r))]
        if len(members) < 2:
            continue
        multi += 1
        if len(ranked) < 2:
            skipped += 1
            continue
        best = max(ranked, key=lambda t: t[0])   # first best and first worst in input order
        worst = min(ranked, key=lambda t: t[0])
        if best[0] == worst[0]:
            skipped += 1
            continue
        c, j = _text(_value(opts["completion"], best[1])), _text(_value(opts["completion"], worst[1]))
        ex.append({"prompt": _text(_value(opts["prompt"], best[1])) or "", "chosen": c, "rejected": j})
        origin.append(best[1])
    return ex, origin, skipped, multi


_ARROW = {"str": "string", "int": "int64", "float": "float64", "number": "float64", "bool": "bool"}


def features(fmt: str, opts: dict[str, Any], types: dict[str, str] | None, examples: list[dict[str, Any]]) -> Any:
    """The ``datasets.Features`` of an export, declared from the step's field types (not inferred from values).

    A field typed ``json``, ``list`` or ``any`` is written as JSON text (a string column) when any value is not
    a string, since its Arrow type is not declared. Without declared types (the recipe file is gone) the
    features are inferred from the values.

    Returns:
        ``datasets.Features``, or ``None`` when there are no types to declare from.
    """
    from datasets import Features, Value

    msg = [{"role": Value("string"), "content": Value("string")}]
    if fmt == "chat":
        return Features({"messages": msg})
    if fmt == "views":
        return Features({"view": Value("string"), "messages": msg})
    if fmt == "sharegpt":
        return Features({"conversations": [{"from": Value("string"), "value": Value("string")}]})
    if fmt == "alpaca":
        return Features({k: Value("string") for k in ("instruction", "input", "output")})
    if fmt == "preference":
        return Features({k: Value("string") for k in ("prompt", "chosen", "rejected")})
    if fmt == "kto":
        return Features({"prompt": Value("string"), "completion": Value("string"), "label": Value("bool")})
    if types is None:
        return None
    cols = list(examples[0]) if examples else (["row_id"] if opts.get("row_id", True) else []) + list(opts.get("fields") or types)
    feats = {}
    for c in cols:
        if c == "row_id":
            feats[c] = Value("string")
        else:
            feats[c] = Value(_ARROW.get(types.get(c, "any"), "string"))
    return Features(feats)


def conform(examples: list[dict[str, Any]], feats: Any) -> list[dict[str, Any]]:
    """Make values fit declared string/number columns: non-strings in a string column become JSON text, ints in a
    float column floats, and a value of the wrong kind in a typed column an error."""
    if feats is None:
        return examples
    from datasets import Value

    kinds = {k: v.dtype for k, v in feats.items() if isinstance(v, Value)}
    out = []
    for i, e in enumerate(examples):
        rec = dict(e)
        for k, dt in kinds.items():
            v = rec.get(k)
            if v is None:
                continue
            if dt == "string" and not isinstance(v, str):
                rec[k] = json.dumps(v, ensure_ascii=False, default=str)
            elif dt == "float64" and isinstance(v, (int, float)) and not isinstance(v, bool):
                rec[k] = float(v)
            elif dt == "int64" and not (isinstance(v, int) and not isinstance(v, bool)):
                raise ConfigError(f"export: example {i}, field '{k}': declared int, found {type(v).__name__} {v!r}")
            elif dt == "bool" and not isinstance(v, bool):
                raise ConfigError(f"export: example {i}, field '{k}': declared bool, found {type(v).__name__} {v!r}")
        out.append(rec)
    return out


def slots_of(fmt: str) -> tuple[str, ...]:
    return SLOTS.get(fmt, ())
