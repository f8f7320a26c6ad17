"""Running ``loop`` blocks: rounds, feeding new rows back, ``until``, external training.

A body step reads a fed pool explicitly (check/loops.py): ``POOL.all`` is the
pool before the loop plus every row fed so far; ``POOL.new`` is the rows fed in
the round before (in round 0, the pool before the loop). Other nodes are read
whole every round. Each round is a sub-graph of the body, streamed like the top
level (:mod:`synthlang.execute.scheduler`); the round state lives in the loop
node. A body step's row ids mix the round into its fingerprint, so the same parent makes a
different row in each round, and ``rows.round`` / ``lineage.round`` record it.
Everything is content-addressed, so a run killed mid-loop resumes by replaying
the rounds: finished rows are reused, finished calls come from the cache, and a
training command that already exited 0 on the same rows is not run again.

An optional ``train="cmd {data} {out} {round}"`` runs between rounds (never
after the last). synthlang writes the pool so far to ``{data}`` (JSONL) and
records the command, exit status, output path and output tail in the table
``train_runs``. synthlang itself never trains. Because a shared recipe must not
run arbitrary code, the command only runs when its recipe file was allowed
(``--allow-train RECIPE``, see :mod:`synthlang.plan.train`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthlang.errors import ConfigError
from synthlang.execute.scheduler import hydrate, round_fingerprint
from synthlang.expr import evaluate
from synthlang.plan.keys import digest
from synthlang.plan.program import LoopSpec
from synthlang.plan.train import is_allowed as train_allowed

if TYPE_CHECKING:
    from synthlang.execute.runner import Runner
    from synthlang.execute.scheduler import Graph, Row

Rows = list[tuple[str, dict[str, Any]]]


def run_loop_node(graph: Graph, lp: LoopSpec, inputs: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """Run one loop to its end, each round a sub-graph of the body (streamed like the top level).

    Args:
        graph: the graph the loop node belongs to (its runner, store, engines).
        lp: the loop.
        inputs: every name the body reads from outside it, whole, in canonical order.

    Returns:
        The loop's outputs by name: each pool with every row fed back, each body step with all
        rounds' rows, and the loop's own name with every row fed back (all rounds).

    Raises:
        ConfigError: the loop has ``train=`` but its recipe file was not allowed.
    """
    from synthlang.execute.scheduler import Graph, Row, StepNode, sort_rows

    if lp.train and not train_allowed(lp):   # allowed per recipe file and digest (plan/train.py)
        raise ConfigError(f"loop '{lp.name}' runs an external command between rounds ({lp.train!r}); "
                          "allow it with --allow-train RECIPE")
    runner = graph.runner
    prog = runner.program
    pools = list(dict.fromkeys(p for p, _ in lp.feeds))
    pool_fields = {p: list(prog.node_fields(p)) for p in pools}
    # the round state lives here, in the loop node's thread
    everything: dict[str, list[Row]] = {p: list(inputs[p]) for p in pools}
    seen: dict[str, set[str]] = {p: {r.rid for r in everything[p]} for p in pools}
    current: dict[str, list[Row]] = {p: list(everything[p]) for p in pools}
    per_step: dict[str, list[Row]] = {st.name: [] for st in lp.steps}
    fed_all: list[Row] = []
    for r in range(lp.rounds):
        sub = Graph(runner, round_=r, whole=everything)
        # a body step reads a pool's rows of the last round (all of them in round 0); `against=POOL` reads it whole
        sub.external = {**inputs, **current}
        for p in pools:   # lang (issue 10): explicit reads in the body (check/loops.py): POOL.all and POOL.new
            sub.external[f"{p}.all"] = everything[p]
            sub.external[f"{p}.new"] = current[p]
        providers: dict[str, StepNode] = {}
        for st in lp.steps:
            node = StepNode(sub, replace(st, fingerprint=round_fingerprint(st.fingerprint, r)), f"{st.name}[round {r}]")
            sub.add(node)
            for name in node.main + node.side:
                sub.connect(providers.get(name), name, node)
            providers[st.name] = node
            sub.keep_output(node, st.name)
        sub.run()
        if runner._stop is not None:
            return {}
        new: dict[str, list[Row]] = {p: [] for p in pools}
        for rows in sub.kept.values():   # rows reused by id carry no data yet: pools and training read it
            hydrate(runner.store, rows)
        for st in lp.steps:
            per_step[st.name].extend(Row(x.rid, x.data, (r, *x.ord), x.parents) for x in sort_rows(sub.kept.get(st.name, [])))
        for pool, step in lp.feeds:
            for x in sort_rows(sub.kept.get(step, [])):
                if x.rid in seen[pool]:
                    continue
                seen[pool].add(x.rid)
                row = Row(x.rid, {k: x.data.get(k) for k in pool_fields[pool]}, (r, *x.ord), x.parents)
                new[pool].append(row)
                fed_all.append(row)
        for p in pools:
            everything[p] = everything[p] + new[p]
            current[p] = new[p]
        n_new = sum(len(v) for v in new.values())
        stop = n_new == 0 or r + 1 >= lp.rounds
        if lp.until is not None and not stop:
            stats = {"round": r, "new_rows": n_new, "pool_rows": len(everything[pools[0]])}
            stop = bool(evaluate(lp.until, stats, prog.params))
        if stop:
            break
        if lp.train:
            _train(runner, lp, r, [(x.rid, x.data) for x in everything[pools[0]]])
    out: dict[str, list[Row]] = {}
    for p in pools:
        out[p] = [Row(x.rid, x.data, (j,), x.parents) for j, x in enumerate(everything[p])]
    for name, rows in per_step.items():
        out[name] = rows
    out[lp.name] = [Row(x.rid, x.data, (j,), x.parents) for j, x in enumerate(fed_all)]
    return out


def _train(runner: Runner, lp: LoopSpec, round_: int, pool: Rows) -> None:
    """Run the loop's training command on the pool so far and record it in ``train_runs``."""
    assert lp.train is not None
    folder = runner.program.base_dir / ".synth" / "train" / lp.name / f"round{round_}"
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / "data.jsonl"
    out_path = folder / "output"
    inputs = digest(sorted(rid for rid, _ in pool))
    command = lp.train.format(data=shlex.quote(str(data_path)), out=shlex.quote(str(out_path)), round=round_)
    if runner.store.finished_train(lp.name, round_, command, inputs):
        runner.revisions[lp.name] = checkpoint_revision(out_path, command, inputs)
        return
    with open(data_path, "w", encoding="utf-8") as f:
        for _, data in pool:
            f.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    env = {**os.environ, "SYNTH_ROUND": str(round_), "SYNTH_TRAIN_DATA": str(data_path), "SYNTH_TRAIN_OUT": str(out_path)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(shlex.split(command), cwd=runner.program.base_dir, env=env, capture_output=True, text=True)
        status, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
    except OSError as exc:
        status, tail = 127, f"cannot start: {exc}"
    runner.store.record_train(runner.run_id, {
        "loop": lp.name, "round": round_, "command": command, "data_path": str(data_path),
        "output_path": str(Path(out_path)), "inputs_digest": inputs, "exit_status": status, "output_tail": tail,
        "seconds": time.perf_counter() - t0})
    if status != 0:
        raise ConfigError(f"loop '{lp.name}' round {round_}: training command exited with status {status}: {tail[-300:]}")
    runner.revisions[lp.name] = checkpoint_revision(out_path, command, inputs)


def checkpoint_revision(out: Path, command: str, inputs: str) -> tuple[str, str]:
    """lang (issue 10): ``(checkpoint path, revision)`` of a training run, for models with ``trained_by=LOOP``.

    The revision is the sha256 of the checkpoint's bytes (a file, or every file of a folder by
    relative path); without a checkpoint on disk, a digest of the recorded run (command and
    input rows). A folder holding exactly one ``.gguf`` file gives that file's path.
    """
    import hashlib

    h = hashlib.sha256()
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else ([out] if out.is_file() else [])
    for f in files:
        h.update(str(f.relative_to(out) if out.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    rev = h.hexdigest() if files else digest({"command": command, "inputs": inputs})
    ggufs = [f for f in files if f.suffix == ".gguf"]
    return str(ggufs[0] if len(ggufs) == 1 else out), rev
