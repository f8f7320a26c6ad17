"""Loading seed rows from sources, with errors that name the file, row and field."""

from __future__ import annotations

import json
from typing import Any

from synthlang.errors import DataError
from synthlang.expr import ExprError, evaluate
from synthlang.plan.program import SourceSpec

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "number": (int, float), "bool": (bool,), "list": (list,),
}


def _check_type(value: Any, t: str) -> bool:
    if t in ("any", "json") or value is None:
        return True
    if t in ("int", "float", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _PY_TYPES.get(t, (object,)))


def load_source(spec: SourceSpec, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Read a source's rows, check declared fields, compute derived fields.

    Returns:
        Rows as dicts holding the declared and derived fields (other keys in
        the file are dropped), after ``offset`` and ``limit``.

    Raises:
        DataError: malformed data, a missing field, a wrong type or bytes that
            are not UTF-8, naming the file, row and field.
    """
    if spec.loader != "jsonl" or spec.path is None:
        raise DataError(f"loader {spec.loader} is not supported", str(spec.path))
    shown = str(spec.path)
    offset = int(spec.args.get("offset") or 0)
    limit = spec.args.get("limit")
    rows: list[dict[str, Any]] = []
    try:
        fh = open(spec.path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", shown) from None
    with fh:
        n = 0
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            n += 1
            if n <= offset:
                continue
            if limit is not None and len(rows) >= int(limit):
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"bytes that are not UTF-8 at byte {exc.start}", shown, row=lineno) from None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", shown, row=lineno) from None
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", shown, row=lineno)
            row: dict[str, Any] = {}
            for f, t in spec.fields.items():
                if f not in obj:
                    raise DataError("missing field", shown, row=lineno, field=f)
                if not _check_type(obj[f], t):
                    raise DataError(f"expected {t}, got {type(obj[f]).__name__}", shown, row=lineno, field=f)
                row[f] = obj[f]
            for f, e in spec.derived:
                try:
                    row[f] = evaluate(e, row, params)
                except ExprError as exc:
                    raise DataError(f"derived field failed: {exc}", shown, row=lineno, field=f) from None
            rows.append(row)
    if not rows:
        raise DataError("the source is empty (no rows after offset/limit)", shown)
    return rows
