"""Plan estimates: rows, calls, tokens and cost per step before anything runs.

Rows come from the sources' row counts (after ``offset`` and ``limit``),
multiplied by each LLM step's ``n``. Loop bodies are estimated for round 0
(they read the whole pool then; later rounds read only new rows). Tokens per call are estimated as prompt
tokens (template characters + the input row's mean characters, divided by 4)
plus ``max_tokens``, an upper bound on the completion. Cost (USD) is known
when the step's model declares ``price_input`` and ``price_output`` (USD per
million prompt / completion tokens; ``price_in``/``price_out`` are accepted
as aliases): calls × (prompt tokens × price_input + max_tokens × price_output) / 1e6.

Row counting is injected (``count``) because reading data belongs to the
execute layer; :func:`synthlang.api.plan` wires it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from synthlang.plan.program import ModelSpec, Program, SourceSpec

PLAN_VERSION = 1
CHARS_PER_TOKEN = 4
"""Rough characters per token for English text (used only for estimates)."""


def model_prices(m: ModelSpec | None) -> tuple[float, float] | None:
    """(USD per million prompt tokens, USD per million completion tokens), or ``None`` when unknown."""
    if m is None:
        return None
    o = m.options
    pin = o.get("price_input", o.get("price_in"))
    pout = o.get("price_output", o.get("price_out"))
    if pin is None and pout is None:
        # Local engines bill no tokens: their cost is known to be zero unless a price is declared.
        return (0.0, 0.0) if m.kind in ("embedded", "fake", "vllm") else None
    try:
        return float(pin or 0), float(pout or 0)
    except (TypeError, ValueError):
        return None


def estimate(prog: Program, count: Callable[[SourceSpec], tuple[int | None, int]] | None = None) -> dict[str, Any]:
    """The plan as a JSON-able dict: recipe, models, sources, steps (in order), exports, budget, totals.

    Args:
        prog: the checked program.
        count: ``source -> (rows or None when unknown, mean characters per row)``.

    Each step has: name, operator, input, model, engine, n, rows, calls,
    prompt_tokens, completion_tokens, tokens, usd (``None`` without a
    price), fields_in (name → type), fields_added.
    """
    rows: dict[str, int | None] = {}
    width: dict[str, int] = {}
    sources = []
    for s in prog.sources.values():
        n, w = count(s) if count is not None else (None, 0)
        rows[s.name], width[s.name] = n, w
        sources.append({"name": s.name, "loader": s.loader, "path": s.path.name if s.path else None, "rows": n,
                        "fields": prog.node_fields(s.name)})
    steps: list[dict[str, Any]] = []
    total_calls = total_tokens = 0
    total_usd: float | None = None
    unknown_rows = False
    # loop bodies are estimated for round 0 (they read the whole pool then); later rounds read only new rows
    loops = list(getattr(prog, "loops", None) or [])  # Program.loops exists once the loop checker is merged
    loop_of = {b.name: lp for lp in loops for b in lp.steps}
    ordered = list(prog.steps)
    for lp in sorted(loops, key=lambda lp: -lp.position):
        ordered[lp.position:lp.position] = lp.steps
    for st in ordered:
        n_in = rows.get(st.input)
        if st.input not in rows and st.input.endswith((".all", ".new")):  # lang: a loop's pool read, round 0
            n_in = rows.get(st.input.rsplit(".", 1)[0])
        n = int(st.opts.get("n") or 1) if st.op.uses_model else 1
        out_rows = n_in * n if n_in is not None else None
        if st.op.name == "cross" and out_rows is not None:  # papersb (issue 15): k rows of `with` per input row
            other, k = rows.get(st.opts.get("with") or ""), int(st.opts.get("k") or 0)
            per = (min(k, other) if k else other) if other is not None else (k or None)
            out_rows = out_rows * per if per is not None else None
        calls = out_rows if st.op.uses_model else 0
        prompt_tok = compl_tok = 0
        usd: float | None = None
        if st.op.uses_model and st.model is not None and calls is not None:
            max_tok = int(st.opts.get("max_tokens") or st.model.sampling.max_tokens)
            prompt_chars = len(st.opts.get("prompt") or "") + len(st.opts.get("system") or "") + width.get(st.input, 0)
            prompt_tok = calls * (prompt_chars // CHARS_PER_TOKEN)
            compl_tok = calls * max_tok
            prices = model_prices(st.model)
            if prices is not None:
                usd = round((prompt_tok * prices[0] + compl_tok * prices[1]) / 1e6, 6)
                total_usd = round((total_usd or 0) + usd, 6)
        if calls is None:
            unknown_rows = True
        rows[st.name] = out_rows
        width[st.name] = width.get(st.input, 0) + (800 if st.op.uses_model else 20)
        total_calls += calls or 0
        total_tokens += prompt_tok + compl_tok
        added = [f for f in st.fields_out if f not in st.fields_in] or [st.rename[o.name] for o in st.op.outputs]
        lp = loop_of.get(st.name)
        if lp is not None and any(fed == st.name for _, fed in lp.feeds):
            rows[lp.name] = out_rows  # what the loop feeds back in round 0
        steps.append({
            "name": st.name, "operator": st.op.name, "input": st.input,
            "loop": {"name": lp.name, "rounds": lp.rounds, "estimate": "round 0", "reads": _reads(st)} if lp is not None else None,
            "model": st.model.name if st.model else None, "engine": st.model.describe() if st.model else None,
            "sampling": _sampling(st),
            "n": n, "rows": out_rows, "calls": calls,
            "prompt_tokens": prompt_tok, "completion_tokens": compl_tok, "tokens": prompt_tok + compl_tok, "usd": usd,
            "fields_in": dict(sorted(st.fields_in.items())), "fields_added": added,
            # how verify/probe compare answers (number, choice, yesno, label, text; auto = per row from the gold)
            **({"answer_type": st.opts.get("answer_type") or "auto"} if "answer_type" in st.op.options else {}),
        })
    used = {st.model.name for st in prog.steps if st.model is not None}
    return {
        "plan_version": PLAN_VERSION,
        "recipe": prog.name,
        "description": prog.description,
        "params": prog.params,
        "models": {k: {"engine": m.kind, "model_id": m.model_id, "sampling": m.sampling.key_dict(),
                       "price_per_mtok": list(model_prices(m) or []) or None, "used": k in used}
                   for k, m in prog.models.items()},
        "sources": sources,
        "steps": steps,
        "exports": [{"step": e.step, "path": e.path.name, "format": e.format, "options": e.options} for e in prog.exports],
        "budget": prog.budget,
        "total": {"calls": total_calls, "tokens": total_tokens, "usd": total_usd, "complete": not unknown_rows},
    }


def _sampling(st: Any) -> dict[str, Any] | None:
    """lang (issue 10): the effective sampling of an LLM step: its model's, with the step's own overrides."""
    if not st.op.uses_model or st.model is None:
        return None
    over = {k: st.opts[k] for k in ("temperature", "top_p", "max_tokens") if st.opts.get(k) is not None}
    return {**st.model.sampling.key_dict(), **over}


def _reads(st: Any) -> dict[str, str]:
    """lang (issue 10): what a loop body step reads: its input and node options (``POOL.all``/``POOL.new``/a node)."""
    from synthlang.ops.base import KIND_NODE

    return {"input": st.input, **{k: v for k, v in st.opts.items() if k in st.op.options
                                  and st.op.options[k].kind == KIND_NODE and isinstance(v, str)}}


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    return text.replace('"', "'")


def to_mermaid(plan: dict[str, Any]) -> str:
    """The graph as a Mermaid flowchart: sources as cylinders, steps as boxes, edges input → step."""
    lines = ["flowchart TD"]
    for s in plan["sources"]:
        rows = "?" if s["rows"] is None else s["rows"]
        lines.append(f"  {_id(s['name'])}[(\"{_label(s['name'])}: {s['loader']} · {rows} rows\")]")
    for st in plan["steps"]:
        label = f"{st['name']}: {st['operator']}" + (f" · {st['model']}" if st["model"] else "")
        if st["calls"]:
            label += f" · {st['calls']} calls"
        lines.append(f"  {_id(st['name'])}[\"{_label(label)}\"]")
        lines.append(f"  {_id(st['input'])} --> {_id(st['name'])}")
    for i, e in enumerate(plan["exports"]):
        lines.append(f"  export{i}[/\"{_label(e['path'])} ({e['format']})\"/]")
        lines.append(f"  {_id(e['step'])} --> export{i}")
    return "\n".join(lines) + "\n"


def to_json(plan: dict[str, Any]) -> str:
    """Canonical JSON text of a plan (used by ``--format json`` and the golden files)."""
    return json.dumps(plan, indent=2, ensure_ascii=False, default=str) + "\n"
