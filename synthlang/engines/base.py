"""The engine interface: a batch of requests in, results streamed back one by one.

Every engine (embedded llama.cpp, vLLM in-process, OpenAI-compatible HTTP,
the fake engine for tests) implements :class:`Engine`. Heavy libraries are
imported lazily inside :meth:`Engine.load`, so ``import synthlang`` works
without vllm or llama_cpp installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

# Sampling params that change the output; they go into a call's cache key.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_tokens", "stop", "presence_penalty",
                 "frequency_penalty", "repetition_penalty", "min_p")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters that change a model's output.

    Attributes:
        temperature: softmax temperature (0 = greedy).
        top_p: nucleus sampling mass.
        top_k: top-k cutoff, ``None`` for the engine default.
        max_tokens: maximum completion length, in tokens.
        stop: stop strings.
        presence_penalty, frequency_penalty, repetition_penalty, min_p: as in
            the OpenAI / vLLM APIs; ``None`` means the engine default.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None

    def key_dict(self) -> dict[str, Any]:
        """The fields that enter a cache key (``None`` values dropped), in field order.

        The same dict ``dataclasses.asdict`` gave (every field is a number, ``None`` or the ``stop`` tuple,
        which becomes a list), built without asdict's deep copy: this runs once per call record.
        """
        d = {f: getattr(self, f) for f in _SAMPLING_FIELDS}
        d["stop"] = list(self.stop)
        return {k: v for k, v in d.items() if v is not None and v != []}


_SAMPLING_FIELDS = tuple(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class Request:
    """One LLM call.

    Attributes:
        key: the call's content hash (see :func:`synthlang.plan.keys.call_key`).
        messages: chat messages, ``[{"role": ..., "content": ...}]``.
        sampling: sampling params.
        seed: the sampling seed (derived from the key when the user set none).
        logprobs: number of top logprobs to return per token, or ``None``.
        json_schema: a JSON schema the response must follow, or ``None``.
    """

    key: str
    messages: tuple[dict[str, str], ...]
    sampling: SamplingParams
    seed: int
    logprobs: int | None = None
    json_schema: dict[str, Any] | None = None


@dataclass
class Result:
    """What an engine returns for one :class:`Request`.

    Attributes:
        key: the request's key.
        text: the completion text ('' on error).
        finish_reason: ``stop``, ``length``, ``content_filter`` or ``error``.
        prompt_tokens, completion_tokens: usage, in tokens.
        latency_s: wall time of this call, in seconds.
        error: error message when the call failed, else ``None``.
        logprobs: per-token logprobs of the completion (list of floats) when asked.
        meta: engine-specific facts recorded per call (endpoint URL, batch
            size, concurrency); never part of the cache key.
    """

    key: str
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    logprobs: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


DIRECTIVE_KEY = "x-synthlang"
"""The key, in a request's ``json_schema`` slot, of what a call asks besides sampling (issue 15).

The runner hands an operator's per-row ``__schema__`` (see :class:`~synthlang.ops.base.Operator`'s
``prepare``) to the engine as :attr:`Request.json_schema`, and that slot enters the call key. Until
the runner carries these as fields of their own, ``score`` and prefix continuation travel there as
``{"x-synthlang": {"continue": PREFIX}}`` or ``{"x-synthlang": {"score": TEXT}}`` (with any real
schema beside them); engines split them off with :func:`split_directives`.
"""

#: Directives an engine may support, and which engines do (checked at ``synth check``).
DIRECTIVES = ("continue", "score")
DIRECTIVE_ENGINES: dict[str, tuple[str, ...]] = {"continue": ("embedded", "vllm", "fake"),
                                                 "score": ("embedded", "vllm", "fake")}


def with_directive(schema: dict[str, Any] | None, name: str, value: Any) -> dict[str, Any]:
    """``schema`` (or none) plus one directive, as the per-row ``__schema__`` an operator's ``prepare`` returns.

    Raises:
        ValueError: an unknown directive name.
    """
    if name not in DIRECTIVES:
        raise ValueError(f"unknown request directive {name!r}; known: {', '.join(DIRECTIVES)}")
    out = dict(schema or {})
    out[DIRECTIVE_KEY] = {**out.get(DIRECTIVE_KEY, {}), name: value}
    return out


def split_directives(schema: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(real JSON schema or None, directives)`` of a request's ``json_schema`` slot.

    ``{"x-synthlang": {"continue": "The first"}}`` gives ``(None, {"continue": "The first"})``;
    a schema without the key comes back unchanged with ``{}``.
    """
    if not schema or DIRECTIVE_KEY not in schema:
        return schema, {}
    rest = {k: v for k, v in schema.items() if k != DIRECTIVE_KEY}
    return (rest or None), dict(schema[DIRECTIVE_KEY] or {})


def score_text(tokens: list[str], logprobs: list[float]) -> str:
    """The reply text of a ``score`` call: JSON ``{"tokens": [...], "logprobs": [...]}`` (natural log, per token).

    The same lists are in :attr:`Result.logprobs`; the text keeps the token strings, which the call cache stores.
    """
    import json

    return json.dumps({"tokens": list(tokens), "logprobs": [float(x) for x in logprobs]})


class Engine(Protocol):
    """A loaded inference engine.

    Attributes:
        kind: ``embedded``, ``vllm``, ``openai`` or ``fake``; part of every cache key.
        model_id: the model's id; part of every cache key.

    Optional: ``streams_requests = True`` (openai: ``generate`` pulls lazily from the iterator it is given);
    ``accepts_more = True`` (vllm: ``generate(requests, more=fn)`` calls ``fn()`` between its steps and adds
    the requests it returns to the running batch). The scheduler's ``Dispatcher`` reads both.
    """

    kind: str
    model_id: str

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Run a batch; yield each :class:`Result` as soon as it finishes (any order).

        Per-request failures come back as results with ``error`` set; only a
        failure of the whole engine raises :class:`~synthlang.errors.EngineError`.
        """
        ...

    def close(self) -> None:
        """Free the model and any worker processes."""
        ...
