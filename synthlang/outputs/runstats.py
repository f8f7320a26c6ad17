"""A run's numbers, read back from the store: the funnel per step (and per loop round), failure reasons,
calls, tokens, USD cost, latency percentiles and yield per seed. ``synth show``, ``synth report`` and the
dataset card all read them from here, so the three agree with each other and with the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepFunnel:
    """One step (or one round of a loop step) of a run.

    Attributes:
        step: the step's name; ``round`` is set for a loop body step.
        rows_in / rows_out / failed: rows read, rows made with status ok, rows stored as failed.
        dropped: rows a row operator (filter, dedup, select) left out: ``rows_in - rows_out - failed`` (``None`` for
            LLM steps, where n samples make several rows per input).
        reasons: failure reason -> rows.
        calls_made / calls_cached / prompt_tokens / completion_tokens: calls sent in this run / answered from the cache,
            and the tokens of the calls this run made.
        usd: the cost of the calls this run made (``None`` when the model declares no price).
        latency_s: the latencies (seconds) of the calls this run made.
    """

    step: str
    operator: str
    round: int | None = None
    input: str | None = None
    model: str | None = None
    rows_in: int | None = None
    rows_out: int = 0
    failed: int = 0
    reused: int = 0
    dropped: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    calls_made: int = 0
    calls_cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    latency_s: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.step if self.round is None else f"{self.step}[round {self.round}]"


@dataclass
class RunStats:
    """Everything :func:`run_stats` reads about one run."""

    run_id: str
    recipe: str
    recipe_path: str | None
    status: str
    params: dict[str, Any]
    argv: list[str]
    started_at: Any
    wall_s: float | None
    steps: list[StepFunnel]
    models: dict[str, dict[str, Any]]

    @property
    def usd(self) -> float | None:
        vals = [s.usd for s in self.steps if s.usd is not None]
        return sum(vals) if vals else None

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps)

    @property
    def calls_made(self) -> int:
        return sum(s.calls_made for s in self.steps)


def _reason(err: str | None) -> str:
    """A failure's reason without the row-specific tail: the text before the first ':' (at most 80 characters)."""
    if not err:
        return "unknown"
    head = err.split(":", 1)[0].strip() if ":" in err[:80] else err
    return head[:80]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation, ``None`` for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def run_stats(store: Any, run_id: str, program: Any = None) -> RunStats:
    """Read a run's funnel and costs from the store.

    Args:
        store: an open store.
        run_id: the run (a unique prefix is enough).
        program: the checked program, for model prices and loop feeds (``None``: rebuilt from the run's recipe file).

    Raises:
        ConfigError: no such run.
    """
    from synthlang.outputs import read

    info = read.run_info(store, run_id)
    run_id = info.run_id
    if program is None:
        program = read.load_program(info)
    _, steps = store.query(
        "SELECT step, operator, input, model, engine, model_id, rows_in, rows_out, rows_failed, calls_made, calls_cached, "
        "prompt_tokens, completion_tokens FROM steps WHERE run_id = ? ORDER BY rowid", [run_id])
    _, counts = store.query(
        "SELECT rr.step, r.round, r.status, r.error, bool_or(rr.reused), count(*), sum(CASE WHEN rr.reused THEN 1 ELSE 0 END) "
        "FROM run_rows rr JOIN rows r USING (row_id) WHERE rr.run_id = ? GROUP BY ALL", [run_id])
    _, calls = store.query(
        "SELECT step, count(*), sum(coalesce(prompt_tokens, 0)), sum(coalesce(completion_tokens, 0)), list(latency_s), "
        "list(meta) FROM calls WHERE run_id = ? AND error IS NULL GROUP BY step", [run_id])
    per: dict[tuple[str, int], dict[str, Any]] = {}
    for step, rnd, status, err, _, n, reused in counts:
        d = per.setdefault((step, rnd or 0), {"ok": 0, "failed": 0, "reasons": {}, "reused": 0})
        d["reused"] += int(reused or 0)
        if status == "ok":
            d["ok"] += n
        else:
            d["failed"] += n
            d["reasons"][_reason(err)] = d["reasons"].get(_reason(err), 0) + n
    call_info = {c[0]: c for c in calls}
    loop_steps = {b.name: lp for lp in (program.loops if program else []) for b in lp.steps}
    specs = {s.name: s for s in (program.steps if program else [])} | {b.name: b for lp in (program.loops if program else [])
                                                                        for b in lp.steps}
    models: dict[str, dict[str, Any]] = {}
    out: list[StepFunnel] = []
    for (step, op, inp, model, engine, model_id, r_in, _r_out, _r_failed, _c_made, c_cached, _pt, _ct) in steps:
        rounds = sorted(r for (s, r) in per if s == step)
        spec = specs.get(step)
        prices = None
        if spec is not None and spec.model is not None:
            from synthlang.plan.estimate import model_prices

            prices = model_prices(spec.model)
            models.setdefault(spec.model.name, {"engine": spec.model.kind, "model_id": spec.model.model_id or "(default)",
                                                "sampling": _sampling(spec.model), "price_per_mtok": prices})
        elif model:
            models.setdefault(model, {"engine": engine, "model_id": model_id or "(default)", "sampling": {}, "price_per_mtok": None})
        ci = call_info.get(step)
        made, p_tok, c_tok = (ci[1], int(ci[2] or 0), int(ci[3] or 0)) if ci else (0, 0, 0)
        lat = [x for x in (ci[4] if ci else []) if x is not None]
        usd = None
        metas = [json.loads(m) for m in (ci[5] if ci else []) if m]
        if any(isinstance(m, dict) and isinstance(m.get("cost_usd"), (int, float)) for m in metas):
            usd = sum(float(m.get("cost_usd") or 0) for m in metas if isinstance(m, dict))
        elif prices is not None:
            usd = (p_tok * prices[0] + c_tok * prices[1]) / 1e6
        elif op == "source" or not model:
            usd = 0.0
        if step in loop_steps and rounds:
            for i, rnd in enumerate(rounds):
                d = per[(step, rnd)]
                f = StepFunnel(step, op, rnd, inp, model, None, d["ok"], d["failed"], d["reused"], None, d["reasons"])
                f.rows_in = _loop_rows_in(per, inp, rnd, loop_steps[step], specs)
                if f.rows_in is not None and op in _ROW_OPS:
                    f.dropped = f.rows_in - f.rows_out - f.failed
                if i == 0:   # calls, tokens and cost of all rounds sit on the first round's line
                    f.calls_made, f.calls_cached, f.prompt_tokens, f.completion_tokens = made, 0, p_tok, c_tok
                    f.usd, f.latency_s = usd, lat
                out.append(f)
            continue
        d = per.get((step, 0), {"ok": 0, "failed": 0, "reasons": {}, "reused": 0})
        f = StepFunnel(step, op, None, inp, model, None if op == "source" else r_in, d["ok"], d["failed"], d["reused"], None,
                       d["reasons"],
                       made, max(int(c_cached or 0), 0), p_tok, c_tok, usd, lat)
        if op in _ROW_OPS and r_in is not None:
            f.dropped = r_in - f.rows_out - f.failed
        out.append(f)
    # a step the run started but did not finish (interrupted, budget, killed) has rows but no line in `steps`
    done = {f.step for f in out}
    _, partial = store.query("SELECT rr.step, any_value(r.operator), any_value(r.model) FROM run_rows rr JOIN rows r "
                             "USING (row_id) WHERE rr.run_id = ? GROUP BY rr.step ORDER BY min(r.created_at)", [run_id])
    for step, op, model in partial:
        if step in done:
            continue
        d = per.get((step, 0), {"ok": 0, "failed": 0, "reasons": {}, "reused": 0})
        ci = call_info.get(step)
        f = StepFunnel(step, op or "?", None, None, model, None, d["ok"], d["failed"], d["reused"], None, d["reasons"],
                       ci[1] if ci else 0, 0, int(ci[2] or 0) if ci else 0, int(ci[3] or 0) if ci else 0, None,
                       [x for x in (ci[4] if ci else []) if x is not None])
        spec = specs.get(step)
        if spec is not None and spec.model is not None:
            from synthlang.plan.estimate import model_prices

            pr = model_prices(spec.model)
            if pr is not None:
                f.usd = (f.prompt_tokens * pr[0] + f.completion_tokens * pr[1]) / 1e6
        out.append(f)
    return RunStats(run_id, info.recipe, info.recipe_path, info.status, info.params, info.argv, info.started_at,
                    info.wall_s, out, models)


_ROW_OPS = ("filter", "dedup", "select", "curriculum", "verify")


def _loop_rows_in(per: dict[tuple[str, int], dict[str, Any]], inp: str | None, rnd: int, lp: Any,
                  specs: dict[str, Any]) -> int | None:
    """Rows a loop body step read in one round: its input's ok rows that round, or the pool's rows for that round."""
    if inp is None:
        return None
    if inp in {b.name for b in lp.steps}:
        return per.get((inp, rnd), {}).get("ok", 0)
    if rnd == 0:
        return per.get((inp, 0), {}).get("ok")
    fed = [s for p, s in lp.feeds if p == inp]
    return sum(per.get((s, rnd - 1), {}).get("ok", 0) for s in fed) if fed else None


def _sampling(m: Any) -> dict[str, Any]:
    s = m.sampling
    try:
        from dataclasses import asdict

        d = asdict(s)
    except TypeError:
        d = dict(vars(s))
    return {k: v for k, v in d.items() if v is not None and v != () and v != []}


def seed_yield(store: Any, run_id: str, step: str) -> list[tuple[str, int]]:
    """Rows of ``step`` per seed ancestor (``[(seed row id, rows)]``, seeds with 0 rows included, most first)."""
    from synthlang.outputs.read import seed_ancestors, step_rows

    rows = step_rows(store, run_id, step)
    anc = seed_ancestors(store, [r.row_id for r in rows])
    _, seeds = store.query("SELECT rr.row_id FROM run_rows rr JOIN rows r USING (row_id) WHERE rr.run_id = ? "
                           "AND r.operator = 'source' AND r.status = 'ok'", [run_id])
    out: dict[str, int] = {s: 0 for (s,) in seeds}
    for r in rows:
        a = anc.get(r.row_id, r.row_id)
        out[a] = out.get(a, 0) + 1
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))
