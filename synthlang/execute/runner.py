"""The runner: executes a checked :class:`Program` against engines and the store.

This is the only place that wires engines to the store. It builds the node
graph of :mod:`synthlang.execute.scheduler` (sources, steps, loops) and drives
it: each step plans its output row ids, reuses rows an earlier run finished,
answers calls from the call cache and hands the rest to its model's dispatcher;
finished calls and rows go to the store's bulk writer as they arrive.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from synthlang import __version__
from synthlang.engines import Engine, Request, Result, create_engine
from synthlang.engines.base import SamplingParams
from synthlang.errors import BudgetExceeded, EngineError, InternalError, StoreError
from synthlang.execute.budget import Budget, call_cost
from synthlang.execute.scheduler import (
    SOURCE_CHUNK,
    Dispatcher,
    Graph,
    LoopNode,
    Node,
    Row,
    SourceNode,
    StepNode,
    hydrate,
    ord_text,
    step_locality,
)
from synthlang.execute.sources import load_source
from synthlang.ops.base import RowContext, RowFailure
from synthlang.plan.keys import call_key, digest, messages_json, row_id
from synthlang.plan.program import LoopSpec, ModelSpec, Program, SourceSpec, StepSpec
from synthlang.plan.reuse import relaxed_key, reuse_stopped_calls
from synthlang.store import Store
from synthlang.templates import TemplateError, render, template_hash


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws a progress bar)."""

    def start_step(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1, tokens: int = 0) -> None: ...

    def end_step(self) -> None: ...

    # optional: ``grow(n)`` adds n rows to the calling step's total (a streamed step learns its total as rows arrive)


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
    parent: Row
    sample: int
    row_id: str
    key: str = ""
    seed: int = 0
    messages: tuple[dict[str, str], ...] = ()
    sampling: SamplingParams | None = None
    json_schema: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    nomax: str | None = None   # the call key without max_tokens (plan/reuse.py, issue 11 item 15)

    @property
    def parent_id(self) -> str:
        return self.parent.rid


class _LockedProgress:
    """Serialises progress reports from the node threads (the CLI's reporter is not thread-safe)."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def start_step(self, name: str, total: int) -> None:
        with self.lock:
            self.inner.start_step(name, total)

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        with self.lock:
            self.inner.advance(n, tokens)

    def grow(self, n: int) -> None:
        grow = getattr(self.inner, "grow", None)
        if grow is not None:
            with self.lock:
                grow(n)

    def end_step(self) -> None:
        with self.lock:
            self.inner.end_step()


class Runner:
    """Runs a program once: builds the node graph (see :mod:`synthlang.execute.scheduler`) and drives it.

    Args:
        program: the checked recipe.
        store: the open store (written in bulk as results arrive).
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
        self.progress = _LockedProgress(progress or _NoProgress())
        self.engine_factory = engine_factory or (lambda m: create_engine(m.kind, m.model_id, m.options))
        self.engines: dict[str, Engine] = {}
        self.dispatchers: dict[str, Dispatcher] = {}
        self.argv = argv or []
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.summary = RunSummary(self.run_id, program.name, str(store.path))
        self.budget = budget if budget is not None else Budget.from_limits(program.budget)
        self.retry_failed = retry_failed
        self.revisions: dict[str, tuple[str, str]] = {}   # lang: loop -> (checkpoint, revision) of its last train
        self._stop: str | None = None
        self._error: BaseException | None = None
        self._lock = threading.RLock()
        #: (monotonic time, step, "first_send" | "last_result") of each LLM step: what tests and benches read
        self.events: list[tuple[float, str, str]] = []
        #: every step waits for its whole input (the pre-streaming behaviour; benches compare against it)
        self.barrier = False
        if getattr(store, "on_blocked", None) is None:   # issue 11 item 9: say once what keeps the file
            store.on_blocked = lambda msg: sys.stderr.write(f"warning: {msg}\n")

    # ------------------------------------------------------------------ driver
    def run(self) -> RunSummary:
        """Execute every source, step and loop as one streaming graph, then the exports.

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
        gc_restore = _calm_gc()
        try:
            graph = self._build_graph()
            graph.run()
            self.store.flush()
            self._check_stop()
            self.store.refresh_views({st.name: st.fields_out for st in prog.steps}
                                     | {st.name: st.fields_out for lp in prog.loops for st in lp.steps}
                                     | {s.name: prog.node_fields(s.name) for s in prog.sources.values()},
                                     recipe=prog.name)
            from synthlang.execute.export import export_program

            # exports stream from the store in canonical order (run_rows.ord, outputs/read.py)
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
            gc_restore()
            self.summary.status = status
            self.summary.wall_s = time.perf_counter() - t0
            s = self.summary
            unwritten: BaseException | None = None
            try:
                self.store.finish_run(self.run_id, status, {
                    "calls_made": s.calls_made, "calls_cached": s.calls_cached, "prompt_tokens": s.prompt_tokens,
                    "completion_tokens": s.completion_tokens, "wall_s": s.wall_s})
            except StoreError as exc:   # the file is held elsewhere (issue 11 item 9): the journal keeps the calls
                unwritten = exc
            for e in self.engines.values():
                try:
                    e.close()
                except Exception:  # noqa: BLE001 - closing must not hide the real error
                    pass
            if unwritten is not None and sys.exc_info()[1] is None:
                raise unwritten
        return self.summary

    def _build_graph(self) -> Graph:
        """Sources, then top-level steps and loops in program order, each wired to the latest provider of its inputs."""
        prog = self.program
        g = Graph(self)
        providers: dict[str, Node] = {}
        for src in prog.sources.values():
            providers[src.name] = g.add(SourceNode(g, src))

        def wire(node: Node) -> None:
            for name in node.main + node.side:
                if name not in providers:
                    raise InternalError(f"step '{node.name}' reads '{name}', which nothing provides")
                g.connect(providers[name], name, node)

        for i in range(len(prog.steps) + 1):
            for lp in prog.loops:
                if lp.position == i:
                    node = LoopNode(g, lp, loop_inputs(lp))
                    wire(g.add(node))
                    for name in node.provides:
                        providers[name] = node
            if i < len(prog.steps):
                st = prog.steps[i]
                node = g.add(StepNode(g, st))
                wire(node)
                providers[st.name] = node
        return g

    def _fail(self, exc: BaseException) -> None:
        """A node or engine thread failed: stop the run; the first error is raised by :meth:`run`."""
        with self._lock:
            if self._error is None:
                self._error = exc
            self._stop = self._stop or "error"

    def _add_stats(self, stats: StepStats) -> None:
        with self._lock:
            self.summary.steps.append(stats)

    # ----------------------------------------------------------------- sources
    def _source_rows(self, src: SourceSpec, node: Node) -> None:
        """Load a source, write its new rows in one batch, link reused ones, emit them in chunks."""
        t0 = time.perf_counter()
        stats = StepStats(src.name, "source")
        self._add_stats(stats)
        rows: list[Any] = load_source(src, self.program.params, store=self.store)
        seen: dict[str, int] = defaultdict(int)
        total = len(rows)
        # a small first chunk: the first calls go out while the rest of the source is written; each chunk's rows
        # are made (ids) as it is emitted and dropped from here once emitted, so with backpressure (emit waits
        # while the next step is behind) the source's rows leave memory as the run consumes them
        bounds = [0, min(total, 64)] + list(range(64 + SOURCE_CHUNK, total, SOURCE_CHUNK)) + [total]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi <= lo:
                continue
            chunk = []
            for i in range(lo, hi):
                data, rows[i] = rows[i], None
                content = digest(data)
                k = seen[content]
                seen[content] += 1
                chunk.append(Row(row_id(src.fingerprint, [content], k), data, (i,)))
            existing = self.store.ok_ids([r.rid for r in chunk], src.fingerprint)
            self.store.write_rows(self.run_id, src.name, [
                {"row_id": r.rid, "parents": (), "data": r.data, "step_fingerprint": src.fingerprint,
                 "operator": "source", "ord": ord_text(r.ord)} for r in chunk if r.rid not in existing])
            reused = [r for r in chunk if r.rid in existing]
            self.store.mark_reused(self.run_id, src.name, [r.rid for r in reused], [ord_text(r.ord) for r in reused])
            stats.rows_reused += len(reused)
            node.emit(src.name, chunk)
            if self._stop is not None:
                break
        stats.rows_out = total
        stats.seconds = time.perf_counter() - t0
        self._record_step(src.name, stats, {"fingerprint": src.fingerprint, "operator": "source", "input": None})

    # ------------------------------------------------------------------- steps
    def _record_step_spec(self, st: StepSpec, stats: StepStats) -> None:
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
                    key: str | None = None, parents: tuple[str, ...] | None = None, round_: int = 0,
                    ord_: tuple[int, ...] = ()) -> dict[str, Any]:
        return {
            "row_id": rid, "parents": parents if parents is not None else (task_parent,), "data": data,
            "status": status, "error": error, "raw": raw, "call_key": key, "sample_index": sample,
            "step_fingerprint": st.fingerprint, "operator": st.op.name, "round": round_,
            "model": st.model.name if st.model else None, "ord": ord_text(ord_),
            "template_hash": template_hash(st.opts["prompt"]) if st.opts.get("prompt") else None,
        }

    def _row_batch(self, st: StepSpec, parents: list[Row], ctx: RowContext, stats: StepStats, round_: int,
                   global_: bool) -> list[Row]:
        """Apply a row operator to a batch (row-local) or to its whole input (global); write and return the rows."""
        assert st.op.apply is not None
        out: list[Row] = []
        if not global_ and st.op.name in _REUSABLE_ROW_OPS and not ctx.nodes and step_locality(st) == "row":
            # a cached re-run reuses a row-local step's rows by id (the row its input row made, sample 0) without
            # running the operator again: a 1:1 or keep/drop operator with no side input makes the same row from
            # the same parent under the same fingerprint (as an LLM step's finished rows are reused)
            cand = [row_id(st.fingerprint, (r.rid,), 0) for r in parents]
            done = self.store.ok_ids(cand, st.fingerprint)
            if done:
                kept = [(r, c) for r, c in zip(parents, cand, strict=True) if c in done]
                out = [Row(c, None, r.ord + (0,), (r.rid,)) for r, c in kept]   # its data is loaded when read (hydrate)
                self.store.mark_reused(self.run_id, st.name, [c for _, c in kept], [ord_text(r.ord + (0,)) for r, _ in kept])
                stats.rows_reused += len(kept)
                self.progress.advance(len(kept))
                parents = [r for r, c in zip(parents, cand, strict=True) if c not in done]
                if not parents:
                    return out
                ctx = replace(ctx, row_ids=[r.rid for r in parents], parent_ids=[r.parents for r in parents])
        hydrate(self.store, parents)
        results = st.op.run_apply([r.data for r in parents], st.opts, ctx)
        records = []
        per_parent: dict[tuple[Any, ...], int] = defaultdict(int)
        for j, (idx, fields) in enumerate(results):
            # lang (issue 10): an index is an input row (int) or row j of another node ((node, j), ops/relational.py)
            pids = tuple(parents[i].rid if isinstance(i, int) else ctx.node_ids[i[0]][i[1]] for i in idx)
            k = per_parent[idx]
            per_parent[idx] += 1
            rid = row_id(st.fingerprint, pids, k)
            first = parents[idx[0]] if idx and isinstance(idx[0], int) else None
            data = {**first.data, **{st.rename.get(f, f): v for f, v in fields.items()}} if first is not None and st.op.inherit \
                else {st.rename.get(f, f): v for f, v in fields.items()}
            o = (j,) if global_ or first is None else first.ord + (k,)
            out.append(Row(rid, data, o, pids))
            records.append(self._row_record(st, pids[0] if pids else "", k, rid, data, parents=pids, round_=round_, ord_=o))
        existing = self.store.ok_ids([r["row_id"] for r in records], st.fingerprint)
        self.store.write_rows(self.run_id, st.name, [r for r in records if r["row_id"] not in existing])
        reused = [r for r in records if r["row_id"] in existing]
        self.store.mark_reused(self.run_id, st.name, [r["row_id"] for r in reused], [r["ord"] for r in reused])
        stats.rows_reused += len(existing)
        self.progress.advance(len(parents))
        return out

    def _engine(self, m: ModelSpec) -> Engine:
        with self._lock:
            if m.name not in self.engines:
                engine = self.engine_factory(m)
                if hasattr(engine, "attach_store"):   # batch-mode engines keep their job ids in the store
                    engine.attach_store(self.store)
                self.engines[m.name] = engine
            return self.engines[m.name]

    def _dispatcher(self, m: ModelSpec) -> Dispatcher:
        with self._lock:
            if m.name not in self.dispatchers:
                self.dispatchers[m.name] = Dispatcher(self, m)
            return self.dispatchers[m.name]

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

    def _lineage(self, row_ids: list[str]) -> dict[str, tuple[str, ...]]:
        """lang (issue 10): the parents of each row and of all its ancestors, from the lineage table (join/pair)."""
        self.store.flush(release=False)   # ancestors made in this run may still be buffered
        up: dict[str, tuple[str, ...]] = {}
        frontier = set(row_ids)
        while frontier:
            got = self.store.parents_of(sorted(frontier))
            up.update({r: got.get(r, ()) for r in frontier})
            frontier = {p for ps in got.values() for p in ps if p not in up}
        return up

    def _sampling(self, m: ModelSpec, st: StepSpec) -> SamplingParams:
        """The step's effective sampling params, resolved once onto the step (:attr:`StepSpec.sampling`)."""
        return st.sampling or m.sampling

    def _messages(self, st: StepSpec, row: dict[str, Any], round_: int) -> tuple[dict[str, str], ...]:
        values = {**self.program.params, "round": round_, **row}
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
            "logprobs": res.logprobs, "meta": res.meta, "key_nomax": t.nomax,   # issue 11 item 15
        }

    def _post_rows(self, st: StepSpec, tasks: list[_Task], call: dict[str, Any], stats: StepStats,
                   round_: int) -> tuple[list[dict[str, Any]], list[Row | None]]:
        """Row records (ok or failed with its reason) for every task that asked this call, and each task's Row
        (``None`` when it failed); pure but for stats."""
        assert st.op.postprocess is not None
        records = []
        made: list[Row | None] = []
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
                    fields = st.op.post({**t.parent.data, **t.extra, **truncated}, text, st.opts, call.get("logprobs"))
                except RowFailure as exc:
                    err = str(exc)
            o = t.parent.ord + (t.sample,)
            if err is not None:
                stats.rows_failed += 1
                records.append(self._row_record(st, t.parent_id, t.sample, t.row_id, t.parent.data, "failed", err, text,
                                                t.key, round_=round_, ord_=o))
                made.append(None)
                continue
            base = t.parent.data if st.op.inherit else {}
            data = {**base, **{st.rename.get(f, f): v for f, v in fields.items()}}
            records.append(self._row_record(st, t.parent_id, t.sample, t.row_id, data, raw=None, key=t.key,
                                            round_=round_, ord_=o))
            made.append(Row(t.row_id, data, o, (t.parent_id,)))
        return records, made

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
        if self._error is not None:
            raise self._error
        if self._stop == "budget":
            raise self.budget.exceeded()
        if self._stop is not None:
            raise KeyboardInterrupt

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


class LLMStep:
    """The LLM half of a :class:`StepNode`: tasks per batch, cache, engine requests, rows per finished parent.

    A parent's rows are released downstream together, once every sample of it is
    done (ok, failed or cancelled), so a per-parent group operator after it sees whole groups.
    """

    def __init__(self, runner: Runner, node: Node, st: StepSpec, stats: StepStats, round_: int) -> None:
        assert st.model is not None and st.op.postprocess is not None
        self.runner, self.node, self.st, self.stats, self.round = runner, node, st, stats, round_
        self.m = runner._trained(st.model)   # a trained_by=LOOP model after its loop trained (lang, issue 10)
        self.n = int(st.opts.get("n") or 1)
        self.schema = st.op.json_schema(st.opts) if st.op.json_schema else None
        self.lp = st.op.wants_logprobs(st.opts)
        self.sampling = runner._sampling(self.m, st)
        self.sampling_key = self.sampling.key_dict()
        self.inflight: dict[str, list[_Task]] = {}
        self.groups: dict[int, list[Any]] = {}    # id of the parent row -> [tasks left, rows made]
        self.ready: list[Row] = []
        self.dispatcher = runner._dispatcher(self.m)
        self.dispatcher.register()
        self.sent = 0
        self.commits: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []   # finished calls not yet committed
        self.advanced = self.tokens = 0
        runner.progress.start_step(node.display if hasattr(node, "display") else st.name, 0)

    def busy(self) -> bool:
        return bool(self.inflight)

    def unfinished(self) -> int:
        """Parent rows taken in whose samples are not all done (read by producers, unlocked: a size is enough)."""
        return len(self.groups)

    def take_ready(self) -> list[Row]:
        self.commit_pending()
        out, self.ready = self.ready, []
        return out

    def close(self) -> None:
        self.commit_pending()
        self.dispatcher.unregister()
        self.runner.progress.end_step()

    def _done(self, t: _Task, row: Row | None) -> None:
        g = self.groups[id(t.parent)]
        g[0] -= 1
        if row is not None:
            g[1].append(row)
        if g[0] == 0:
            del self.groups[id(t.parent)]
            self.ready.extend(sorted(g[1], key=lambda r: r.ord))

    def add(self, parents: list[Row], ctx: RowContext) -> None:
        """Plan the tasks of a batch of parent rows: reuse, render, answer from the cache, send the rest."""
        r, st, stats = self.runner, self.st, self.stats
        extras: list[dict[str, Any]] = [{} for _ in parents]
        if st.op.prepare is not None:
            extras = st.op.prepare([p.data for p in hydrate(r.store, parents)], st.opts, ctx)
        tasks = [_Task(p, k, row_id(st.fingerprint, (p.rid,), k), json_schema=ex.get("__schema__", self.schema),
                       extra={x: v for x, v in ex.items() if x != "__schema__"})
                 for p, ex in zip(parents, extras, strict=True) for k in range(int(ex.get("__n__", self.n)))]
        r.progress.grow(len(tasks))
        for p, ex in zip(parents, extras, strict=True):
            self.groups[id(p)] = [int(ex.get("__n__", self.n)), []]
        for p, ex in zip(parents, extras, strict=True):
            if int(ex.get("__n__", self.n)) == 0:
                del self.groups[id(p)]
        done = r.store.ok_ids([t.row_id for t in tasks], st.fingerprint)
        if done:
            stats.rows_reused += len(done)
            reused = [t for t in tasks if t.row_id in done]
            r.store.mark_reused(r.run_id, st.name, [t.row_id for t in reused],
                                [ord_text(t.parent.ord + (t.sample,)) for t in reused])
            for t in reused:   # passed on by id: its data is loaded only where a later step reads it (hydrate)
                self._done(t, Row(t.row_id, None, t.parent.ord + (t.sample,), (t.parent_id,)))
            r.progress.advance(len(done))
        todo = [t for t in tasks if t.row_id not in done]
        hydrate(r.store, list({id(t.parent): t.parent for t in todo}.values()))
        failed_now: list[dict[str, Any]] = []
        m = self.m
        for t in todo:
            try:
                t.messages = r._messages(st, {**t.parent.data, **{k: v for k, v in t.extra.items() if k != "__n__"}},
                                         self.round)
            except TemplateError as exc:
                failed_now.append(r._row_record(st, t.parent_id, t.sample, t.row_id, t.parent.data, "failed",
                                                f"template failed to render: {exc}", round_=self.round,
                                                ord_=t.parent.ord + (t.sample,)))
                self._done(t, None)
                continue
            t.sampling = self.sampling
            mtext = messages_json(t.messages)   # encoded once for both keys
            t.key, t.seed = call_key(m.kind, m.model_id, list(t.messages), self.sampling_key, t.sample,
                                     st.opts.get("seed"), t.json_schema, m.key_options.get("revision"), self.lp,
                                     round_=self.round, messages_text=mtext)   # issue 12: each loop round samples anew
            t.nomax = relaxed_key(m.kind, m.model_id, list(t.messages), self.sampling_key, t.sample,  # item 15
                                  st.opts.get("seed"), t.json_schema, m.key_options.get("revision"), self.lp,
                                  round_=self.round, messages_text=mtext)
        if failed_now:
            r.store.write_rows(r.run_id, st.name, failed_now)
            stats.rows_failed += len(failed_now)
            r.progress.advance(len(failed_now))
        todo = [t for t in todo if t.key]
        by_key: dict[str, list[_Task]] = defaultdict(list)
        for t in todo:
            by_key[t.key].append(t)
        cached = r.store.get_calls(list(by_key), (m.kind, m.model_id))
        retry = r._retry_keys(todo)
        for key in retry:
            cached.pop(key, None)
        # safety (issue 11 item 15): a call that stopped on its own under another max_tokens is reused (plan/reuse.py)
        cached.update(reuse_stopped_calls(r.store, by_key, cached, {k: ts[0].nomax for k, ts in by_key.items() if ts[0].nomax},
                                          self.sampling.max_tokens, retry, (m.kind, m.model_id)))
        # rows from cached calls cost no call: written as one batch
        batch: list[dict[str, Any]] = []
        for key, call in cached.items():
            stats.calls_cached += 1
            recs, made = r._post_rows(st, by_key[key], call, stats, self.round)
            batch.extend(recs)
            for t, row in zip(by_key[key], made, strict=True):
                self._done(t, row)
        if batch:
            r.store.write_rows(r.run_id, st.name, batch)
            r.progress.advance(len(batch))
        for key, ts in by_key.items():
            if key in cached:
                continue
            if key in self.inflight:
                self.inflight[key].extend(ts)
                continue
            self.inflight[key] = ts
            t = ts[0]
            if self.sent == 0:
                r.events.append((time.monotonic(), st.name, "first_send"))
            self.sent += 1
            self.dispatcher.submit(Request(t.key, t.messages, self.sampling, t.seed, self.lp, t.json_schema), self.node)

    def on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "cancel":
            for t in self.inflight.pop(msg[1], []):
                self._done(t, None)
            return
        if kind == "recheck":   # another step of this run stored this call after this step looked in the cache
            key = msg[1]
            ts = self.inflight.pop(key, [])
            call = self.runner.store.get_calls([key]).get(key)
            if call is None:   # stored as an error: ask again
                self.inflight[key] = ts
                t = ts[0]
                self.dispatcher.submit(Request(t.key, t.messages, self.sampling, t.seed, self.lp, t.json_schema), self.node,
                                       force=True)
                return
            self.stats.calls_cached += 1
            records, made = self.runner._post_rows(self.st, ts, call, self.stats, self.round)
            self.runner.store.write_rows(self.runner.run_id, self.st.name, records)
            for t, row in zip(ts, made, strict=True):
                self._done(t, row)
            self.runner.progress.advance(len(ts))
            return
        if kind not in ("result", "shared"):
            return
        res: Result = msg[1]
        ts = self.inflight.pop(res.key, None)
        if not ts:
            return
        r, stats = self.runner, self.stats
        if kind == "shared":   # another step asked the same call first: it pays and stores it; this step is served
            stats.calls_cached += 1
            call = r._call_record(self.m, ts[0], res)
            records, made = r._post_rows(self.st, ts, call, stats, self.round)
            r.store.write_rows(r.run_id, self.st.name, records)
            for t, row in zip(ts, made, strict=True):
                self._done(t, row)
            r.progress.advance(len(ts))
            return
        r._settle(self.m, res)
        stats.calls_made += 1
        stats.prompt_tokens += res.prompt_tokens
        stats.completion_tokens += res.completion_tokens
        call = r._call_record(self.m, ts[0], res)
        records, made = r._post_rows(self.st, ts, call, stats, self.round)
        # committed with the other results of this batch of messages (one journal write), before any of
        # their rows is released downstream (commit_pending, from the node's after_messages)
        self.commits.append((call, records))
        for t, row in zip(ts, made, strict=True):
            self._done(t, row)
        self.advanced += len(ts)
        self.tokens += int(res.completion_tokens or 0)
        if not self.inflight:
            r.events.append((time.monotonic(), self.st.name, "last_result"))

    def commit_pending(self) -> None:
        """Journal and buffer the calls finished since the last batch of messages, with their rows."""
        if not self.commits:
            return
        commits, self.commits = self.commits, []
        r = self.runner
        r.store.commit_results(r.run_id, self.st.name, commits)
        for call, _ in commits:
            self.dispatcher.stored(call["key"])
        r.progress.advance(self.advanced, self.tokens)
        self.advanced = self.tokens = 0


#: row-local operators that make at most one row per input row (sample 0) from that row alone: a cached re-run
#: reuses their stored rows instead of running them again (explode fans out; side inputs may change)
_REUSABLE_ROW_OPS = frozenset({"verify", "filter", "derive", "eliminate", "decontaminate", "select"})


def _calm_gc() -> Callable[[], None]:
    """Collect garbage less often during a run; returns the function that restores the old settings.

    A run allocates millions of short-lived dicts and tuples; with CPython's default thresholds (700, 10, 10)
    the collector ran ~15% of a fresh run's CPU, and each full collection walks every live object, so its cost
    grew with the rows in flight. The objects alive before the run (modules, the plan) are frozen out of the
    collector's walks (:func:`gc.freeze`), and generation 0 is collected every 50,000 allocations instead of 700.
    Reference cycles are still collected.
    """
    import gc

    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)

    def restore() -> None:
        gc.set_threshold(*old)
        gc.unfreeze()
    return restore


def loop_inputs(lp: LoopSpec) -> tuple[str, ...]:
    """Names a loop's body reads that the body does not make (its pools and any other node), in order."""
    made = {st.name for st in lp.steps}
    pools = [p for p, _ in lp.feeds]
    names: list[str] = list(pools)
    for st in lp.steps:
        names.append(st.input)
        for k, o in st.op.options.items():
            v = st.opts.get(k)
            if o.kind == "node" and isinstance(v, str):
                names.append(v)
    # lang (issue 10): POOL.all / POOL.new are read modes of a fed pool, made by the loop node from POOL itself
    return tuple(dict.fromkeys(n for n in names if n not in made and pool_read(n, pools) is None))


def pool_read(name: str, pools: list[str]) -> str | None:
    """The pool of an explicit loop read (``POOL.all`` / ``POOL.new``), or ``None``."""
    base, _, mode = name.rpartition(".")
    return base if mode in ("all", "new") and base in pools else None


def run_program(program: Program, store: Store, progress: Progress | None = None,
                engine_factory: Callable[[ModelSpec], Engine] | None = None, argv: list[str] | None = None,
                budget: Budget | None = None, retry_failed: bool = False) -> RunSummary:
    """Run a checked program against a store (see :class:`Runner`)."""
    return Runner(program, store, progress, engine_factory, argv, budget, retry_failed).run()


__all__ = ["Runner", "RunSummary", "StepStats", "run_program", "EngineError"]
