"""A small JSON-schema check for structured replies (the subset synthlang's operators emit).

Covers ``type`` (object, array, string, integer, number, boolean, null, or a list of them),
``properties``, ``required``, ``items``, ``enum``, ``minimum``/``maximum``. Enough to decide whether
to re-ask a model; not a full JSON Schema implementation (draft 2020-12).
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems of ``value`` against ``schema``, as ``"$.field: message"`` strings ([] = valid)."""
    errs: list[str] = []
    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        ok = False
        for n in names:
            py = _TYPES.get(n)
            if py is None:
                ok = True
                break
            if isinstance(value, bool) and n in ("integer", "number"):
                continue
            if isinstance(value, py):
                ok = True
                break
        if not ok:
            return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errs.append(f"{path}: missing required field '{name}'")
        for name, sub in (schema.get("properties") or {}).items():
            if name in value and isinstance(sub, dict):
                errs.extend(schema_errors(value[name], sub, f"{path}.{name}"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errs.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    return errs
