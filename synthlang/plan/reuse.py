"""Reusing calls that stopped on their own under a different ``max_tokens`` (issue 11 item 15).

A call's key covers ``max_tokens`` (:func:`synthlang.plan.keys.call_key`), so raising it would re-issue
every call. But ``max_tokens`` only cuts a generation short: a call that finished with
``finish_reason == "stop"`` after ``completion_tokens`` tokens produced the whole reply it was going to
produce, and any ``max_tokens`` above ``completion_tokens`` gives the same reply. So:

    **Rule.** A finished call (no error) with ``finish_reason == "stop"`` is reused for a request that
    differs from it only in ``max_tokens``, when the new ``max_tokens`` is larger than the call's
    ``completion_tokens``. Calls that stopped at ``length`` (and failed calls) are re-issued.

"Differs only in ``max_tokens``" is decided by :func:`relaxed_key`, a digest of everything in the call
key except ``max_tokens`` (and except the seed when it was derived from the key, since a derived seed
changes with ``max_tokens``; an explicit ``seed=`` stays in). With a derived seed the reused reply is a
sample from the same distribution, not the byte-identical reply a fresh call would get; with an
explicit ``seed=`` or ``temperature=0`` it is the same reply. This is the complaint of Bespoke
curator's issue 697, resolved the same way.

Stores record the relaxed key of each call in ``calls.key_nomax``
(:meth:`synthlang.store.Store.get_calls_relaxed` does the lookup).
"""

from __future__ import annotations

from typing import Any

from synthlang.plan.keys import digest_text, encode_body


def relaxed_key(engine: str, model_id: str, messages: list[dict[str, str]] | tuple[dict[str, str], ...],
                sampling: dict[str, Any], sample_index: int, seed: int | None,
                json_schema: dict[str, Any] | None = None, revision: str | None = None,
                logprobs: int | None = None, round_: int = 0, messages_text: str | None = None) -> str:
    """The call key without ``max_tokens`` (and without a derived seed): 32 hex digits.

    Args: as :func:`synthlang.plan.keys.call_key`; ``seed`` is the user's ``seed=`` or ``None``; a loop
    round > 0 stays in (round 2 must not reuse round 1's call through this relaxed lookup).
    """
    body = {
        "relaxed": "max_tokens", "engine": engine, "model": model_id, "revision": revision,
        "messages": list(messages), "sampling": {k: v for k, v in sampling.items() if k != "max_tokens"},
        "sample_index": sample_index, "schema": json_schema, "logprobs": logprobs, "seed": seed,
    }
    if round_ and sampling.get("temperature", 1.0) != 0:
        body["round"] = round_
    return digest_text(encode_body(body, messages_text))


def reusable(call: dict[str, Any], max_tokens: int) -> bool:
    """The rule above, for one stored call (``finish_reason``, ``error``, ``completion_tokens``)."""
    return (call.get("error") is None and call.get("finish_reason") == "stop"
            and int(call.get("completion_tokens") or 0) < int(max_tokens))


def reuse_stopped_calls(store: Any, by_key: dict[str, list[Any]], cached: dict[str, dict[str, Any]],
                        relaxed: dict[str, str], max_tokens: int, skip: set[str],
                        model: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Stored calls that answer the uncached keys of a step under the rule above.

    Args:
        store: the run's store (``get_calls_relaxed``).
        by_key: call key → the runner's tasks that asked for it (each has a ``key`` attribute).
        cached: the exact-key hits already found (skipped).
        relaxed: call key → its :func:`relaxed_key`.
        max_tokens: the step's ``max_tokens``.
        skip: keys never to answer from the cache (``--retry-failed``).
        model: ``(engine, model id)`` of the keys (lets the store skip a model it has no call of).

    Returns:
        New call key → the reused call (as :meth:`Store.get_calls` gives it). The tasks of each
        reused key get the stored call's key, so their rows point at the call that made them.
    """
    want = {k: relaxed[k] for k in by_key if k not in cached and k not in skip and k in relaxed}
    if not want or not hasattr(store, "get_calls_relaxed"):
        return {}
    found = store.get_calls_relaxed(sorted(set(want.values())), model) if model else \
        store.get_calls_relaxed(sorted(set(want.values())))
    out: dict[str, dict[str, Any]] = {}
    for key, rk in want.items():
        call = next((c for c in found.get(rk, []) if reusable(c, max_tokens)), None)
        if call is None:
            continue
        for t in by_key[key]:
            t.key = call["key"]
        out[key] = call
    return out
