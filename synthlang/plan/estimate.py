"""Plan estimates: rows, calls and tokens per step before anything runs.

Rows come from the sources' row counts (after ``limit``), multiplied by each
LLM step's ``n``. Tokens per call are estimated as (prompt characters / 4) +
``max_tokens``, an upper bound on completion length.
"""

from __future__ import annotations

import json
from typing import Any

from synthlang.plan.program import Program


def _source_rows(path: Any, limit: int | None, offset: int) -> tuple[int, int]:
    """(row count, mean characters per row) of a JSONL file, reading at most limit+offset rows."""
    n = chars = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                n += 1
                if n <= offset:
                    continue
                chars += len(raw)
                if limit is not None and n - offset >= limit:
                    break
    except OSError:
        return 0, 0
    rows = max(n - offset, 0)
    return rows, (chars // rows if rows else 0)


def estimate(prog: Program) -> dict[str, Any]:
    """The plan as a JSON-able dict: recipe, models, sources, steps (in order) and totals.

    Each step has: name, operator, input, model, engine, n, rows, calls,
    tokens, fields_in, fields_added.
    """
    rows: dict[str, int] = {}
    width: dict[str, int] = {}
    sources = []
    for s in prog.sources.values():
        n, w = _source_rows(s.path, s.args.get("limit"), int(s.args.get("offset") or 0))
        rows[s.name], width[s.name] = n, w
        sources.append({"name": s.name, "loader": s.loader, "path": s.path.name if s.path else None, "rows": n,
                        "fields": prog.node_fields(s.name)})
    steps = []
    total_calls = total_tokens = 0
    # loop bodies are estimated for round 0 (they read the whole pool then); later rounds read only new rows
    loop_of = {b.name: lp for lp in prog.loops for b in lp.steps}
    ordered = list(prog.steps)
    for lp in sorted(prog.loops, key=lambda lp: -lp.position):
        ordered[lp.position:lp.position] = lp.steps
    for st in ordered:
        n_in = rows.get(st.input, 0)
        n = int(st.opts.get("n") or 1) if st.op.uses_model else 1
        out_rows = n_in * n
        calls = out_rows if st.op.uses_model else 0
        tokens = 0
        if st.op.uses_model and st.model is not None:
            max_tok = int(st.opts.get("max_tokens") or st.model.sampling.max_tokens)
            prompt_chars = len(st.opts.get("prompt") or "") + width.get(st.input, 0)
            tokens = calls * (prompt_chars // 4 + max_tok)
        rows[st.name] = out_rows
        width[st.name] = width.get(st.input, 0) + (200 if st.op.uses_model else 20)
        total_calls += calls
        total_tokens += tokens
        steps.append({
            "name": st.name, "operator": st.op.name, "input": st.input,
            "loop": ({"name": loop_of[st.name].name, "rounds": loop_of[st.name].rounds, "estimate": "round 0"}
                     if st.name in loop_of else None),
            "model": st.model.name if st.model else None, "engine": st.model.describe() if st.model else None,
            "n": n, "rows": out_rows, "calls": calls, "tokens": tokens,
            "fields_in": sorted(st.fields_in), "fields_added": [f for f in st.fields_out if f not in st.fields_in]
            or [st.rename[o.name] for o in st.op.outputs],
        })
    return {
        "recipe": prog.name,
        "description": prog.description,
        "params": prog.params,
        "models": {k: {"engine": m.kind, "model_id": m.model_id, "sampling": m.sampling.key_dict()} for k, m in prog.models.items()},
        "sources": sources,
        "steps": steps,
        "exports": [{"step": e.step, "path": e.path.name, "format": e.format} for e in prog.exports],
        "total": {"calls": total_calls, "tokens": total_tokens},
    }


def to_mermaid(plan: dict[str, Any]) -> str:
    """The graph as a Mermaid flowchart."""
    lines = ["flowchart TD"]
    for s in plan["sources"]:
        lines.append(f"  {s['name']}[(\"{s['name']}: {s['loader']} · {s['rows']} rows\")]")
    for st in plan["steps"]:
        label = f"{st['name']}: {st['operator']}" + (f" · {st['model']}" if st["model"] else "")
        lines.append(f"  {st['name']}[\"{label}\"]")
        lines.append(f"  {st['input']} --> {st['name']}")
    return "\n".join(lines) + "\n" + json.dumps({"calls": plan["total"]["calls"]})[0:0]
