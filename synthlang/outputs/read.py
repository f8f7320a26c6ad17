"""Reading a run's rows back from the store for exports, cards and reports (SQL over the DuckDB store).

Rows come out in *input order*, the order the runner made them in: a source's rows in file order,
a step's rows in the order of their parents, samples by index, a loop's rounds one after the other.
The runner stores each row's canonical position in its step as ``run_rows.ord`` (the streaming
scheduler's order key: the parent's key plus the sample index, as text that sorts like the tuple), so
rows come out in the same order whatever order the calls finished in. Rows sort by (round, ord).

A loop's name (``grow``) names the rows it fed back, all rounds; a pool that a loop fed
(``feed seeds from fresh``) holds its own rows and then those fed rows. Both need the program
(its loops), which the caller passes; :func:`load_program` rebuilds it from the run's recipe file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError, SynthError
from synthlang.store.store import loads_json


@dataclass
class Row:
    """One exported row.

    Attributes:
        row_id: the row's id in the store.
        data: its fields.
        parent: its first lineage parent (``None`` for seed rows).
        round: the loop round that made it (0 outside loops).
    """

    row_id: str
    data: dict[str, Any]
    parent: str | None = None
    round: int = 0
    status: str = "ok"
    group: str | None = None


@dataclass
class RunInfo:
    """A run's row in ``runs``, as a dict-like record."""

    run_id: str
    recipe: str
    recipe_path: str | None
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    argv: list[str] = field(default_factory=list)
    started_at: Any = None
    wall_s: float | None = None


def run_info(store: Any, run_id: str) -> RunInfo:
    """The run ``run_id`` (a unique prefix is enough).

    Raises:
        ConfigError: no run, or an ambiguous prefix.
    """
    _, rows = store.query("SELECT run_id, recipe, recipe_path, status, params, recipe_fingerprint, argv, started_at, wall_s "
                          "FROM runs WHERE run_id LIKE ? ORDER BY started_at LIMIT 2", [run_id + "%"])
    if not rows:
        raise ConfigError(f"no run '{run_id}' in {store.path} (list them with: synth runs)")
    if len(rows) > 1 and rows[0][0] != run_id:
        raise ConfigError(f"run id prefix '{run_id}' is ambiguous; give more characters")
    r = rows[0]
    return RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else {}, r[5], json.loads(r[6]) if r[6] else [],
                   r[7], r[8])


def latest_run(store: Any) -> str | None:
    """The id of the most recent run, or ``None`` for an empty store."""
    _, rows = store.query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
    return rows[0][0] if rows else None


def load_program(info: RunInfo) -> Any:
    """Check the run's recipe file again with the run's params; ``None`` when it is gone or no longer checks."""
    if not info.recipe_path or not Path(info.recipe_path).is_file():
        return None
    from synthlang.api import check_file

    try:
        return check_file(info.recipe_path, {k: json.dumps(v) if not isinstance(v, str) else v
                                             for k, v in info.params.items()})
    except SynthError:
        try:
            return check_file(info.recipe_path)
        except SynthError:
            return None


def loop_of(program: Any, name: str) -> Any:
    return next((lp for lp in (program.loops if program else []) if lp.name == name), None)


def fed_by(program: Any, pool: str) -> list[tuple[Any, str]]:
    """``(loop, step)`` pairs that feed ``pool``."""
    return [(lp, step) for lp in (program.loops if program else []) for p, step in lp.feeds if p == pool]


def steps_of_run(store: Any, run_id: str) -> set[str]:
    _, rows = store.query("SELECT step FROM run_rows WHERE run_id = ? UNION SELECT step FROM steps WHERE run_id = ?",
                          [run_id, run_id])
    return {r[0] for r in rows}


def find_run(store: Any, step: str, program: Any = None) -> str:
    """The latest run that made ``step`` (a step, a source, a loop or a pool).

    Raises:
        ConfigError: no run has it.
    """
    if program is None:   # a loop's name is no step in the store: look for it in the recipes of recent runs
        _, recent = store.query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 20")
        tried: set[str] = set()
        for (rid,) in recent:
            info = run_info(store, rid)
            if info.recipe_path in tried:
                continue
            tried.add(info.recipe_path or "")
            prog = load_program(info)
            if loop_of(prog, step) is not None:
                return find_run(store, step, prog)
    lp = loop_of(program, step)
    names = [s for _, s in lp.feeds] if lp else [step]
    _, rows = store.query("SELECT s.run_id FROM (SELECT run_id, step FROM run_rows UNION SELECT run_id, step FROM steps) s "
                          "JOIN runs r USING (run_id) WHERE s.step IN (SELECT unnest(?)) "
                          "ORDER BY r.started_at DESC LIMIT 1", [names])
    if not rows:
        _, rr = store.query("SELECT DISTINCT step FROM run_rows ORDER BY step")
        import difflib

        known = [r[0] for r in rr] + [lp.name for lp in (program.loops if program else [])]
        close = difflib.get_close_matches(step, known, n=1)
        raise ConfigError(f"no run in {store.path} has a step '{step}'"
                          + (f"; did you mean '{close[0]}'?" if close else f"; steps: {', '.join(known) or 'none'}"))
    return str(rows[0][0])


_ORDERED = """
WITH target AS (SELECT r.row_id, r.round, r.status, r.data, rr.ord
                FROM run_rows rr JOIN rows r ON r.row_id = rr.row_id
                WHERE rr.run_id = ? AND rr.step = ? {status}),
  first_parent AS (SELECT child_id, min(parent_id) AS parent_id FROM lineage
                   WHERE child_id IN (SELECT row_id FROM target) GROUP BY child_id)
SELECT t.row_id, t.data, t.round, t.status, fp.parent_id, t.ord
FROM target t LEFT JOIN first_parent fp ON fp.child_id = t.row_id
ORDER BY t.round, t.ord NULLS LAST, t.row_id
"""


def step_rows(store: Any, run_id: str, step: str, include_failed: bool = False) -> list[Row]:
    """The rows ``run_id`` made or reused for ``step``, in input order (see the module doc)."""
    sql = _ORDERED.format(status="" if include_failed else "AND r.status = 'ok'")
    _, rows = store.query(sql, [run_id, step])
    return [Row(rid, loads_json(d) if d else {}, parent, rnd or 0, status) for rid, d, rnd, status, parent, _ in rows]


def iter_step_rows(store: Any, run_id: str, step: str, include_failed: bool = False, chunk: int = 4096) -> Any:
    """:func:`step_rows` a chunk at a time (lists of :class:`Row`), read from the store as they are written out."""
    sql = _ORDERED.format(status="" if include_failed else "AND r.status = 'ok'")
    for rows in store.iter_query(sql, [run_id, step], chunk):
        yield [Row(rid, loads_json(d) if d else {}, parent, rnd or 0, status) for rid, d, rnd, status, parent, _ in rows]


def export_rows_of(store: Any, run_id: str, step: str, program: Any = None, include_failed: bool = False) -> list[Row]:
    """The rows an export of ``step`` writes: a step's own rows, a loop's fed rows, or a pool with what was fed to it.

    A fed row keeps the pool's fields only (as the loop saw it).
    """
    lp = loop_of(program, step)
    if lp is not None:
        pool = lp.feeds[0][0]
        return _fed(store, run_id, program, [(lp, s) for p, s in lp.feeds if p == pool], pool, set())
    rows = step_rows(store, run_id, step, include_failed)
    feeds = fed_by(program, step)
    if feeds:
        rows += _fed(store, run_id, program, feeds, step, {r.row_id for r in rows})
    return rows


def _fed(store: Any, run_id: str, program: Any, feeds: list[tuple[Any, str]], pool: str, seen: set[str]) -> list[Row]:
    keep = list(program.node_fields(pool))
    fed: list[Row] = []
    for _, s in feeds:
        fed += step_rows(store, run_id, s)
    fed.sort(key=lambda r: r.round)   # stable: rounds in order, input order within a round
    out = []
    for r in fed:
        if r.row_id in seen:
            continue
        seen.add(r.row_id)
        out.append(Row(r.row_id, {k: r.data.get(k) for k in keep}, r.parent, r.round))
    return out


def seed_ancestors(store: Any, row_ids: list[str]) -> dict[str, str]:
    """Each row's seed ancestor: the root reached by following lineage up (first parent by id at a join).

    Rows of one seed (its rephrasings, answers, samples, and anything made from them in any round)
    share a seed ancestor; a lineage-safe split keeps them together.
    """
    if not row_ids:
        return {}
    sql = """
    WITH RECURSIVE
      first_parent AS (SELECT child_id, min(parent_id) AS parent_id FROM lineage GROUP BY child_id),
      up(target, node, depth) AS (
        SELECT t, t, 0 FROM (SELECT unnest(?) AS t)
        UNION ALL
        SELECT up.target, fp.parent_id, up.depth + 1 FROM up JOIN first_parent fp ON fp.child_id = up.node
        WHERE up.depth < 64)
    SELECT target, arg_max(node, depth) FROM up GROUP BY target"""
    _, rows = store.query(sql, [row_ids])
    return {t: root for t, root in rows}


def field_types(program: Any, step: str) -> dict[str, str] | None:
    """The declared field types of a step, source, loop or pool (``None`` without a program)."""
    if program is None:
        return None
    try:
        types = dict(program.node_fields(step))
    except KeyError:
        return None
    for st in program.steps + [b for lp in program.loops for b in lp.steps]:   # a derived source field's type, when a step knows it
        for k, t in st.fields_in.items():
            if types.get(k) == "any" and t != "any":
                types[k] = t
    return types


def sample_groups(store: Any, row_ids: list[str]) -> dict[str, str]:
    """Each row's *sampling parent*: the parent of its nearest ancestor-or-self made by a step that drew several
    samples per input (``answer(..., n=4)``: some row of that step has ``sample_index > 0``).

    The n samples of one prompt and every row made from them one-to-one afterwards (``verify``, ``judge``) share
    a sampling parent, so they can be ranked against each other. Rows with no such ancestor map to their parent.
    """
    if not row_ids:
        return {}
    sql = """
    WITH RECURSIVE
      first_parent AS (SELECT child_id, min(parent_id) AS parent_id FROM lineage GROUP BY child_id),
      fanout AS (SELECT DISTINCT step FROM rows WHERE sample_index > 0),
      up(target, node, depth, done) AS (
        SELECT t, t, 0, (SELECT step IN (SELECT step FROM fanout) FROM rows WHERE row_id = t) FROM (SELECT unnest(?) AS t)
        UNION ALL
        SELECT up.target, fp.parent_id, up.depth + 1, r.step IN (SELECT step FROM fanout)
        FROM up JOIN first_parent fp ON fp.child_id = up.node JOIN rows r ON r.row_id = fp.parent_id
        WHERE NOT coalesce(up.done, false) AND up.depth < 64)
    SELECT u.target, fp.parent_id FROM up u LEFT JOIN first_parent fp ON fp.child_id = u.node
    WHERE coalesce(u.done, false)"""
    _, rows = store.query(sql, [row_ids])
    return {t: p for t, p in rows if p is not None}
