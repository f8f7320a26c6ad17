"""Where a run's inference happens: ``local`` (in the driver) or ``ray`` (engine replicas on a Ray cluster).

The choice comes from ``synth run --on local|ray|ray://ADDRESS`` or, without the flag, from an
``[executor]`` table in ``synth.toml`` next to the recipe (see docs/scale.md)::

    [executor]
    on = "ray"               # "local" (default) or "ray"
    address = "auto"         # a cluster's GCS address, or "auto"; omit it to start a local Ray
    num_cpus = 2             # CPUs of a local Ray (default: all cores)
    max_restarts = 2         # Ray restarts of a dead replica
    max_task_retries = 2     # Ray re-runs of a batch whose replica died

    [executor.models.teacher]  # per model declaration; every key optional
    replicas = 4
    num_cpus = 1             # per replica (embedded: its llama.cpp threads)
    num_gpus = 1             # per replica (vllm: default tensor_parallel_size)
    batch_size = 1           # requests per Ray task

Only the engine boundary changes: :func:`engine_factory` returns an engine factory for
:class:`synthlang.execute.runner.Runner` that wraps ``embedded``, ``vllm`` and ``fake`` models in a
:class:`synthlang.engines.ray_pool.RayEngine`. ``openai`` models stay in the driver: they are
already remote, and a Ray Serve LLM or ``vllm serve`` endpoint is reached through ``base_url``.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthlang.engines import Engine, create_engine
from synthlang.errors import ConfigError
from synthlang.plan.program import ModelSpec, Program

CONFIG_FILE = "synth.toml"
RAY_KINDS = ("embedded", "vllm", "fake")   # engines that run as replicas on the cluster

_EXECUTOR_KEYS: dict[str, tuple[type, ...]] = {
    "on": (str,), "address": (str,), "num_cpus": (int,), "object_store_mb": (int,), "max_restarts": (int,),
    "max_task_retries": (int,), "runtime_env": (dict,), "models": (dict,),
}
_MODEL_KEYS: dict[str, tuple[type, ...]] = {
    "replicas": (int,), "num_cpus": (int, float), "num_gpus": (int, float), "batch_size": (int,), "inflight": (int,),
}


@dataclass
class ClusterConfig:
    """The executor settings of one run.

    Attributes:
        on: ``local`` or ``ray``.
        address: the Ray cluster's address (``HOST:PORT`` or ``auto``); ``None`` starts a local Ray.
        num_cpus: CPUs of a local Ray.
        object_store_mb: object store of a local Ray, in MiB.
        max_restarts, max_task_retries: Ray fault tolerance per replica actor.
        runtime_env: Ray runtime env for the workers.
        models: per model name, overrides of ``replicas``, ``num_cpus``, ``num_gpus``, ``batch_size``, ``inflight``.
        origin: where the settings came from (for messages).
    """

    on: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 256
    max_restarts: int = 2
    max_task_retries: int = 2
    runtime_env: dict[str, Any] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: str = "default"


def parse_on(text: str) -> tuple[str, str | None]:
    """``local`` -> ("local", None); ``ray`` -> ("ray", None); ``ray://ADDR`` -> ("ray", ADDR).

    Raises:
        ConfigError: anything else.
    """
    t = text.strip()
    if t in ("local", "ray"):
        return t, None
    if t.startswith("ray://") and len(t) > len("ray://"):
        return "ray", t[len("ray://"):]
    raise ConfigError(f"--on {text}: expected local, ray or ray://ADDRESS (a cluster's HOST:PORT, or auto)")


def _check_keys(table: dict[str, Any], allowed: dict[str, tuple[type, ...]], where: str) -> None:
    for k, v in table.items():
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            raise ConfigError(f"{where}: unknown key '{k}'" + (f"; did you mean '{close[0]}'?" if close else
                                                                 f"; keys: {', '.join(allowed)}"))
        types = allowed[k]
        if isinstance(v, bool) or not isinstance(v, types):
            raise ConfigError(f"{where}: '{k}' must be {' or '.join(t.__name__ for t in types)}, not {v!r}")
        if isinstance(v, (int, float)) and v < 0:
            raise ConfigError(f"{where}: '{k}' must be >= 0, not {v!r}")


def load_config(recipe_path: str | Path | None = None, on: str | None = None) -> ClusterConfig:
    """The executor settings: ``synth.toml`` beside the recipe, then ``--on`` over it.

    Args:
        recipe_path: the ``.synth`` file (its folder is searched for ``synth.toml``), or that folder.
        on: the ``--on`` flag (``local``, ``ray``, ``ray://ADDRESS``), or ``None``.

    Raises:
        ConfigError: unreadable or invalid ``synth.toml`` (with file, line and column for a TOML
            syntax error), or a bad ``--on``.
    """
    cfg = ClusterConfig()
    if recipe_path is not None:
        base = Path(recipe_path).resolve()
        path = (base if base.is_dir() else base.parent) / CONFIG_FILE
        if path.is_file():
            try:
                doc = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read: {exc}") from None
            ex = doc.get("executor", {})
            if not isinstance(ex, dict):
                raise ConfigError(f"{path}: 'executor' must be a table ([executor])")
            _check_keys(ex, _EXECUTOR_KEYS, f"{path} [executor]")
            for name, table in ex.get("models", {}).items():
                if not isinstance(table, dict):
                    raise ConfigError(f"{path} [executor.models.{name}]: must be a table")
                _check_keys(table, _MODEL_KEYS, f"{path} [executor.models.{name}]")
            if "on" in ex:
                cfg.on, addr = parse_on(ex["on"])
                cfg.address = addr
            if ex.get("address"):
                cfg.address = ex["address"]
            for k in ("num_cpus", "object_store_mb", "max_restarts", "max_task_retries", "runtime_env"):
                if k in ex:
                    setattr(cfg, k, ex[k])
            cfg.models = {n: dict(t) for n, t in ex.get("models", {}).items()}
            cfg.origin = str(path)
    if on is not None:
        kind, addr = parse_on(on)
        cfg.on = kind
        if addr is not None or kind == "local":
            cfg.address = addr
        cfg.origin = f"--on {on}"
    return cfg


@dataclass
class RayFactory:
    """The engine factory of a ``--on ray`` run: cluster-side replicas for local-engine models.

    Attributes:
        config: the executor settings.
        cluster: what :func:`synthlang.engines.ray_pool.start_ray` returned (address, cpus, gpus).
        engines: the :class:`RayEngine` s built so far, by model name (for per-actor stats).
    """

    config: ClusterConfig
    cluster: dict[str, Any]
    ray_models: list[str]
    engines: dict[str, Any] = field(default_factory=dict)

    def __call__(self, m: ModelSpec) -> Engine:
        if m.kind not in RAY_KINDS:
            return create_engine(m.kind, m.model_id, m.options)   # openai: already remote
        from synthlang.engines.ray_pool import RayEngine

        over = self.config.models.get(m.name, {})
        share = max(1, len(self.ray_models))
        cpus_total = max(self.cluster.get("cpus", 1.0), 1.0)
        options = dict(m.options)
        if m.kind == "vllm":
            gpus = float(over.get("num_gpus", options.get("tensor_parallel_size", 1)))
            cpus = float(over.get("num_cpus", 1))
            replicas = int(over.get("replicas", max(1, int(self.cluster.get("gpus", 0) // max(gpus, 1) // share))))
        else:
            # Each model gets its share of the cluster's CPUs, so a teacher and a student can both be placed.
            cpus = float(over.get("num_cpus", min(float(options.get("threads") or 1), cpus_total / share)))
            gpus = float(over.get("num_gpus", 0))
            replicas = int(over.get("replicas", max(1, int(cpus_total / share // max(cpus, 1e-9)))))
            if m.kind == "embedded":
                options["threads"] = max(1, int(round(cpus)))
        engine = RayEngine(m.kind, m.model_id, options, replicas=replicas, num_cpus=cpus, num_gpus=gpus,
                           batch_size=over.get("batch_size"), inflight=int(over.get("inflight", 2)),
                           max_restarts=self.config.max_restarts, max_task_retries=self.config.max_task_retries)
        self.engines[m.name] = engine
        return engine

    def actor_stats(self) -> dict[str, list[dict[str, Any]]]:
        """Per model name, each replica's calls, tokens and tokens/s (see ``RayEngine.actor_stats``)."""
        return {name: e.actor_stats() for name, e in self.engines.items()}


def engine_factory(program: Program, config: ClusterConfig) -> RayFactory | None:
    """The engine factory for ``config`` (``None`` for a local run: the runner's default).

    Starts or joins Ray when ``config.on == "ray"``.

    Raises:
        ConfigError: Ray is not installed or the cluster cannot be reached.
    """
    if config.on != "ray":
        return None
    from synthlang.engines.ray_pool import start_ray

    used = {st.model.name: st.model for st in program.steps + [b for lp in program.loops for b in lp.steps] if st.model}
    ray_models = [n for n, m in used.items() if m.kind in RAY_KINDS]
    unknown = set(config.models) - set(program.models)
    if unknown:
        raise ConfigError(f"{config.origin}: [executor.models] names no model of this recipe: {', '.join(sorted(unknown))}; "
                          f"models: {', '.join(program.models) or 'none'}")
    cluster = start_ray(config.address, config.num_cpus, config.object_store_mb, config.runtime_env)
    return RayFactory(config, cluster, ray_models)


__all__ = ["ClusterConfig", "RayFactory", "engine_factory", "load_config", "parse_on", "CONFIG_FILE", "RAY_KINDS"]
