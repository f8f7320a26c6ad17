"""``synth run RECIPE``: run a recipe with a progress bar, then print a summary."""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from synthlang.cli.common import add_db, console, db_flag, db_path
from synthlang.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="the .synth file")
    add_db(p)
    p.add_argument("--allow-outside", action="store_true",
                   help="let the recipe read and write files outside its project directory")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a param (repeatable)")
    add_model_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--max-calls", type=int, default=None, metavar="N", help="stop before this run sends more than N calls")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="stop before this run's calls use more than N tokens (prompt + completion)")
    p.add_argument("--max-usd", type=float, default=None, metavar="USD", help="stop before this run's calls cost more")
    p.add_argument("--allow-train", action="append", default=[], metavar="RECIPE",
                   help="let the loops of this recipe file, as it is now, run their train= commands (repeatable)")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-issue the calls of rows stored as failed (bypasses the call cache for those calls only)")
    p.add_argument("--on", default=None, metavar="local|ray|ray://ADDRESS",
                   help="where inference runs: in this process (local, the default) or on engine replicas on a Ray "
                        "cluster (ray: a local Ray; ray://HOST:PORT or ray://auto: a running cluster); "
                        "default from [executor] in synth.toml beside the recipe (docs/scale.md)")


def add_model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=[], metavar="NAME=ENGINE(...)",
                   help="replace the recipe's model NAME, e.g. --model teacher=embedded() (repeatable)")


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--param {it}: expected NAME=VALUE")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def print_actor_stats(factory: Any) -> None:
    """Per-replica throughput of a ``--on ray`` run (model, actor, calls, tokens, tok/s, pids)."""
    stats = factory.actor_stats() if factory is not None else {}
    if not any(r["calls"] for rows in stats.values() for r in rows):
        return
    t = Table(title="ray replicas")
    for c in ("model", "actor", "calls", "tokens", "tok/s", "pids", "resent"):
        t.add_column(c, justify="left" if c in ("model", "pids") else "right")
    for model, rows in stats.items():
        for r in rows:
            t.add_row(model, str(r["actor"]), str(r["calls"]), str(r["completion_tokens"]), f"{r['tokens_per_s']:.1f}",
                      ",".join(map(str, r["pids"])), str(r["resent"]))
    console.print(t)


class _StepBar:
    """One step's share of the progress display: its task, rows done, rows known so far, tokens."""

    def __init__(self, name: str, total: int, task: Any) -> None:
        self.name, self.total, self.task = name, total, task
        self.done = self.tokens = 0
        self.t0 = self.last_line = time.perf_counter()

    def rate(self) -> str:
        dt = max(time.perf_counter() - self.t0, 1e-6)
        rates = [f"{self.done / dt:5.1f} rows/s" if self.done else "", f"{self.tokens / dt:6.1f} tok/s" if self.tokens else ""]
        return " ".join(r for r in rates if r)


class _RichProgress:
    """A rich progress bar per step on a terminal; plain progress lines (every 30 s and per step) otherwise.

    Steps run at the same time (issue 9: the runner streams rows between steps, each step in its own
    thread), so each step gets its own task, found by the thread that reports: ``start_step`` opens it,
    ``grow`` adds rows as they reach the step (a streamed step's total grows while it runs), ``advance``
    counts rows done, ``end_step`` closes it. The runner serialises the calls (``_LockedProgress``).
    """

    def __init__(self, progress: Progress, plain: bool = False) -> None:
        self.p = progress
        self.plain = plain
        self.bars: dict[int, _StepBar] = {}
        self.last: _StepBar | None = None

    def _bar(self) -> _StepBar | None:
        import threading

        return self.bars.get(threading.get_ident(), self.last)

    def start_step(self, name: str, total: int) -> None:
        import threading

        task = None if self.plain else self.p.add_task(name, total=total or None, tps="")
        self.bars[threading.get_ident()] = self.last = _StepBar(name, total, task)
        if self.plain and total:
            console.print(f"{name}: {total} to do", markup=False)

    def grow(self, n: int) -> None:
        bar = self._bar()
        if bar is None or n <= 0:
            return
        bar.total += n
        if not self.plain:
            self.p.update(bar.task, total=bar.total)

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        bar = self._bar()
        if bar is None:
            return
        bar.tokens += tokens
        bar.done += n
        if self.plain:
            now = time.perf_counter()
            if now - bar.last_line >= 30:
                bar.last_line = now
                console.print(f"{bar.name}: {bar.done}/{bar.total} {bar.rate().strip()} "
                              f"({now - bar.t0:.0f} s)", markup=False)
        else:
            self.p.update(bar.task, completed=bar.done, total=max(bar.total, bar.done), tps=bar.rate())

    def end_step(self) -> None:
        import threading

        bar = self.bars.pop(threading.get_ident(), None) or self.last
        if bar is None:
            return
        if self.plain:
            console.print(f"{bar.name}: {bar.done}/{bar.total} done in {time.perf_counter() - bar.t0:.1f} s "
                          f"{bar.rate().strip()}", markup=False)
        else:
            self.p.update(bar.task, completed=bar.done, total=max(bar.total, bar.done), tps=bar.rate())


def main(args: argparse.Namespace) -> int:
    from synthlang.api import check_file
    from synthlang.errors import BudgetExceeded
    from synthlang.execute.budget import Budget
    from synthlang.execute.runner import Runner
    from synthlang.plan import train
    from synthlang.store import Store

    program = check_file(args.recipe, parse_params(args.param), args.model, allow_outside=args.allow_outside)
    train.allow(getattr(args, "allow_train", []))
    train.require_allowed(program)   # refused before the store opens and before any call
    db = db_path(args)
    with Store(db) as store:
        # Not a terminal (a log file, CI): plain progress lines instead of a bar that only shows at the end.
        plain = not console.is_terminal and not args.quiet
        progress = Progress(TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, disable=args.quiet or plain)
        budget = Budget.from_limits(program.budget, args.max_calls, args.max_tokens, args.max_usd)
        from synthlang.execute.cluster import engine_factory, load_config

        factory = engine_factory(program, load_config(args.recipe, args.on))   # None: engines in this process
        if factory is not None and not args.quiet:
            c = factory.cluster
            console.print(f"on Ray at {c['address']}: {c['cpus']:g} CPUs, {c['gpus']:g} GPUs "
                          f"(ready in {c['started_s']:.1f} s)", markup=False)
        runner = Runner(program, store, _RichProgress(progress, plain=plain), engine_factory=factory, argv=args.argv,
                        budget=budget, retry_failed=args.retry_failed)
        try:
            with progress:
                try:
                    summary = runner.run()
                finally:
                    print_actor_stats(factory)
        except KeyboardInterrupt:
            print_summary(runner.summary, program, db_flag(args))
            console.print(f"[yellow]interrupted[/]: finished calls and rows are saved in {db}.\n"
                          f"Resume with: {shlex.join(args.argv)}")
            return 130
        except BudgetExceeded as exc:
            print_summary(runner.summary, program, db_flag(args))
            console.print("[yellow]stopped by the budget[/]: " + escape(str(exc)))
            return 4
    print_summary(summary, program, db_flag(args))
    return 0


def _step_prices(program: Any) -> dict[str, tuple[float, float] | None]:
    from synthlang.plan.estimate import model_prices

    if program is None:
        return {}
    specs = list(program.steps) + [b for lp in program.loops for b in lp.steps]
    return {st.name: model_prices(st.model) if st.model is not None else (0.0, 0.0) for st in specs}


def print_summary(s: Any, program: Any = None, db_arg: str = "") -> None:
    """The run's table: one line per step (loop steps once per round, with a round column), USD per step when its
    model declares prices, tokens/s; then the exports and the commands to look further (with ``--db`` when given)."""
    import re

    from rich.text import Text

    prices = _step_prices(program)
    looped = any(re.search(r"\[round \d+\]$", st.name) for st in s.steps)
    t = Table(title=Text(f"run {s.run_id} · {s.recipe} · {s.status}"))
    cols = ["step"] + (["round"] if looped else []) + ["operator", "rows in", "rows out", "failed", "reused", "calls",
                                                        "cached", "tokens", "tok/s", "USD", "seconds"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("step", "operator") else "right")
    total_usd: float | None = 0.0
    for st in s.steps:
        m = re.match(r"^(.*)\[round (\d+)\]$", st.name)
        name, rnd = (m.group(1), m.group(2)) if m else (st.name, "")
        tokens = st.prompt_tokens + st.completion_tokens
        p = prices.get(name) if st.operator != "source" else (0.0, 0.0)
        usd = None if p is None else (st.prompt_tokens * p[0] + st.completion_tokens * p[1]) / 1e6
        if usd is None:
            total_usd = None
        elif total_usd is not None:
            total_usd += usd
        tps = f"{st.completion_tokens / st.seconds:.1f}" if st.completion_tokens and st.seconds > 0 else ""
        cells = [Text(name)] + ([rnd] if looped else []) + [st.operator, str(st.rows_in), str(st.rows_out), str(st.rows_failed),
                                                           str(st.rows_reused), str(st.calls_made), str(st.calls_cached),
                                                           str(tokens), tps, "?" if usd is None else f"${usd:.4f}",
                                                           f"{st.seconds:.1f}"]
        t.add_row(*cells)
    console.print(t)
    tps = f" ({s.completion_tokens / s.wall_s:.1f} completion tok/s)" if s.completion_tokens and s.wall_s > 0 else ""
    cost = "" if not program else (" · cost: unknown (a model declares no price)" if total_usd is None
                                   else f" · cost: ${total_usd:.4f}")
    console.print(f"calls: {s.calls_made} made, {s.calls_cached} from cache · tokens: {s.prompt_tokens} prompt + "
                  f"{s.completion_tokens} completion{tps} · wall time: {s.wall_s:.1f} s{cost}", markup=False)
    import os

    for step, path, fmt, n in s.exports:
        try:
            path = os.path.relpath(path)
        except ValueError:
            pass
        console.print(f"exported {n} rows of '{step}' to {path} ({fmt})", markup=False)
    for note in getattr(s, "export_notes", []):
        console.print(note, markup=False)
    failed = sum(st.rows_failed for st in s.steps)
    if failed:
        console.print(f"{failed} row{'s' if failed != 1 else ''} failed (see: synth query{db_arg} \"SELECT f.step, f.error, "
                      f"count(*) FROM failures f JOIN run_rows rr USING (row_id) WHERE rr.run_id = '{s.run_id}' GROUP BY ALL\"; "
                      "re-issue them with --retry-failed)", markup=False)
    console.print(f"database: {s.db_path}   (try: synth show {s.run_id}{db_arg} · synth report {s.run_id}{db_arg} -o report.html)",
                  markup=False)
