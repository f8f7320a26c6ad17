"""Running ``loop`` blocks: rounds, feeding new rows back, ``until``, external training.

A body step reads a fed pool explicitly (check/loops.py): ``POOL.all`` is the
pool before the loop plus every row fed so far; ``POOL.new`` is the rows fed in
the round before (in round 0, the pool before the loop). Other nodes are read
whole every round. A body
step's row ids mix the round into its fingerprint, so the same parent makes a
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
from synthlang.expr import evaluate
from synthlang.plan.keys import digest
from synthlang.plan.program import LoopSpec
from synthlang.plan.train import is_allowed as train_allowed

if TYPE_CHECKING:
    from synthlang.execute.runner import Runner

Rows = list[tuple[str, dict[str, Any]]]


def run_loops_at(runner: Runner, position: int) -> None:
    """Run every loop placed before top-level step number ``position``."""
    for lp in runner.program.loops:
        if lp.position == position:
            run_loop(runner, lp)


def round_fingerprint(fingerprint: str, round_: int) -> str:
    """A body step's fingerprint in one round: row ids differ per round."""
    return digest({"step": fingerprint, "round": round_})


def run_loop(runner: Runner, lp: LoopSpec) -> None:
    """Run one loop to its end; afterwards the pool, body steps and loop name hold all rounds' rows.

    Raises:
        ConfigError: the loop has ``train=`` but its recipe file was not allowed.
    """
    if lp.train and not train_allowed(lp):   # allowed per recipe file and digest (plan/train.py)
        raise ConfigError(f"loop '{lp.name}' runs an external command between rounds ({lp.train!r}); "
                          "allow it with --allow-train RECIPE")
    prog = runner.program
    pools = list(dict.fromkeys(p for p, _ in lp.feeds))
    pool_fields = {p: list(prog.node_fields(p)) for p in pools}
    everything: dict[str, Rows] = {p: list(runner.outputs[p]) for p in pools}
    seen: dict[str, set[str]] = {p: {rid for rid, _ in everything[p]} for p in pools}
    current: dict[str, Rows] = {p: list(everything[p]) for p in pools}
    per_step: dict[str, Rows] = {st.name: [] for st in lp.steps}
    fed_all: Rows = []
    try:
        for r in range(lp.rounds):
            runner.current_round = r
            for p in pools:
                runner.outputs[p] = current[p]
                runner.pool_all[p] = everything[p]   # `against=POOL` in the body sees the whole pool
                # lang (issue 10): explicit reads in the body (check/loops.py): POOL.all and POOL.new
                runner.outputs[f"{p}.all"] = list(everything[p])
                runner.outputs[f"{p}.new"] = list(current[p])
            for st in lp.steps:
                runner._step(replace(st, fingerprint=round_fingerprint(st.fingerprint, r)))
                runner.summary.steps[-1].name = f"{st.name}[round {r}]"
                per_step[st.name].extend(runner.outputs[st.name])
            new: dict[str, Rows] = {p: [] for p in pools}
            for pool, step in lp.feeds:
                for rid, data in runner.outputs[step]:
                    if rid in seen[pool]:
                        continue
                    seen[pool].add(rid)
                    row = (rid, {k: data.get(k) for k in pool_fields[pool]})
                    new[pool].append(row)
                    fed_all.append(row)
            for p in pools:
                everything[p].extend(new[p])
                current[p] = new[p]
            n_new = sum(len(v) for v in new.values())
            stop = n_new == 0 or r + 1 >= lp.rounds
            if lp.until is not None and not stop:
                stats = {"round": r, "new_rows": n_new, "pool_rows": len(everything[pools[0]])}
                stop = bool(evaluate(lp.until, stats, prog.params))
            if stop:
                break
            if lp.train:
                _train(runner, lp, r, everything[pools[0]])
    finally:
        runner.current_round = 0
        for p in pools:
            runner.pool_all.pop(p, None)
            runner.outputs.pop(f"{p}.all", None)
            runner.outputs.pop(f"{p}.new", None)
    for p in pools:
        runner.outputs[p] = everything[p]
    for name, rows in per_step.items():
        runner.outputs[name] = rows
    runner.outputs[lp.name] = fed_all
    runner.store.refresh_views({st.name: st.fields_out for st in lp.steps})


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
