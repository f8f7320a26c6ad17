"""The runner: executes a checked :class:`Program` against engines and the store.

This is the only place that wires engines to the store. For each step in
dependency order it plans the output row ids, reuses rows an earlier run
finished, answers calls from the call cache, sends the rest to the engine as
one batch, and commits each result with its rows and lineage as it arrives.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synthlang import __version__
from synthlang.engines import Engine, Request, Result, create_engine
from synthlang.engines.base import SamplingParams
from synthlang.errors import BudgetExceeded, EngineError
from synthlang.execute.budget import Budget, call_cost, prompt_estimate
from synthlang.execute.sources import load_source
from synthlang.ops.base import KIND_NODE, RowContext, RowFailure
from synthlang.plan.keys import call_key, digest, row_id
from synthlang.plan.program import ModelSpec, Program, SourceSpec, StepSpec
from synthlang.plan.reuse import relaxed_key, reuse_stopped_calls
from synthlang.store import Store
from synthlang.templates import TemplateError, render, template_hash


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws a progress bar)."""

    def start_step(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1, tokens: int = 0) -> None: ...

    def end_step(self) -> None: ...


class _NoProgress:
    def start_step(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        pass

    def end_step(self) -> None:
        pass


@dataclass
class StepStats:
    """Counts for one step of one run (rows, calls, tokens, seconds)."""

    name: str
    operator: str
    rows_in: int = 0
    rows_out: int = 0
    rows_failed: int = 0
    rows_reused: int = 0
    calls_made: int = 0
    calls_cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    """What a run did; printed by ``synth run``.

    Attributes:
        run_id: the run's id in the store.
        status: ``finished``, ``interrupted`` (SIGINT/SIGTERM), ``budget`` (a budget
            stopped it) or ``failed``.
        steps: per-step stats, sources first.
        wall_s: wall time, in seconds.
        exports: (step, path, format, rows) written.
    """

    run_id: str
    recipe: str
    db_path: str
    status: str = "running"
    steps: list[StepStats] = field(default_factory=list)
    wall_s: float = 0.0
    exports: list[tuple[str, str, str, int]] = field(default_factory=list)
    export_notes: list[str] = field(default_factory=list)

    @property
    def calls_made(self) -> int:
        return sum(s.calls_made for s in self.steps)

    @property
    def calls_cached(self) -> int:
        return sum(s.calls_cached for s in self.steps)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps)


@dataclass
class _Task:
    parent_id: str
    parent: dict[str, Any]
    sample: int
    row_id: str
    key: str = ""
    seed: int = 0
    messages: tuple[dict[str, str], ...] = ()
    sampling: SamplingParams | None = None
    json_schema: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs a program once.

    Args:
        program: the checked recipe.
        store: the open store (written as results arrive).
        progress: progress reporter.
        engine_factory: builds an engine from a :class:`ModelSpec`
            (tests inject the fake engine here).
        argv: the command line, recorded in ``runs``.
        budget: limits for this run (default: the recipe's ``budget``).
        retry_failed: re-issue the calls of rows stored as failed, bypassing
            the call cache for exactly those keys.
    """

    def __init__(self, program: Program, store: Store, progress: Progress | None = None,
                 engine_factory: Callable[[ModelSpec], Engine] | None = None, argv: list[str] | None = None,
                 budget: Budget | None = None, retry_failed: bool = False) -> None:
        self.program = program
        self.store = store
        self.progress = progress or _NoProgress()
        self.engine_factory = engine_factory or (lambda m: create_engine(m.kind, m.model_id, m.options))
        self.engines: dict[str, Engine] = {}
        self.argv = argv or []
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.summary = RunSummary(self.run_id, program.name, str(store.path))
        self.outputs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.current_round = 0   # set by execute/loops.py while a loop body runs
        self.pool_all: dict[str, list[tuple[str, dict[str, Any]]]] = {}   # a running loop's whole pools
        self.revisions: dict[str, tuple[str, str]] = {}   # lang: loop -> (checkpoint, revision) of its last train
        self.budget = budget if budget is not None else Budget.from_limits(program.budget)
        self.retry_failed = retry_failed
        self._stop: str | None = None
        self._nomax: dict[str, str] = {}   # safety (issue 11 item 15): call key -> key without max_tokens

    # ------------------------------------------------------------------ driver
    def run(self) -> RunSummary:
        """Execute every source and step, then the exports.

        Raises:
            DataError: bad seed data (nothing generated is lost).
            EngineError: an engine could not be loaded.
            KeyboardInterrupt: after SIGINT/SIGTERM, once the calls in flight are
                committed and the run is marked ``interrupted``.
            BudgetExceeded: when the next call would exceed the budget; the
                calls in flight are committed and the run is marked ``budget``.
        """
        prog = self.program
        t0 = time.perf_counter()
        self.store.begin_run(self.run_id, prog.name, str(prog.recipe.path), prog.fingerprint, prog.params,
                             self.argv, __version__)
        status = "failed"
        restore = self._install_signal_handlers()
        try:
            for src in prog.sources.values():
                self._source(src)
            from synthlang.execute.loops import run_loops_at

            for i, st in enumerate(prog.steps):
                run_loops_at(self, i)
                self._check_stop()
                self._step(st)
            run_loops_at(self, len(prog.steps))
            self.store.refresh_views({st.name: st.fields_out for st in prog.steps}
                                     | {s.name: prog.node_fields(s.name) for s in prog.sources.values()})
            from synthlang.execute.export import export_program

            export_program(self.store, prog, self.run_id, self.summary)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BudgetExceeded:
            status = "budget"
            raise
        finally:
            restore()
            self.summary.status = status
            self.summary.wall_s = time.perf_counter() - t0
            s = self.summary
            self.store.finish_run(self.run_id, status, {
                "calls_made": s.calls_made, "calls_cached": s.calls_cached, "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens, "wall_s": s.wall_s})
            for e in self.engines.values():
                try:
                    e.close()
                except Exception:  # noqa: BLE001 - closing must not hide the real error
                    pass
        return self.summary

    # ----------------------------------------------------------------- sources
    def _source(self, src: SourceSpec) -> None:
        t0 = time.perf_counter()
        stats = StepStats(src.name, "source")
        rows = load_source(src, self.program.params, store=self.store)
        seen: dict[str, int] = defaultdict(int)
        out: list[tuple[str, dict[str, Any]]] = []
        for data in rows:
            content = digest(data)
            k = seen[content]
            seen[content] += 1
            out.append((row_id(src.fingerprint, [content], k), data))
        existing = self.store.ok_rows([rid for rid, _ in out])
        new = [{"row_id": rid, "parents": (), "data": data, "step_fingerprint": src.fingerprint, "operator": "source"}
               for rid, data in out if rid not in existing]
        self.store.write_rows(self.run_id, src.name, new)
        self.store.mark_reused(self.run_id, src.name, [rid for rid, _ in out if rid in existing])
        stats.rows_out = len(out)
        stats.rows_reused = len(out) - len(new)
        stats.seconds = time.perf_counter() - t0
        self.outputs[src.name] = out
        self.summary.steps.append(stats)
        self._record_step(src.name, stats, {"fingerprint": src.fingerprint, "operator": "source", "input": None})

    # ------------------------------------------------------------------- steps
    def _step(self, st: StepSpec) -> None:
        t0 = time.perf_counter()
        stats = StepStats(st.name, st.op.name)
        parents = self.outputs[st.input]
        stats.rows_in = len(parents)
        self.summary.steps.append(stats)
        if st.op.uses_model:
            out = self._llm_step(st, parents, stats)
        else:
            out = self._row_step(st, parents, stats)
        self.outputs[st.name] = out
        stats.rows_out = len(out)
        stats.seconds = time.perf_counter() - t0
        m = st.model
        self._record_step(st.name, stats, {
            "fingerprint": st.fingerprint, "operator": st.op.name, "input": st.input,
            "model": m.name if m else None, "engine": m.kind if m else None, "model_id": m.model_id if m else None,
            "template_hash": template_hash(st.opts["prompt"]) if st.opts.get("prompt") else None,
            "options": {k: v for k, v in st.opts.items() if isinstance(v, (str, int, float, bool, type(None)))},
        })

    def _record_step(self, name: str, stats: StepStats, info: dict[str, Any]) -> None:
        self.store.record_step(self.run_id, {
            "step": name, **info, "rows_in": stats.rows_in, "rows_out": stats.rows_out,
            "rows_failed": stats.rows_failed, "calls_made": stats.calls_made, "calls_cached": stats.calls_cached,
            "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
        })

    def _row_record(self, st: StepSpec, task_parent: str, sample: int, rid: str, data: dict[str, Any],
                    status: str = "ok", error: str | None = None, raw: str | None = None,
                    key: str | None = None, parents: tuple[str, ...] | None = None) -> dict[str, Any]:
        return {
            "row_id": rid, "parents": parents if parents is not None else (task_parent,), "data": data,
            "status": status, "error": error, "raw": raw, "call_key": key, "sample_index": sample,
            "step_fingerprint": st.fingerprint, "operator": st.op.name, "round": self.current_round,
            "model": st.model.name if st.model else None,
            "template_hash": template_hash(st.opts["prompt"]) if st.opts.get("prompt") else None,
        }

    def _row_step(self, st: StepSpec, parents: list[tuple[str, dict[str, Any]]], stats: StepStats) -> list[tuple[str, dict[str, Any]]]:
        assert st.op.apply is not None
        self.progress.start_step(st.name, len(parents))
        results = st.op.run_apply([d for _, d in parents], st.opts, self._context(st, parents))
        out: list[tuple[str, dict[str, Any]]] = []
        records = []
        per_parent: dict[tuple[Any, ...], int] = defaultdict(int)
        node_rows = self._node_rows(st)
        for idx, fields in results:
            # lang (issue 10): an index is an input row (int) or row j of another node ((node, j), ops/relational.py)
            pids = tuple(parents[i][0] if isinstance(i, int) else node_rows[i[0]][i[1]][0] for i in idx)
            k = per_parent[idx]
            per_parent[idx] += 1
            rid = row_id(st.fingerprint, pids, k)
            data = {**parents[idx[0]][1], **{st.rename.get(f, f): v for f, v in fields.items()}} if idx and st.op.inherit else \
                {st.rename.get(f, f): v for f, v in fields.items()}
            out.append((rid, data))
            records.append(self._row_record(st, pids[0] if pids else "", k, rid, data, parents=pids))
        existing = self.store.ok_rows([r["row_id"] for r in records])
        self.store.write_rows(self.run_id, st.name, [r for r in records if r["row_id"] not in existing])
        self.store.mark_reused(self.run_id, st.name, list(existing))
        stats.rows_reused = len(existing)
        self.progress.advance(len(parents))
        self.progress.end_step()
        return out

    def _node_rows(self, st: StepSpec) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Rows (id, data) of each ``node`` option of a step, by node name."""
        nodes = {}
        for name, spec in st.op.options.items():
            ref = st.opts.get(name)
            if spec.kind == KIND_NODE and isinstance(ref, str) and ref in self.outputs:
                nodes[ref] = self.pool_all.get(ref, self.outputs[ref])
        return nodes

    def _context(self, st: StepSpec, parents: list[tuple[str, dict[str, Any]]]) -> RowContext:
        """The :class:`RowContext` for a step: round, params, rows of ``node`` options, parent ids."""
        node_rows = self._node_rows(st)
        pids = self.store.parents_of([rid for rid, _ in parents]) if st.op.takes_context else {}
        return RowContext(round=self.current_round, params=dict(self.program.params),
                          nodes={k: [d for _, d in v] for k, v in node_rows.items()},
                          row_ids=[rid for rid, _ in parents], parent_ids=[pids.get(rid, ()) for rid, _ in parents],
                          base_dir=self.program.base_dir, node_ids={k: [r for r, _ in v] for k, v in node_rows.items()},
                          lineage=self._lineage if st.op.extra.get("needs_lineage") else None)

    def _lineage(self, row_ids: list[str]) -> dict[str, tuple[str, ...]]:
        """lang (issue 10): the parents of each row and of all its ancestors, from the lineage table (join/pair)."""
        up: dict[str, tuple[str, ...]] = {}
        frontier = set(row_ids)
        while frontier:
            got = self.store.parents_of(sorted(frontier))
            up.update({r: got.get(r, ()) for r in frontier})
            frontier = {p for ps in got.values() for p in ps if p not in up}
        return up

    def _engine(self, m: ModelSpec) -> Engine:
        if m.name not in self.engines:
            engine = self.engine_factory(m)
            if hasattr(engine, "attach_store"):   # batch-mode engines keep their job ids in the store
                engine.attach_store(self.store)
            self.engines[m.name] = engine
        return self.engines[m.name]

    def _trained(self, m: ModelSpec) -> ModelSpec:
        """lang (issue 10): a ``trained_by=LOOP`` model after that loop trained: its checkpoint and revision.

        The revision (a digest of the checkpoint) enters every call key, so a re-probe after training
        is a new call; local engines (embedded, vllm) load the checkpoint itself.
        """
        loop = m.key_options.get("trained_by")
        if loop not in self.revisions:
            return m
        path, rev = self.revisions[loop]
        from dataclasses import replace

        model_id = path if m.kind in ("embedded", "vllm") else m.model_id
        return replace(m, name=f"{m.name}@{rev[:12]}", model_id=model_id, key_options={**m.key_options, "revision": rev})

    def _llm_step(self, st: StepSpec, parents: list[tuple[str, dict[str, Any]]], stats: StepStats) -> list[tuple[str, dict[str, Any]]]:
        m = self._trained(st.model) if st.model is not None else None
        assert m is not None and st.op.postprocess is not None
        n = int(st.opts.get("n") or 1)
        extras: list[dict[str, Any]] = [{} for _ in parents]
        if st.op.prepare is not None:
            extras = st.op.prepare([d for _, d in parents], st.opts, self._context(st, parents))
        schema = st.op.json_schema(st.opts) if st.op.json_schema else None
        lp = st.op.wants_logprobs(st.opts)
        tasks = [_Task(pid, pdata, k, row_id(st.fingerprint, (pid,), k), json_schema=ex.get("__schema__", schema),
                       extra={x: v for x, v in ex.items() if x != "__schema__"})
                 for (pid, pdata), ex in zip(parents, extras, strict=True) for k in range(int(ex.get("__n__", n)))]
        self.progress.start_step(st.name, len(tasks))
        done = self.store.ok_rows([t.row_id for t in tasks])
        results: dict[str, dict[str, Any]] = dict(done)
        stats.rows_reused = len(done)
        if done:
            self.store.mark_reused(self.run_id, st.name, list(done))
            self.progress.advance(len(done))
        todo = [t for t in tasks if t.row_id not in done]

        sampling = self._sampling(m, st)
        sampling_key = sampling.key_dict()
        failed_now: list[dict[str, Any]] = []
        for t in todo:
            try:
                t.messages = self._messages(st, {**t.parent, **{k: v for k, v in t.extra.items() if k != "__n__"}})
            except TemplateError as exc:
                failed_now.append(self._row_record(st, t.parent_id, t.sample, t.row_id, t.parent, "failed",
                                                   f"template failed to render: {exc}"))
                continue
            t.sampling = sampling
            t.key, t.seed = call_key(m.kind, m.model_id, list(t.messages), sampling_key, t.sample,
                                     st.opts.get("seed"), t.json_schema, m.key_options.get("revision"), lp,
                                     round_=self.current_round)  # issue 12: each loop round samples anew
            self._nomax[t.key] = relaxed_key(m.kind, m.model_id, list(t.messages), sampling_key, t.sample,  # item 15
                                             st.opts.get("seed"), t.json_schema, m.key_options.get("revision"), lp,
                                             round_=self.current_round)
        if failed_now:
            self.store.write_rows(self.run_id, st.name, failed_now)
            stats.rows_failed += len(failed_now)
            self.progress.advance(len(failed_now))
        todo = [t for t in todo if t.key]

        by_key: dict[str, list[_Task]] = defaultdict(list)
        for t in todo:
            by_key[t.key].append(t)
        cached = self.store.get_calls(list(by_key))
        retry = self._retry_keys(todo)
        for key in retry:
            cached.pop(key, None)
        # safety (issue 11 item 15): a call that stopped on its own under another max_tokens is reused (plan/reuse.py)
        cached.update(reuse_stopped_calls(self.store, by_key, cached, self._nomax, sampling.max_tokens, retry))
        # Rows from cached calls cost no call, so they are committed in chunks rather than one
        # transaction per call (a post-processing change recomputes a whole step from the cache).
        batch: list[dict[str, Any]] = []
        for key, call in cached.items():
            stats.calls_cached += 1
            batch.extend(self._post_rows(st, by_key[key], call, stats, results))
            if len(batch) >= 512:
                self.store.write_rows(self.run_id, st.name, batch)
                batch = []
        if batch:
            self.store.write_rows(self.run_id, st.name, batch)
        if cached:
            self.progress.advance(sum(len(by_key[k]) for k in cached))
        pending = [ts[0] for key, ts in by_key.items() if key not in cached]
        if pending:
            engine = self._engine(m)
            reqs = [Request(t.key, t.messages, sampling, t.seed, lp, t.json_schema) for t in pending]
            self.store.release(force=True)   # free the file for readers while the engine works
            for res in engine.generate(self._admit(reqs, m)):
                ts = by_key[res.key]
                self._settle(m, res)
                stats.calls_made += 1
                stats.prompt_tokens += res.prompt_tokens
                stats.completion_tokens += res.completion_tokens
                call = self._call_record(m, ts[0], res)
                self._finish(st, ts, call, stats, results, new_call=call)
            self._check_stop()
        self.progress.end_step()
        return [(t.row_id, results[t.row_id]) for t in tasks if t.row_id in results]

    def _sampling(self, m: ModelSpec, st: StepSpec) -> SamplingParams:
        sp = m.sampling
        over = {k: st.opts[k] for k in ("temperature", "top_p", "max_tokens") if st.opts.get(k) is not None}
        if over:
            from dataclasses import replace

            sp = replace(sp, **over)
        return sp

    def _messages(self, st: StepSpec, row: dict[str, Any]) -> tuple[dict[str, str], ...]:
        values = {**self.program.params, "round": self.current_round, **row}
        if st.op.prompt_vars:
            values.update(st.op.prompt_vars(row, st.opts))
        msgs: list[dict[str, str]] = []
        if st.opts.get("system"):
            msgs.append({"role": "system", "content": render(st.opts["system"], values, f"{st.name}.system")})
        msgs.append({"role": "user", "content": render(st.opts["prompt"], values, f"{st.name}.prompt")})
        return tuple(msgs)

    def _call_record(self, m: ModelSpec, t: _Task, res: Result) -> dict[str, Any]:
        assert t.sampling is not None
        return {
            "key": t.key, "engine": m.kind, "model": m.model_id, "messages": list(t.messages),
            "sampling": t.sampling.key_dict(), "seed": t.seed, "sample_index": t.sample, "json_schema": t.json_schema,
            "text": res.text, "finish_reason": res.finish_reason, "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens, "latency_s": res.latency_s, "error": res.error,
            "logprobs": res.logprobs, "meta": res.meta, "key_nomax": self._nomax.get(t.key),   # item 15
        }

    def _finish(self, st: StepSpec, tasks: list[_Task], call: dict[str, Any], stats: StepStats,
                results: dict[str, dict[str, Any]], new_call: dict[str, Any] | None) -> None:
        """Post-process one new call's reply into rows and commit the call with them in one transaction."""
        records = self._post_rows(st, tasks, call, stats, results)
        self.store.commit_result(self.run_id, st.name, new_call, records)
        self.progress.advance(len(tasks), int(call.get("completion_tokens") or 0) if new_call else 0)

    def _post_rows(self, st: StepSpec, tasks: list[_Task], call: dict[str, Any], stats: StepStats,
                   results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Row records (ok or failed with its reason) for every task that asked this call; pure but for stats."""
        assert st.op.postprocess is not None
        records = []
        for t in tasks:
            text = call.get("text") or ""
            err: str | None = None
            if call.get("error"):
                err = f"call failed: {call['error']}"
            elif call.get("finish_reason") == "length" and st.opts.get("on_truncation") != "keep":
                err = "completion truncated at max_tokens (finish_reason=length)"
            elif call.get("finish_reason") == "content_filter":
                err = "completion blocked by the content filter"
            elif not text.strip():
                err = "empty completion"
            if err is None:
                try:
                    truncated = {"__truncated__": True} if call.get("finish_reason") == "length" else {}
                    fields = st.op.post({**t.parent, **t.extra, **truncated}, text, st.opts, call.get("logprobs"))
                except RowFailure as exc:
                    err = str(exc)
            if err is not None:
                stats.rows_failed += 1
                records.append(self._row_record(st, t.parent_id, t.sample, t.row_id, t.parent, "failed", err, text, t.key))
                continue
            base = t.parent if st.op.inherit else {}
            data = {**base, **{st.rename.get(f, f): v for f, v in fields.items()}}
            results[t.row_id] = data
            records.append(self._row_record(st, t.parent_id, t.sample, t.row_id, data, raw=None, key=t.key))
        return records

    # ------------------------------------------------- stop, budget and retry
    # Kept apart from the step flow above: admission of each request (interrupt
    # flag, budget), settling usage, and the set of keys --retry-failed re-issues.

    def request_stop(self, reason: str = "interrupted") -> None:
        """Ask the run to stop: no new call is sent; calls in flight finish and are committed."""
        self._stop = reason

    def _install_signal_handlers(self) -> Callable[[], None]:
        """SIGINT/SIGTERM: the first one stops gracefully, a second SIGINT raises at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self._stop is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request_stop("interrupted")
            sys.stderr.write("\nstopping: finishing the calls in flight and saving them (Ctrl-C again to stop at once)\n")

        for sig in old:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in old.items():
                signal.signal(sig, h)
        return restore

    def _check_stop(self) -> None:
        if self._stop == "budget":
            raise self.budget.exceeded()
        if self._stop is not None:
            raise KeyboardInterrupt

    def _admit(self, reqs: list[Request], m: ModelSpec) -> Any:
        """Yield requests to the engine one by one while no stop was asked and the budget allows."""
        price_in, price_out = float(m.options.get("price_input") or 0), float(m.options.get("price_output") or 0)
        for r in reqs:
            if self._stop is not None:
                return
            if self.budget.limited and not self.budget.admit(r.key, r.sampling.max_tokens, prompt_estimate(r.messages),
                                                             price_in, price_out):
                self._stop = "budget"
                return
            yield r

    def _settle(self, m: ModelSpec, res: Result) -> None:
        self.budget.settle(res.key, res.prompt_tokens, res.completion_tokens,
                           call_cost(m.options, res.prompt_tokens, res.completion_tokens, res.meta))

    def _retry_keys(self, todo: list[_Task]) -> set[str]:
        """With ``retry_failed``: keys of tasks whose row is stored as failed; they get a fresh seed."""
        if not self.retry_failed or not todo:
            return set()
        failed = self.store.failed_rows([t.row_id for t in todo])
        keys = set()
        for t in todo:
            if t.row_id in failed:
                keys.add(t.key)
                t.seed = int(digest([t.key, self.run_id], 8), 16) & 0x7FFFFFFF
        return keys


def run_program(program: Program, store: Store, progress: Progress | None = None,
                engine_factory: Callable[[ModelSpec], Engine] | None = None, argv: list[str] | None = None,
                budget: Budget | None = None, retry_failed: bool = False) -> RunSummary:
    """Run a checked program against a store (see :class:`Runner`)."""
    return Runner(program, store, progress, engine_factory, argv, budget, retry_failed).run()


__all__ = ["Runner", "RunSummary", "StepStats", "run_program", "EngineError"]
