"""``synth show [RUN]``: a run's summary again, from the store: the funnel per step (per round in loops), failures per
reason, filter drops, calls, tokens and USD cost."""

from __future__ import annotations

import argparse

from rich.table import Table
from rich.text import Text

from synthlang.cli.common import add_db, console, db_flag, db_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    add_db(p)


def main(args: argparse.Namespace) -> int:
    from synthlang.errors import ConfigError
    from synthlang.outputs.read import latest_run
    from synthlang.outputs.runstats import percentile, run_stats
    from synthlang.store import Store

    with Store(db_path(args), read_only=True) as store:
        run = args.run or latest_run(store)
        if run is None:
            raise ConfigError(f"no runs in {store.path}")
        st = run_stats(store, run)
    t = Table(title=Text(f"run {st.run_id} · {st.recipe} · {st.status}"))
    for c in ("step", "operator", "rows in", "rows out", "failed", "dropped", "calls", "cached", "tokens", "USD", "p50 s", "p95 s"):
        t.add_column(c, justify="left" if c in ("step", "operator") else "right")
    for f in st.steps:
        p50, p95 = percentile(f.latency_s, 50), percentile(f.latency_s, 95)
        t.add_row(Text(f.label), f.operator, "" if f.rows_in is None else str(f.rows_in), str(f.rows_out), str(f.failed),
                  "" if f.dropped is None else str(f.dropped), str(f.calls_made), str(f.calls_cached),
                  str(f.prompt_tokens + f.completion_tokens), "?" if f.usd is None else f"${f.usd:.4f}",
                  "" if p50 is None else f"{p50:.2f}", "" if p95 is None else f"{p95:.2f}")
    console.print(t)
    usd = st.usd
    missing = any(f.usd is None for f in st.steps)
    console.print(f"calls made: {st.calls_made} · tokens: {st.tokens} · cost: "
                  + ("unknown (a model declares no price)" if usd is None else f"${usd:.4f}" + (" + unknown" if missing else ""))
                  + (f" · wall time: {st.wall_s:.1f} s" if st.wall_s else ""), markup=False)
    reasons = [(f.label, r, n) for f in st.steps for r, n in sorted(f.reasons.items(), key=lambda kv: -kv[1])]
    if reasons:
        console.print("failures per reason:", markup=False)
        for label, r, n in reasons:
            console.print(Text(f"  {label}: {n} × {r}"))
    drops = [(f.label, f.dropped) for f in st.steps if f.dropped]
    if drops:
        console.print("rows dropped by row operators: " + ", ".join(f"{k} {v}" for k, v in drops), markup=False)
    console.print(f"report: synth report {st.run_id}{db_flag(args)} -o report.html", markup=False)
    return 0
