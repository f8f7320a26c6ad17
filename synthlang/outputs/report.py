"""``synth report RUN -o report.html``: one self-contained HTML page about a run.

The page holds the funnel per step as a chart and a table, failure reasons, tokens and cost per step
and per model, call latency percentiles, yield per seed, and a sample of rows with their lineage trees.

Plots are made with **plotly** (``plotly.graph_objects``), with its JavaScript inlined once
(``include_plotlyjs=True``): the page needs no network and no CDN, works from a file:// URL, and
the charts stay interactive (hover shows the exact counts). matplotlib's SVG would be static, and
Vega-Lite would need its JS from npm at build time; plotly is one PyPI wheel, well kept, and its
``to_html`` is made for exactly this. Every number in a chart is also in a plain HTML table (ids
``funnel``, ``failures``, ``cost``, ``latency``) so that the page can be read and tested without JS.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
td:first-child,th:first-child{text-align:left}.meta td{text-align:left}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5rem;font-size:.8rem}
ul.tree{list-style:none;padding-left:1.2rem;border-left:1px dotted #aaa}.tree .step{font-weight:600}.failed{color:#b00}
.fields{color:#555;font-size:.85rem}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _table(tid: str, cols: list[str], rows: list[list[Any]], row_attrs: list[dict[str, str]] | None = None) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for i, r in enumerate(rows):
        attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in (row_attrs[i] if row_attrs else {}).items())
        cells = "".join(f'<td data-col="{_e(c)}">{_e(v)}</td>' for c, v in zip(cols, r, strict=False))
        body.append(f"<tr{attrs}>{cells}</tr>")
    return f'<table id="{tid}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _tree(n: dict[str, Any], parent: dict[str, Any] | None, depth: int = 0) -> str:
    new = {k: v for k, v in (n.get("data") or {}).items() if parent is None or (parent.get("data") or {}).get(k) != v}
    fields = "  ".join(f"{k}={(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)[:160]}"
                       for k, v in list(new.items())[:6])
    status = "" if n.get("status") == "ok" else f' <span class="failed">{_e(n.get("status"))}: {_e(n.get("error"))}</span>'
    kids = "".join(_tree(p, p["parents"][0] if p["parents"] else None, depth + 1) for p in n.get("parents", []))
    return (f'<li><span class="step">{_e(n.get("step"))}</span> ({_e(n.get("operator"))}) <code>{_e(n["row_id"][:12])}</code>'
            f'{status}<div class="fields">{_e(fields)}</div>' + (f'<ul class="tree">{kids}</ul>' if kids else "") + "</li>")


def build_report(store: Any, run_id: str, program: Any = None, sample: int = 5) -> str:
    """The report page of a run, as HTML text.

    Args:
        store: an open store.
        run_id: the run (a unique prefix is enough).
        program: the checked program (``None``: rebuilt from the run's recipe file, for prices and loops).
        sample: how many rows of the last step to show with their lineage.

    Raises:
        ConfigError: no such run, or plotly is not installed.
    """
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ConfigError("synth report needs plotly: pip install plotly") from None
    from synthlang.outputs.read import step_rows
    from synthlang.outputs.runstats import percentile, run_stats, seed_yield

    st = run_stats(store, run_id, program)
    labels = [f.label for f in st.steps]
    charts: list[str] = []
    first = [True]

    def add(fig: Any, title: str) -> None:
        fig.update_layout(title=title, height=360, margin={"l": 40, "r": 20, "t": 50, "b": 80}, template="plotly_white")
        charts.append(fig.to_html(full_html=False, include_plotlyjs=first[0], config={"displaylogo": False}))
        first[0] = False

    fig = go.Figure()
    fig.add_bar(name="rows in", x=labels, y=[f.rows_in or 0 for f in st.steps])
    fig.add_bar(name="rows out", x=labels, y=[f.rows_out for f in st.steps])
    fig.add_bar(name="failed", x=labels, y=[f.failed for f in st.steps])
    fig.add_bar(name="dropped", x=labels, y=[f.dropped or 0 for f in st.steps])
    fig.update_layout(barmode="group")
    add(fig, "Funnel per step")
    funnel_html = charts[-1]
    funnel_tbl = _table("funnel", ["step", "operator", "rows in", "rows out", "failed", "dropped", "reused"],
                        [[f.label, f.operator, f.rows_in, f.rows_out, f.failed, f.dropped, f.reused] for f in st.steps],
                        [{"step": f.label, "rows-out": str(f.rows_out), "failed": str(f.failed)} for f in st.steps])
    reasons = [(f.label, r, n) for f in st.steps for r, n in sorted(f.reasons.items(), key=lambda kv: -kv[1])]
    fail_html = ""
    if reasons:
        fig = go.Figure(go.Bar(x=[n for _, _, n in reasons], y=[f"{s}: {r[:60]}" for s, r, _ in reasons], orientation="h"))
        add(fig, "Failure reasons")
        fail_html = charts[-1]
    fail_tbl = _table("failures", ["step", "reason", "rows"], [list(x) for x in reasons]) if reasons else "<p>No failed rows.</p>"
    llm = [f for f in st.steps if f.model]
    fig = go.Figure()
    fig.add_bar(name="prompt tokens", x=[f.label for f in llm], y=[f.prompt_tokens for f in llm])
    fig.add_bar(name="completion tokens", x=[f.label for f in llm], y=[f.completion_tokens for f in llm])
    fig.update_layout(barmode="stack")
    add(fig, "Tokens per step (calls made in this run)")
    tok_html = charts[-1]
    cost_tbl = _table("cost", ["step", "model", "calls made", "cached", "prompt tokens", "completion tokens", "USD"],
                      [[f.label, f.model, f.calls_made, f.calls_cached, f.prompt_tokens, f.completion_tokens,
                        "unknown" if f.usd is None else f"{f.usd:.4f}"] for f in llm])
    per_model: dict[str, list[Any]] = {}
    for f in llm:
        m = per_model.setdefault(f.model or "", [f.model, 0, 0, 0, 0.0])
        m[1] += f.calls_made
        m[2] += f.prompt_tokens
        m[3] += f.completion_tokens
        m[4] = None if f.usd is None or m[4] is None else m[4] + f.usd
    model_tbl = _table("models", ["model", "calls made", "prompt tokens", "completion tokens", "USD"],
                       [[m[0], m[1], m[2], m[3], "unknown" if m[4] is None else f"{m[4]:.4f}"] for m in per_model.values()])
    lat_rows = [[f.label, len(f.latency_s)] + [None if (p := percentile(f.latency_s, q)) is None else round(p, 3)
                                                for q in (50, 90, 95, 99)] + [round(max(f.latency_s), 3)]
                for f in llm if f.latency_s]
    lat_tbl = _table("latency", ["step", "calls", "p50 s", "p90 s", "p95 s", "p99 s", "max s"], lat_rows) if lat_rows \
        else "<p>No calls were made in this run (all answered from the cache).</p>"
    last = next((f.step for f in reversed(st.steps) if f.operator != "source" and f.round is None), None)
    yield_html = ""
    samples_html = ""
    if last is not None:
        ys = seed_yield(store, st.run_id, last)
        if ys:
            fig = go.Figure(go.Histogram(x=[n for _, n in ys]))
            fig.update_layout(xaxis_title=f"rows of '{last}' per seed", yaxis_title="seeds", bargap=0.1)
            add(fig, f"Yield per seed ({len(ys)} seeds, {sum(n for _, n in ys)} rows of '{last}')")
            yield_html = charts[-1] + f'<p id="yield" data-step="{_e(last)}" data-seeds="{len(ys)}" ' \
                f'data-zero="{sum(1 for _, n in ys if n == 0)}">{sum(1 for _, n in ys if n == 0)} of {len(ys)} seeds ' \
                f"gave no row of '{_e(last)}'.</p>"
        rows = step_rows(store, st.run_id, last)[:sample]
        trees = [f'<ul class="tree">{_tree(t, t["parents"][0] if t["parents"] else None)}</ul>'
                 for t in (store.lineage(r.row_id) for r in rows)]
        samples_html = "".join(trees) or "<p>No rows.</p>"
    meta = _table("run", ["", ""], [["run", st.run_id], ["recipe", st.recipe], ["recipe file", st.recipe_path],
                                    ["status", st.status], ["started", st.started_at],
                                    ["wall time s", None if st.wall_s is None else round(st.wall_s, 1)],
                                    ["params", json.dumps(st.params, ensure_ascii=False)],
                                    ["calls made", st.calls_made], ["tokens", st.tokens],
                                    ["USD", "unknown" if st.usd is None else f"{st.usd:.4f}"]])
    models = _table("model-specs", ["model", "engine", "model id", "sampling"],
                    [[k, m["engine"], m["model_id"], json.dumps(m["sampling"])] for k, m in st.models.items()])
    body = (f"<h1>Run {_e(st.run_id)} · {_e(st.recipe)}</h1>{meta}"
            f"<h2>Funnel</h2>{funnel_html}{funnel_tbl}"
            f"<h2>Failures</h2>{fail_html}{fail_tbl}"
            f"<h2>Tokens and cost</h2>{tok_html}{cost_tbl}<h3>Per model</h3>{model_tbl}{models}"
            f"<h2>Latency</h2>{lat_tbl}"
            f"<h2>Yield per seed</h2>{yield_html}"
            f"<h2>Sample rows with lineage</h2>{samples_html}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>synthlang run {_e(st.run_id)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body>{body}<footer><p>Written by synthlang from the run's store; self-contained (plotly inlined).</p>"
            "</footer></body></html>")


def write_report(store: Any, run_id: str, out: str | Path, program: Any = None) -> Path:
    """Write :func:`build_report`'s page to ``out`` (through a temp file in its folder, then a rename)."""
    from synthlang.execute.export import _atomic_file

    text = build_report(store, run_id, program)
    path = Path(out)
    _atomic_file(path, None, lambda f: f.write(text))
    return path
