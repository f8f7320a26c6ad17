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
    if spec.path is None:
        raise DataError(f"loader {spec.loader} needs a path", spec.name)
    shown = str(spec.path)
    offset = int(spec.args.get("offset") or 0)
    limit = spec.args.get("limit")
    if spec.loader == "csv":
        rows = _load_csv(spec, shown, offset, limit, params)
        if not rows:
            raise DataError("the source is empty (no rows after offset/limit)", shown)
        return rows
    if spec.loader != "jsonl":
        raise DataError(f"loader {spec.loader} is not supported", shown)
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
            rows.append(_typed_row(spec, obj, shown, lineno, params))
    if not rows:
        raise DataError("the source is empty (no rows after offset/limit)", shown)
    return rows


def _typed_row(spec: SourceSpec, obj: dict[str, Any], shown: str, lineno: int, params: dict[str, Any]) -> dict[str, Any]:
    """Check declared fields of one record and compute derived fields."""
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
    return row


def _convert_csv(value: str, t: str, shown: str, lineno: int, field: str) -> Any:
    """CSV cells are text; convert to the declared type."""
    try:
        if t == "int":
            return int(value)
        if t in ("float", "number"):
            return float(value)
        if t == "bool":
            low = value.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(value)
    except ValueError:
        raise DataError(f"expected {t}, got {value!r}", shown, row=lineno, field=field) from None
    return value


def _load_csv(spec: SourceSpec, shown: str, offset: int, limit: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    import csv

    rows: list[dict[str, Any]] = []
    try:
        fh = open(spec.path, encoding="utf-8", newline="")  # type: ignore[arg-type]
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", shown) from None
    with fh:
        try:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for f in spec.fields:
                if f not in header:
                    raise DataError(f"no column '{f}' in the header ({', '.join(header)})", shown, row=1, field=f)
            n = 0
            for rec in reader:
                lineno = reader.line_num
                n += 1
                if n <= offset:
                    continue
                if limit is not None and len(rows) >= int(limit):
                    break
                obj = {f: _convert_csv(rec.get(f) or "", t, shown, lineno, f) for f, t in spec.fields.items()}
                rows.append(_typed_row(spec, obj, shown, lineno, params))
        except UnicodeDecodeError as exc:
            raise DataError(f"bytes that are not UTF-8 at byte {exc.start}", shown) from None
        except csv.Error as exc:
            raise DataError(f"malformed CSV: {exc}", shown) from None
    return rows
