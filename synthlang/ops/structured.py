"""Options of ``generate`` / ``answer`` added by issue 15: JSON-schema output, per-row ``n``, prefix continuation.

* ``schema={type: "object", properties: {...}}`` (or a JSON string) on ``generate``: the reply must follow a JSON schema (an object with typed ``properties``);
  each top-level property becomes an output field of its own, typed from the schema (``string`` -> str,
  ``integer`` -> int, ``number`` -> float, ``boolean`` -> bool, ``array`` of strings -> list[str], other
  arrays -> list, ``object`` -> json). The engines enforce it (llama.cpp grammar, vLLM structured outputs,
  OpenAI ``response_format``) and the reply is validated again here (:mod:`synthlang.engines.jsonschema`);
  a reply that does not parse or validate fails its row with the reason. Source: DataEnvGym (2024), whose
  teacher writes a data plan as structured output; MalAlgoQA's per-option rationales.
* ``n_from=EXPR``: the sample count of each row from an expression over its fields (a whole number >= 0;
  0 drops the row), overriding ``n``. Source: DataEnvGym's plan sets a sample count per skill.
* ``prefix=FIELD`` on ``generate`` and ``answer``: the assistant's reply starts with the field's text and the
  model continues it (llama.cpp: the chat prompt plus the prefix completed raw; vLLM: ``continue_final_message``).
  The output is prefix + continuation. Only the embedded and vLLM engines can; ``synth check`` names any other
  engine. Source: Multi-Granularity Semantic Revision (SCRG, 2024): regenerate from the corrected prefix.

The per-row schema and the continuation directive reach the engine through the ``prepare`` hook's
``__schema__`` (see :data:`synthlang.engines.base.DIRECTIVE_KEY`), and ``n_from`` through ``__n__``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from synthlang.engines.base import with_directive
from synthlang.engines.jsonschema import schema_errors
from synthlang.errors import DataError
from synthlang.expr import evaluate
from synthlang.ops.base import KIND_EXPR, KIND_FIELD, MAX_SAMPLES, Operator, Option, OutputField, RowContext, RowFailure

KIND_JSON = "json"   # a JSON object literal written as a string; parsed and checked by the checker

_SCHEMA_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "json"}


MAX_SCHEMA_DEPTH = 64
"""The deepest a ``schema=`` may nest (objects and lists): validation and the engines' grammar builders recurse,
and a recipe is untrusted input."""


def _depth(value: Any) -> int:
    """How deeply ``value`` nests dicts and lists (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d > MAX_SCHEMA_DEPTH:
                return d
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a ``generate(schema=...)`` (``None`` when it can).

    It must be a JSON object nesting at most :data:`MAX_SCHEMA_DEPTH` levels, with ``"type": "object"`` (or no type) and a non-empty ``properties`` object whose
    entries each name a ``type``.
    """
    if not isinstance(schema, dict):
        return "the schema must be a JSON object"
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"the schema nests too deeply (at most {MAX_SCHEMA_DEPTH} levels of objects and lists)"
    if schema.get("type", "object") != "object":
        return f"the schema's type must be \"object\", not {schema.get('type')!r}"
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return "the schema needs a non-empty \"properties\" object (each property becomes an output field)"
    for name, sub in props.items():
        if not isinstance(sub, dict) or "type" not in sub:
            return f"property '{name}' needs a \"type\""
        if sub["type"] not in (*_SCHEMA_TYPES, "array"):
            return f"property '{name}' has an unknown type {sub['type']!r}"
    return None


def field_type(sub: dict[str, Any]) -> str:
    """The synthlang field type of one schema property (``array`` of strings -> ``list[str]``)."""
    t = sub.get("type")
    if t == "array":
        items = sub.get("items") or {}
        inner = _SCHEMA_TYPES.get(items.get("type")) if isinstance(items, dict) else None
        return f"list[{inner}]" if inner in ("str", "int", "float", "bool") else "list"
    return _SCHEMA_TYPES.get(str(t), "any")


def _structured_post(row: dict[str, Any], text: str, opts: dict[str, Any]) -> dict[str, Any]:
    schema = opts["schema"]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowFailure(f"reply is not JSON ({exc.msg} at char {exc.pos})") from None
    problems = schema_errors(value, {**schema, "required": list(schema.get("required") or schema["properties"])})
    if problems:
        raise RowFailure("reply does not follow the schema: " + "; ".join(problems[:3]))
    return {p: value.get(p) for p in schema["properties"]}


def _joined(post: Any) -> Any:
    """Wrap a post-processor so that with ``prefix=`` it sees prefix + continuation."""

    def run(row: dict[str, Any], text: str, opts: dict[str, Any], *rest: Any) -> dict[str, Any]:
        f = opts.get("prefix")
        if f:
            text = str(row.get(f) or "") + text
        return post(row, text, opts, *rest)
    return run


def _prepare(rows: Sequence[dict[str, Any]], opts: dict[str, Any], ctx: RowContext) -> list[dict[str, Any]]:
    """Per row: ``__n__`` from ``n_from``, ``__schema__`` from ``schema`` and/or the ``prefix`` directive.

    Raises:
        DataError: ``n_from`` is not a whole number from 0 to ``MAX_SAMPLES`` for some row (names the row, 1-based).
    """
    out: list[dict[str, Any]] = []
    schema = opts.get("schema")
    for i, row in enumerate(rows):
        ex: dict[str, Any] = {}
        if opts.get("n_from") is not None:
            v = evaluate(opts["n_from"], row, {**ctx.params, "round": ctx.round})
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")) \
                    or v != int(v) or not 0 <= v <= MAX_SAMPLES:
                raise DataError(f"n_from must give a whole number from 0 to {MAX_SAMPLES}, got {v!r}", "n_from",
                                row=i + 1)
            ex["__n__"] = int(v)
        if opts.get("prefix"):
            ex["__schema__"] = with_directive(schema, "continue", str(row.get(opts["prefix"]) or ""))
        elif schema is not None:
            ex["__schema__"] = schema
        out.append(ex)
    return out


def _directives(opts: dict[str, Any]) -> tuple[str, ...]:
    return ("continue",) if opts.get("prefix") else ()


GENERATION_OPTIONS = (
    Option("n_from", KIND_EXPR, None, doc="samples for each row from an expression over its fields (a whole number "
                                          "from 0 to 1024; 0: none); overrides n (DataEnvGym's per-skill counts)"),
    Option("prefix", KIND_FIELD, None, doc="a field holding the start of the assistant's reply: the model continues it "
                                           "and the output is prefix + continuation (embedded and vllm engines only; SCRG)"),
)
SCHEMA_OPTION = Option(
    "schema", KIND_JSON, None,
    doc="a JSON schema the reply must follow, as an object literal ({type: \"object\", properties: {skill: {type: "
        "\"string\"}}}) or a JSON string; each property becomes an output field (name them with ->); replaces `text`")


def extend(op: Operator, with_schema: bool) -> Operator:
    """``generate`` / ``answer`` with the issue-15 options (per-row n, prefix and, for generate, schema)."""
    opts = dict(op.options)
    for o in GENERATION_OPTIONS + ((SCHEMA_OPTION,) if with_schema else ()):
        opts[o.name] = o
    base = replace(op, options=opts, prepare=_prepare, postprocess=_joined(op.postprocess),
                   extra={**op.extra, "directives": _directives})
    if not with_schema:
        return base
    structured_cache: dict[str, Operator] = {}

    def select(o: dict[str, Any]) -> Operator:
        schema = o.get("schema")
        if not isinstance(schema, dict) or schema_problem(schema) is not None:
            return base
        key = json.dumps(schema, sort_keys=True)
        if key not in structured_cache:
            outs = tuple(OutputField(p, field_type(sub), sub.get("description", "from the JSON schema"))
                         for p, sub in schema["properties"].items())
            structured_cache[key] = replace(base, outputs=outs, postprocess=_joined(_structured_post), select=None)
        return structured_cache[key]
    return replace(base, select=select)
