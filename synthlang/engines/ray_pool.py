"""Engines on a Ray cluster: a model's requests run on a pool of long-lived engine replicas (Ray actors).

This is the only module that imports ``ray``. The runner does not know Ray exists: with
``synth run --on ray`` each model's engine is a :class:`RayEngine`, which has the same ``kind`` and
``model_id`` as the engine it wraps (so call keys are identical to a local run) and the same
``generate(iterable) -> iterator`` contract (:class:`synthlang.engines.base.Engine`). The driver
keeps rendering prompts, computing keys, answering from the cache and committing results; workers
only run inference and never touch the store.

How a request travels (see docs/engines.md, "Ray"):

* ``load()`` starts ``replicas`` actors of :class:`_Replica`, each building the real engine
  (``create_engine``) once; they live until the run closes its engines, so a model used by five
  steps and ten loop rounds is loaded once per replica.
* ``generate`` reads the request iterator lazily in a feeder thread, only while fewer than
  ``replicas * inflight`` batches are in flight (the runner's admission - Ctrl-C, budget - decides
  per request, so a stop sends nothing new and the batches in flight still come back), sends each
  batch of ``batch_size`` requests to the least-loaded live replica, and yields each batch's
  results as soon as Ray has them (``ray.wait``), in any order.
* A replica that dies mid-batch is restarted by Ray (``max_restarts``) and its task re-run
  (``max_task_retries``); when Ray gives up, the batch is sent again to another replica (at most
  ``resubmits`` times) before its calls come back as failed results. A key is yielded at most once
  per ``generate`` call, whatever Ray re-runs.

Ray Data's ``map_batches`` with an actor pool (what ``ray.data.llm.build_processor`` builds) was
not used: its actor pool lives for one dataset execution, so each step and each loop round would
load the model again, and a dataset wants its rows up front, which defeats per-request admission.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from synthlang.engines.base import Request, Result
from synthlang.errors import ConfigError, EngineError, EngineUnavailable

# Batch size per engine kind: llama.cpp runs one request at a time (a batch of 1 streams each
# result back at once); vLLM batches continuously inside one task, so it wants many per task.
DEFAULT_BATCH = {"embedded": 1, "fake": 1, "vllm": 256}


def import_ray() -> Any:
    """``import ray``, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--on ray needs Ray ({exc}): pip install 'synthlang[ray]'") from None
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None,
              runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Connect to a Ray cluster, or start a local one; a no-op when Ray is already initialised.

    Args:
        address: a cluster's GCS address (``HOST:6379``) or ``auto``; ``None`` starts a local Ray
            with ``num_cpus`` CPUs (or joins ``RAY_ADDRESS`` when that is set, as ``ray job submit``
            does).
        num_cpus: CPUs of a local Ray (default: all cores); ignored when joining a cluster.
        object_store_mb: object store size of a local Ray, in MiB (default 256: requests and
            results are small).
        runtime_env: Ray runtime env for the workers (e.g. ``{"pip": ["synthlang[ray]"]}``).

    Returns:
        ``{"address": GCS address, "cpus": cluster CPUs, "gpus": cluster GPUs, "started_s": seconds}``.

    Raises:
        ConfigError: Ray is not installed, or the address cannot be reached.
    """
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # A local cluster on loopback only (Ray otherwise binds the host's public interface). Ray reads this at
        # import, so it holds when this process had not imported Ray yet; a remote cluster keeps Ray's default.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    t0 = time.perf_counter()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "logging_level": "warning"}
        if runtime_env:
            kwargs["runtime_env"] = runtime_env
        if address is None and not os.environ.get("RAY_ADDRESS"):
            kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                          object_store_memory=int(object_store_mb or 256) * 2**20)
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"could not {'start a local Ray' if address is None else 'reach the Ray cluster at ' + address}: "
                              f"{exc}") from None
    res = ray.cluster_resources()
    return {"address": ray.get_runtime_context().gcs_address, "cpus": float(res.get("CPU", 0)),
            "gpus": float(res.get("GPU", 0)), "started_s": time.perf_counter() - t0}


class _Replica:
    """One engine replica inside a Ray actor: builds the real engine once and runs batches on it."""

    def __init__(self, kind: str, model_id: str, options: dict[str, Any], index: int) -> None:
        from synthlang.engines import create_engine

        self.index = index
        self.engine = create_engine(kind, model_id, options)

    def ready(self) -> dict[str, Any]:
        """Load the model; return where this replica runs (pid, node id)."""
        if hasattr(self.engine, "load"):
            self.engine.load()
        return self.where()

    def where(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()[:12]}

    def run(self, batch: list[Request]) -> list[Result]:
        """Run one batch on the engine; every result carries the replica's index, pid and node in ``meta``."""
        where = self.where()
        out = []
        for res in self.engine.generate(batch):
            res.meta = {**res.meta, "ray_actor": self.index, "ray_pid": where["pid"], "ray_node": where["node"]}
            out.append(res)
        return out


@dataclass
class ActorStats:
    """What one replica did in this run (for the per-actor throughput table).

    Attributes:
        index: the replica's index in the pool.
        calls: results it returned.
        completion_tokens: tokens it generated.
        busy_s: sum of its calls' latencies, in seconds.
        pids: the process ids it ran in (more than one after a restart).
        restarts_seen: batches that failed with the actor dead and were sent again.
    """

    index: int
    calls: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0
    pids: set[int] = field(default_factory=set)
    restarts_seen: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per busy second."""
        return self.completion_tokens / self.busy_s if self.busy_s > 0 else 0.0


class RayEngine:
    """An engine whose requests run on a pool of Ray actors, each holding one replica of the real engine.

    Args:
        kind: the wrapped engine's kind (``embedded``, ``vllm``, ``fake``); enters call keys as usual.
        model_id: the wrapped engine's model id.
        options: the model's engine options (passed to ``create_engine`` in each replica).
        replicas: number of actors.
        num_cpus: CPUs reserved per actor (the embedded engine uses as many threads).
        num_gpus: GPUs reserved per actor (vllm: its ``tensor_parallel_size``).
        batch_size: requests per Ray task (default per kind: :data:`DEFAULT_BATCH`).
        inflight: batches in flight per actor (2 keeps an actor busy while a result travels back).
        max_restarts: how often Ray restarts a dead actor.
        max_task_retries: how often Ray re-runs a task whose actor died.
        resubmits: how often this engine sends a batch again after Ray gave up on it.
        load_timeout_s: how long ``load`` waits for every replica to be placed and loaded, in seconds.

    Raises:
        ConfigError: Ray is not installed.
        EngineUnavailable: (from ``load``/``generate``) no replica could load the model.
    """

    def __init__(self, kind: str, model_id: str, options: dict[str, Any], replicas: int = 1, num_cpus: float = 1,
                 num_gpus: float = 0, batch_size: int | None = None, inflight: int = 2, max_restarts: int = 2,
                 max_task_retries: int = 2, resubmits: int = 2, load_timeout_s: float = 900.0) -> None:
        self.ray = import_ray()
        self.kind = kind
        self.model_id = model_id
        self.options = dict(options)
        self.replicas = max(1, int(replicas))
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.batch_size = max(1, int(batch_size or DEFAULT_BATCH.get(kind, 8)))
        self.inflight = max(1, int(inflight))
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.resubmits = resubmits
        self.load_timeout_s = load_timeout_s
        self.actors: list[Any] = []
        self.stats = [ActorStats(i) for i in range(self.replicas)]
        self.duplicates_dropped = 0
        self._load = [0] * self.replicas
        self._dead: set[int] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ pool
    def load(self) -> None:
        """Start the actors and load the model in each (in parallel).

        Raises:
            EngineUnavailable: a replica could not load the model (the engine's own message).
        """
        if self.actors:
            return
        ray = self.ray
        cls = ray.remote(_Replica).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                           max_restarts=self.max_restarts, max_task_retries=self.max_task_retries)
        self.actors = [cls.remote(self.kind, self.model_id, self.options, i) for i in range(self.replicas)]
        try:
            wheres = ray.get([a.ready.remote() for a in self.actors], timeout=self.load_timeout_s)
            for st, where in zip(self.stats, wheres, strict=True):
                st.pids.add(where["pid"])
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise EngineUnavailable(
                f"{self.kind}({self.model_id!r}) on Ray: {self.replicas} replica(s) of {self.num_cpus} CPU / {self.num_gpus} GPU "
                f"each were not placed and loaded within {self.load_timeout_s:.0f} s; the cluster has "
                f"{ray.cluster_resources()}; lower replicas/num_cpus/num_gpus in synth.toml [executor.models]") from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise EngineUnavailable(f"{self.kind}({self.model_id!r}) on Ray: a replica could not load: "
                                    f"{_root_message(exc)}") from None

    def actor_pids(self) -> list[int]:
        """The current process id of each replica (changes after Ray restarts one)."""
        return [w["pid"] for w in self.ray.get([a.where.remote() for a in self.actors])]

    def _pick(self) -> int:
        with self._lock:
            alive = [i for i in range(self.replicas) if i not in self._dead]
            if not alive:
                raise EngineError(f"{self.kind}({self.model_id!r}) on Ray: every replica died and Ray gave up "
                                  f"restarting them (max_restarts={self.max_restarts})")
            i = min(alive, key=lambda j: self._load[j])
            self._load[i] += 1
            return i

    def _done(self, i: int) -> None:
        with self._lock:
            self._load[i] -= 1

    # ------------------------------------------------------------ generate
    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Run the requests on the pool; yield each result as its batch comes back (any order).

        Requests are read lazily, at most ``replicas * inflight`` batches ahead of the results.

        Raises:
            EngineUnavailable: the replicas could not load the model.
            EngineError: every replica died beyond Ray's restarts.
        """
        self.load()
        ray = self.ray
        cap = self.replicas * self.inflight
        room = threading.Semaphore(cap)
        batches: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        fed_all = threading.Event()

        def feed() -> None:
            # Reads the runner's admission iterator; runs in its own thread so that an iterator which
            # blocks (rows still streaming in from an upstream step) never holds back finished results.
            try:
                it = iter(requests)
                while not stop.is_set():
                    room.acquire()
                    if stop.is_set():
                        return
                    batch = []
                    for r in it:
                        batch.append(r)
                        if len(batch) >= self.batch_size:
                            break
                    if not batch:
                        return
                    batches.put(batch)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
                batches.put(exc)
            finally:
                fed_all.set()

        feeder = threading.Thread(target=feed, name=f"ray-feed-{self.model_id}", daemon=True)
        feeder.start()
        inflight: dict[Any, tuple[int, list[Request], int]] = {}   # ref -> (actor, batch, attempt)
        seen: set[str] = set()

        def submit(batch: list[Request], attempt: int) -> None:
            i = self._pick()
            inflight[self.actors[i].run.remote(batch)] = (i, batch, attempt)

        try:
            while True:
                while True:   # send every batch the feeder has read
                    try:
                        item = batches.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    submit(item, 0)
                if not inflight:
                    if fed_all.is_set() and batches.empty():
                        return
                    try:
                        item = batches.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if isinstance(item, BaseException):
                        raise item
                    submit(item, 0)
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.05)
                for ref in ready:
                    i, batch, attempt = inflight.pop(ref)
                    self._done(i)
                    resent = False
                    try:
                        results = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                        results, resent = self._after_death(i, batch, attempt, exc, seen, submit)
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                        if isinstance(cause, EngineError):
                            raise EngineError(_root_message(exc)) from None
                        results = [_failed(r, f"ray task failed: {_root_message(exc)}") for r in batch]
                    for res in results:
                        if res.key in seen:
                            self.duplicates_dropped += 1
                            continue
                        seen.add(res.key)
                        self._count(res)
                        yield res
                    if not resent:   # the batch's slot is free once it is finished, not when it is sent again
                        room.release()
        finally:
            stop.set()
            room.release()
            for ref in inflight:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort; the actors are killed at close()
                    pass

    def _after_death(self, i: int, batch: list[Request], attempt: int, exc: Exception, seen: set[str],
                     submit: Any) -> tuple[list[Result], bool]:
        """Ray gave up on a batch (its actor died past its restarts/retries): send it again or fail its calls.

        Returns:
            (failed results, whether the batch was sent again).
        """
        self.stats[i].restarts_seen += 1
        if isinstance(exc, self.ray.exceptions.RayActorError):
            try:   # a dead-for-good actor is taken out of the pool; one being restarted stays
                self.ray.get(self.actors[i].where.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - any failure means the actor is gone
                with self._lock:
                    self._dead.add(i)
        rest = [r for r in batch if r.key not in seen]
        if rest and attempt < self.resubmits:
            submit(rest, attempt + 1)
            return [], True
        return [_failed(r, f"ray worker died {attempt + 1} times running this call: {_root_message(exc)}") for r in rest], False

    def _count(self, res: Result) -> None:
        idx = res.meta.get("ray_actor")
        if not (isinstance(idx, int) and 0 <= idx < len(self.stats)):
            return
        with self._lock:   # generate() may run in several threads at once (one per streaming step)
            st = self.stats[idx]
            st.calls += 1
            st.completion_tokens += res.completion_tokens
            st.busy_s += res.latency_s
            if "ray_pid" in res.meta:
                st.pids.add(int(res.meta["ray_pid"]))

    def actor_stats(self) -> list[dict[str, Any]]:
        """Per replica: calls, completion tokens, busy seconds, tokens/s, pids (see :class:`ActorStats`)."""
        return [{"actor": s.index, "calls": s.calls, "completion_tokens": s.completion_tokens, "busy_s": round(s.busy_s, 3),
                 "tokens_per_s": round(s.tokens_per_s, 2), "pids": sorted(s.pids), "resent": s.restarts_seen}
                for s in self.stats]

    def close(self) -> None:
        """Kill the actors (frees their CPUs/GPUs on the cluster)."""
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                pass
        self.actors = []


def _failed(req: Request, message: str) -> Result:
    return Result(req.key, finish_reason="error", error=message)


def _root_message(exc: BaseException) -> str:
    """The message of the exception a Ray error wraps, or the last informative line of Ray's own text."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and str(cause).strip():
        return str(cause).strip().splitlines()[0][:500]
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ":" in ln and not ln.startswith(" "):
            return ln.strip()[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]


__all__ = ["RayEngine", "ActorStats", "start_ray", "import_ray", "DEFAULT_BATCH"]
