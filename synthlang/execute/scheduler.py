"""The streaming scheduler: sources, steps and loops as graph nodes, rows flowing between them.

Each node runs in its own thread and talks to its neighbours through queues
(the shape of miniwdl's ``StateMachine`` / dbt's ``GraphQueue``: the graph hands
out ready rows, nodes report what they made; engines never see the graph).

* A **row-local** operator (``Operator.locality == "row"``) processes each batch
  of input rows as it arrives, so a row enters step k+1 as soon as step k made
  it. A **group** operator (a majority vote over one parent's samples) streams
  too: an LLM step emits a parent's samples together, once all of them are done.
  A **global** operator (dedup, select, curriculum, strategy, new_question, report)
  waits for its whole input, sorted into canonical order, and is a barrier for
  its own subgraph only: independent branches keep running.
* LLM steps hand their requests to one :class:`Dispatcher` per model, which
  feeds a single long-running ``engine.generate`` from a queue, so two streamed
  steps on the same engine have their requests in flight together.
* Every row carries an order key (``ord``, a tuple of ints: its parent's key plus
  its sample index). Row ids never depend on completion order; global operators
  and exports sort by ``ord``, so results are the same with 1 or 64 calls in flight.
* A node's rows are released once its consumers have them; only exported steps
  and inputs that other steps read whole (``against=POOL``) are kept.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthlang.engines import Request, Result
from synthlang.errors import ConfigError
from synthlang.ops.base import KIND_NODE, RowContext
from synthlang.plan.keys import digest

if TYPE_CHECKING:
    from synthlang.execute.runner import Runner, StepStats
    from synthlang.plan.program import LoopSpec, ModelSpec, SourceSpec, StepSpec

#: rows per message a source emits
SOURCE_CHUNK = 2048
#: backpressure: a node waits to emit while a streaming consumer already has this many rows it has not finished
#: (held, or with calls in flight), so memory follows the work in flight, not the dataset. Large enough to keep
#: a vLLM batch full and an API engine's concurrency busy from one step alone.
HIGH_WATER = 4096


@dataclass(slots=True)
class Row:
    """A row in flight: id, fields, canonical order key, parent row ids.

    ``data`` is ``None`` for a row reused from the store by id whose fields nobody needed yet
    (:func:`hydrate` loads them in bulk where an operator or prompt reads them).
    """

    rid: str
    data: dict[str, Any] | None
    ord: tuple[int, ...]
    parents: tuple[str, ...] = ()


def hydrate(store: Any, rows: list[Row]) -> list[Row]:
    """Load the data of reused rows passed on by id (``data is None``) in one lookup; returns ``rows``.

    Raises:
        StoreError: a reused row is no longer in the store (the file was changed under the run).
    """
    lazy = [r for r in rows if r.data is None]
    if lazy:
        from synthlang.errors import StoreError

        got = store.ok_rows([r.rid for r in lazy])
        for r in lazy:
            d = got.get(r.rid)
            if d is None:
                raise StoreError(f"row {r.rid} was reused from {store.path} but is no longer there")
            r.data = d
    return rows


def ord_text(o: tuple[int, ...]) -> str:
    """An order key as text whose string order is the tuple order (``run_rows.ord``)."""
    return ".".join(f"{x:08x}" for x in o)


def sort_rows(rows: list[Row]) -> list[Row]:
    """Rows in canonical order (what a barrier runner would have produced)."""
    return sorted(rows, key=lambda r: r.ord)


# ---------------------------------------------------------------------- engines
class Dispatcher:
    """One model's engine, fed from a queue by every LLM step that uses it.

    Engines that declare ``streams_requests`` (openai: it pulls requests one at a
    time as slots free up) get a single ``generate`` over a blocking iterator; every
    other engine (vllm, embedded, fake, the OpenAI Batch API) gets everything ready
    at each turn, as one list, so a vLLM batch is as full as the graph allows; an
    engine that declares ``accepts_more`` (vllm) is also handed ``more=``, which it
    calls before each of its steps to add what became ready since (step k+1's
    requests join step k's running batch).
    Results go back to the inbox of every node that asked that key; requests that
    will never be sent (stop, budget, engine failure) come back as ``cancel``.
    """

    def __init__(self, runner: Runner, model: ModelSpec) -> None:
        self.runner = runner
        self.model = model
        self.q: queue.Queue[Request] = queue.Queue()
        self.owners: dict[str, list[Node]] = {}
        self.answered: dict[str, Result] = {}   # routed to its owner, not yet in the store
        self.done_keys: set[str] = set()         # stored by this run (32 hex digits each)
        self.lock = threading.Lock()
        self.users = 0
        self.accepting = False
        self.thread: threading.Thread | None = None
        # lazy: one long generate() over a blocking request stream, for engines that say they pull requests
        # one at a time (openai); any other engine gets every request ready at each turn, as a list
        self.lazy = False
        # vLLM in-process runs on the driver's (main) thread, as it did before streaming
        self.on_driver = model.kind == "vllm"
        self.want_run = False
        self.price_in = float(model.options.get("price_input") or 0)
        self.price_out = float(model.options.get("price_output") or 0)

    def register(self) -> None:
        """A node that will submit requests starts (the engine thread runs while it has users)."""
        with self.lock:
            self.users += 1
            if self.accepting:
                return
            if self.on_driver:
                self.accepting = True
                self.want_run = True   # the driver's thread picks it up in Graph.run
                return
            old = self.thread
        if old is not None:
            old.join()
        with self.lock:
            if not self.accepting:
                self.accepting = True
                self.thread = threading.Thread(target=self._run, name=f"engine-{self.model.name}", daemon=True)
                self.thread.start()

    def unregister(self) -> None:
        with self.lock:
            self.users -= 1

    def submit(self, req: Request, node: Node, force: bool = False) -> None:
        """Queue a request; identical keys from several nodes are sent once and answered to all.

        A key this run already answered and stored comes back as ``recheck`` (read it from the cache);
        ``force`` sends it anyway (its stored call was an error, which the cache never serves).
        """
        with self.lock:
            if not self.accepting or self._stopping():   # the engine stopped (stop, budget, failure): never sent
                node.inbox.put(("cancel", req.key))
                return
            waiting = self.owners.get(req.key)
            if waiting is not None:
                waiting.append(node)
                return
            answered = self.answered.get(req.key)
            if answered is not None:   # answered, but its owner has not stored it yet: serve it, do not resend
                node.inbox.put(("shared", answered))
                return
            if req.key in self.done_keys and not force:
                node.inbox.put(("recheck", req.key))
                return
            self.owners[req.key] = [node]
            self.q.put(req)

    def _stopping(self) -> bool:
        return self.runner._stop is not None

    def _admit(self, req: Request) -> bool:
        b = self.runner.budget
        if b.limited and not b.admit(req.key, req.sampling.max_tokens, _prompt_estimate(req.messages),
                                     self.price_in, self.price_out):
            self.runner._stop = "budget"
            return False
        return True

    def _next(self, block: bool, admit: bool = True) -> Request | None:
        """The next (admitted) request; ``None`` when the queue is done (or, not blocking, empty)."""
        while True:
            if self._stopping():
                return None
            try:
                req = self.q.get(timeout=0.05) if block else self.q.get_nowait()
            except queue.Empty:
                if not block:
                    return None
                with self.lock:
                    if self.users == 0 and self.q.empty():
                        self.accepting = False
                        return None
                if self.on_driver:
                    self.runner.store.tick()
                continue
            if admit and not self._admit(req):
                self._cancel(req.key)
                return None
            return req

    def _admitted(self, batch: list[Request]) -> Any:
        """A drained batch, admitted one request at a time as the engine pulls it (stop and budget act at once
        on engines that pull lazily; an engine that lists it gets what is admitted)."""
        for i, req in enumerate(batch):
            if self._stopping() or not self._admit(req):
                for rest in batch[i:]:
                    self._cancel(rest.key)
                return
            yield req

    def _more(self) -> list[Request]:
        """Every request queued now, admitted (non-blocking; ``[]`` when none or stopping)."""
        batch: list[Request] = []
        while (nxt := self._next(block=False, admit=False)) is not None:
            batch.append(nxt)
        return list(self._admitted(batch))

    def _requests(self) -> Any:
        while True:
            req = self._next(block=True)
            if req is None:
                return
            yield req

    def _run(self) -> None:
        engine = None
        try:
            engine = self.runner._engine(self.model)
            self.lazy = bool(getattr(engine, "streams_requests", False)) and not self.model.options.get("batch")
            if self.lazy:
                for res in engine.generate(self._requests()):
                    self._route(res)
            else:
                while True:
                    first = self._next(block=True, admit=False)
                    if first is None:
                        break
                    batch = [first]
                    while (nxt := self._next(block=False, admit=False)) is not None:
                        batch.append(nxt)
                    # an engine that takes requests mid-batch (vllm) pulls what became ready before each of its
                    # steps, so step k+1's requests join step k's running batch instead of waiting for it to drain
                    more = {"more": self._more} if getattr(engine, "accepts_more", False) is True else {}
                    for res in engine.generate(self._admitted(batch), **more):
                        self._route(res)
        except BaseException as exc:  # noqa: BLE001 - handed to the graph, raised by the runner
            self.runner._fail(exc)
        finally:
            with self.lock:
                self.accepting = False
            self._cancel_all()

    def stored(self, key: str) -> None:
        """The owner of ``key`` handed its result to the store (from now on the cache answers it)."""
        with self.lock:
            self.answered.pop(key, None)
            self.done_keys.add(key)

    def _route(self, res: Result) -> None:
        with self.lock:
            nodes = self.owners.pop(res.key, [])
            if nodes:
                self.answered[res.key] = res
        for i, n in enumerate(nodes):   # the first asker owns the call; the others got it for free
            n.inbox.put(("result" if i == 0 else "shared", res))

    def _cancel(self, key: str) -> None:
        with self.lock:
            nodes = self.owners.pop(key, [])
        for n in nodes:
            n.inbox.put(("cancel", key))

    def _cancel_all(self) -> None:
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                break
        with self.lock:
            owners, self.owners = self.owners, {}
        for key, nodes in owners.items():
            for n in nodes:
                n.inbox.put(("cancel", key))


def _prompt_estimate(messages: Any) -> int:
    from synthlang.execute.budget import prompt_estimate

    return prompt_estimate(messages)


# ------------------------------------------------------------------------ nodes
class Node:
    """A graph node: consumes named inputs, provides named outputs, runs in its own thread.

    Attributes:
        provides: output names (a loop provides its pools, body steps and its own name).
        main: input names whose rows are processed; ``side``: input names read whole
            (node options) before any main row is processed.
        stream: process main rows batch by batch (row/group locality) instead of once at the end.
    """

    def __init__(self, graph: Graph, name: str, provides: tuple[str, ...], main: tuple[str, ...] = (),
                 side: tuple[str, ...] = (), stream: bool = False) -> None:
        self.graph = graph
        self.name = name
        self.provides = provides
        self.main = main
        self.side = side
        self.stream = stream
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.subs: dict[str, list[tuple[Node, str]]] = defaultdict(list)
        self.open: set[str] = set(main) | set(side)
        self.side_rows: dict[str, list[Row]] = {s: [] for s in side}
        self.held: list[Row] = []          # main rows waiting (global node, or side inputs not complete)
        self.pending_rows = 0              # rows sent to this node's inbox not yet taken out (backpressure)
        self._pending_lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"node-{name}", daemon=True)

    # -- wiring
    def emit(self, name: str, rows: list[Row]) -> None:
        """Hand ``rows`` to every consumer of output ``name``, first waiting while one of them is behind
        (:data:`HIGH_WATER`); a consumer that holds rows for another reason (a global step, side inputs still
        open) never makes its producer wait, so backpressure cannot deadlock the graph."""
        if rows:
            self.graph.keep(self, name, rows)
            subs = self.subs.get(name, ())
            while not self.graph.stopping and any(node.backlog() > HIGH_WATER for node, _ in subs):
                time.sleep(0.002)
            for node, as_name in subs:
                node.backlog_add(len(rows))
                node.inbox.put(("rows", as_name, rows))

    def backlog(self) -> int:
        """Rows this node was given and has not finished, while it streams (0 when it holds rows on purpose)."""
        if not self.stream or (set(self.side) & self.open):
            return 0
        return self.pending_rows + self.unfinished()

    def backlog_add(self, n: int) -> None:
        with self._pending_lock:
            self.pending_rows += n

    def unfinished(self) -> int:
        """Rows taken in but not done (calls in flight); 0 for nodes that finish a batch at once."""
        return 0

    def _end_outputs(self) -> None:
        for name in self.provides:
            for node, as_name in self.subs.get(name, ()):
                node.inbox.put(("end", as_name))

    # -- thread body
    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - raised in the runner's thread
            self.graph.runner._fail(exc)
        finally:
            self._end_outputs()

    def run(self) -> None:
        """Take messages until every input ended; process main rows as the locality allows."""
        self.start()
        while self.open or self.busy():
            msg = self.inbox.get()
            batch = [msg]
            while len(batch) < 64:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            for m in batch:
                self.handle(m)
            self.after_messages()
        # a global step runs once at the end even on an empty main input when a side input has rows:
        # `union(empty, with=rows)` is `rows`
        if self.held or (not self.stream and any(self.side_rows.values())):
            rows, self.held = self.held, []
            if not self.graph.stopping:
                self.process(sort_rows(rows), final=True)
                self.after_messages()
            self.drain()
        self.finish()

    def handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "rows":
            _, name, rows = msg
            with self._pending_lock:
                self.pending_rows -= len(rows)
            if name in self.side_rows:
                self.side_rows[name].extend(rows)
            elif self.stream and not (set(self.side) & self.open) and not self.graph.stopping:
                if self.held:
                    rows, self.held = self.held + rows, []
                self.process(rows, final=False)
            else:
                self.held.extend(rows)
        elif kind == "end":
            self.open.discard(msg[1])
            if self.stream and self.held and not (set(self.side) & self.open) and not self.graph.stopping:
                rows, self.held = self.held, []
                self.process(rows, final=False)
        else:
            self.on_message(msg)

    # -- hooks
    def start(self) -> None:
        pass

    def busy(self) -> bool:
        """Whether results are still expected (calls in flight)."""
        return False

    def process(self, rows: list[Row], final: bool) -> None:
        raise NotImplementedError

    def on_message(self, msg: tuple[Any, ...]) -> None:
        pass

    def after_messages(self) -> None:
        pass

    def drain(self) -> None:
        """Wait for what ``process(final=True)`` started (calls in flight)."""
        while self.busy():
            self.handle(self.inbox.get())
            self.after_messages()

    def finish(self) -> None:
        pass


class SourceNode(Node):
    """Loads a source, writes its rows in bulk, emits them in chunks."""

    def __init__(self, graph: Graph, spec: SourceSpec) -> None:
        super().__init__(graph, spec.name, (spec.name,))
        self.spec = spec

    def run(self) -> None:
        self.graph.runner._source_rows(self.spec, self)


class StepNode(Node):
    """One step: a row operator or an LLM operator, streamed or global by its locality."""

    def __init__(self, graph: Graph, spec: StepSpec, display: str | None = None) -> None:
        side = tuple(dict.fromkeys(v for k, o in spec.op.options.items()
                                   if o.kind == KIND_NODE and isinstance(v := spec.opts.get(k), str) and v != spec.input))
        loc = step_locality(spec)
        # a node option naming the step's own input (`cross(seeds, with=seeds)`) reads the whole input: a barrier
        self.reads_input = any(o.kind == KIND_NODE and spec.opts.get(k) == spec.input for k, o in spec.op.options.items())
        stream = loc != "global" and not graph.runner.barrier and not self.reads_input
        super().__init__(graph, spec.name, (spec.name,), (spec.input,), side, stream=stream)
        self.spec = spec
        self.display = display or spec.name
        self.t0 = 0.0
        self.stats: StepStats | None = None
        self.llm: Any = None

    def start(self) -> None:
        from synthlang.execute.runner import StepStats

        self.t0 = time.perf_counter()
        self.stats = StepStats(self.display, self.spec.op.name)
        self.graph.runner._add_stats(self.stats)
        if self.spec.op.uses_model:
            from synthlang.execute.runner import LLMStep

            self.llm = LLMStep(self.graph.runner, self, self.spec, self.stats, self.graph.round)
        else:
            self.graph.runner.progress.start_step(self.display, 0)

    def ctx(self, rows: list[Row]) -> RowContext:
        runner = self.graph.runner
        side = {name: hydrate(runner.store, sort_rows(rs)) for name, rs in self.side_rows.items()}
        if self.reads_input:   # the whole main input, handed over once at the end (this node does not stream)
            side[self.spec.input] = hydrate(runner.store, sort_rows(rows))
        for name in self.side:   # inside a loop, `against=POOL` reads the whole pool, not only the last round's rows
            if name in self.graph.whole:
                side[name] = hydrate(runner.store, self.graph.whole[name])
        return RowContext(round=self.graph.round, params=dict(runner.program.params),
                          nodes={k: [r.data for r in v] for k, v in side.items()},
                          row_ids=[r.rid for r in rows], parent_ids=[r.parents for r in rows],
                          base_dir=runner.program.base_dir, node_ids={k: [r.rid for r in v] for k, v in side.items()},
                          lineage=runner._lineage if self.spec.op.extra.get("needs_lineage") else None)

    def process(self, rows: list[Row], final: bool) -> None:
        assert self.stats is not None
        self.stats.rows_in += len(rows)
        if self.llm is not None:
            self.llm.add(rows, self.ctx(rows))
        else:
            self.graph.runner.progress.grow(len(rows))
            out = self.graph.runner._row_batch(self.spec, rows, self.ctx(rows), self.stats, self.graph.round,
                                               global_=not self.stream)
            self.stats.rows_out += len(out)
            self.emit(self.spec.name, out)

    def busy(self) -> bool:
        return self.llm is not None and self.llm.busy()

    def unfinished(self) -> int:
        return self.llm.unfinished() if self.llm is not None else 0

    def on_message(self, msg: tuple[Any, ...]) -> None:
        if self.llm is not None:
            self.llm.on_message(msg)

    def after_messages(self) -> None:
        if self.llm is not None:
            out = self.llm.take_ready()
            if out:
                assert self.stats is not None
                self.stats.rows_out += len(out)
                self.emit(self.spec.name, out)

    def finish(self) -> None:
        if self.llm is not None:
            self.llm.close()
        else:
            self.graph.runner.progress.end_step()
        assert self.stats is not None
        self.stats.seconds = time.perf_counter() - self.t0
        self.graph.runner._record_step_spec(self.spec, self.stats)


class LoopNode(Node):
    """A ``loop`` block: waits for its inputs, runs its rounds (each a sub-graph of the body), then emits.

    Its round state (pools so far, rows fed back, each body step's rows) lives in the node.
    """

    def __init__(self, graph: Graph, spec: LoopSpec, inputs: tuple[str, ...]) -> None:
        pools = tuple(dict.fromkeys(p for p, _ in spec.feeds))
        provides = tuple(dict.fromkeys(pools + tuple(st.name for st in spec.steps) + (spec.name,)))
        super().__init__(graph, spec.name, provides, main=inputs)
        self.spec = spec

    def process(self, rows: list[Row], final: bool) -> None:
        pass   # everything arrives as held rows; see run()

    def run(self) -> None:
        got: dict[str, list[Row]] = {n: [] for n in self.main}
        while self.open:
            msg = self.inbox.get()
            if msg[0] == "rows":
                got[msg[1]].extend(hydrate(self.graph.runner.store, msg[2]))
            elif msg[0] == "end":
                self.open.discard(msg[1])
        if self.graph.stopping:
            return
        from synthlang.execute.loops import run_loop_node

        outputs = run_loop_node(self.graph, self.spec, {n: sort_rows(rs) for n, rs in got.items()})
        for name, rows in outputs.items():
            self.emit(name, rows)


class Graph:
    """Nodes wired by name, run to completion by :meth:`run`.

    Args:
        runner: the run (store, engines, budget, stop flag).
        round_: the loop round of the steps in this graph (0 at top level).
        whole: rows of a loop's pools read whole by body steps (``against=POOL``).
    """

    def __init__(self, runner: Runner, round_: int = 0, whole: dict[str, list[Row]] | None = None) -> None:
        self.runner = runner
        self.round = round_
        self.whole = whole or {}
        self.nodes: list[Node] = []
        self.kept: dict[str, list[Row]] = defaultdict(list)
        self.keep_for: set[tuple[int, str]] = set()
        self._kept_lock = threading.Lock()
        self.external: dict[str, list[Row]] = {}

    @property
    def stopping(self) -> bool:
        return self.runner._stop is not None

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def keep(self, node: Node, name: str, rows: list[Row]) -> None:
        if (id(node), name) in self.keep_for:
            with self._kept_lock:
                self.kept[name].extend(rows)

    def keep_output(self, node: Node, name: str) -> None:
        """Keep the rows ``node`` emits as ``name`` (an export, a loop body's output) in :attr:`kept`."""
        self.keep_for.add((id(node), name))

    def connect(self, provider: Node | None, name: str, consumer: Node, as_name: str | None = None) -> None:
        """Feed ``consumer``'s input ``as_name`` from ``provider``'s output ``name`` (None: an external input)."""
        if provider is None:
            if name not in self.external:
                raise ConfigError(f"internal: no rows for '{name}'")
            rows = self.external[name]
            for i in range(0, len(rows), SOURCE_CHUNK):
                consumer.inbox.put(("rows", as_name or name, rows[i:i + SOURCE_CHUNK]))
            consumer.inbox.put(("end", as_name or name))
            return
        provider.subs[name].append((consumer, as_name or name))

    def run(self) -> None:
        """Start every node and wait for all of them (the caller's thread keeps handling signals)."""
        for n in self.nodes:
            n.thread.start()
        driver = self.round == 0 and not self.whole   # the top-level graph runs on the driver's thread
        for n in self.nodes:
            while n.thread.is_alive():
                if driver:
                    for d in list(self.runner.dispatchers.values()):
                        if d.want_run:
                            d.want_run = False
                            d._run()
                n.thread.join(timeout=0.05)
                self.runner.store.tick()


def step_locality(st: StepSpec) -> str:
    """``row``, ``group`` or ``global`` for a step: the operator's declared locality, refined by options.

    ``filter``/``select`` are row-local with only ``where``/``min``/``max`` and no ordering; ``verify``'s
    majority vote is per parent group unless it groups by a field; an LLM step whose ``prepare`` needs
    the whole input (few-shot pools, budget splits) is global.
    """
    op, o = st.op, st.opts
    loc = op.locality
    if op.name in ("filter", "select"):
        if any(o.get(k) is not None for k in ("by", "per", "quota", "top_k", "sample", "weight")):
            return "global"
        return "row"
    if loc == "group" and o.get("group"):
        return "global"
    return loc


def round_fingerprint(fingerprint: str, round_: int) -> str:
    """A body step's fingerprint in one round: row ids differ per round."""
    return digest({"step": fingerprint, "round": round_})


__all__ = ["Dispatcher", "Graph", "LoopNode", "Node", "Row", "SourceNode", "StepNode", "ord_text",
           "round_fingerprint", "sort_rows", "step_locality"]
