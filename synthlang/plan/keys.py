"""Content fingerprints and cache keys: sha256 of canonical JSON plus a version constant.

Follows miniwdl's call cache: a key covers everything that decides a call's
output and nothing else, so re-running a recipe re-issues no finished call
and knobs such as batch size, concurrency, timeouts and endpoint URLs can
change freely.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Bump when the meaning of a key changes; it is stored in the DuckDB schema too.
CACHE_VERSION = 1

# One encoder for every key (json.dumps would build a new one per call): the C encoder, same output.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
# sha256 state after the version prefix, copied per digest instead of hashing the prefix again.
_PREFIX = hashlib.sha256(f"v{CACHE_VERSION}:".encode())


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; tuples become lists."""
    return _ENCODE(obj)


def _digest_json(text: str, n: int = 32) -> str:
    h = _PREFIX.copy()
    h.update(text.encode("utf-8"))
    return h.hexdigest()[:n]


def digest_text(text: str, n: int = 32) -> str:
    """:func:`digest` of an object whose canonical JSON is ``text`` (already encoded)."""
    return _digest_json(text, n)


def digest(obj: Any, n: int = 32) -> str:
    """sha256 hex of ``obj``'s canonical JSON with :data:`CACHE_VERSION` mixed in; first ``n`` digits."""
    return _digest_json(_ENCODE(obj), n)


#: a stand-in for the messages in a key's body: the body is encoded around it and the messages' canonical JSON,
#: encoded once per call (:func:`messages_json`), put in its place. Canonical JSON sorts keys by name, never by
#: value, so the text is byte-identical to encoding the body with the messages in it.
_MSGS = "\x00synthlang-messages\x00"
_MSGS_JSON = _ENCODE(_MSGS)


def messages_json(messages: list[dict[str, str]] | tuple[dict[str, str], ...]) -> str:
    """The canonical JSON of rendered messages, to share between :func:`call_key` and ``relaxed_key``."""
    return _ENCODE(list(messages))


def encode_body(body: dict[str, Any], messages_text: str | None) -> str:
    """``canonical_json(body)``, with ``body["messages"]`` taken from its already encoded text when given."""
    if messages_text is None:
        return _ENCODE(body)
    text = _ENCODE({**body, "messages": _MSGS})
    i = text.find(_MSGS_JSON)
    if i < 0 or text.find(_MSGS_JSON, i + 1) >= 0:   # the stand-in inside a model id, say: encode it all
        return _ENCODE(body)
    return text[:i] + messages_text + text[i + len(_MSGS_JSON):]


def call_key(
    engine: str,
    model_id: str,
    messages: list[dict[str, str]] | tuple[dict[str, str], ...],
    sampling: dict[str, Any],
    sample_index: int,
    seed: int | None,
    json_schema: dict[str, Any] | None = None,
    revision: str | None = None,
    logprobs: int | None = None,
    round_: int = 0,
    messages_text: str | None = None,
) -> tuple[str, int]:
    """A call's cache key and its effective seed.

    Args:
        engine: engine kind (``embedded``, ``vllm``, ``openai``, ...).
        model_id: model id; ``revision`` optionally pins a model revision.
        messages: rendered chat messages.
        sampling: output-changing sampling params (:meth:`SamplingParams.key_dict`).
        sample_index: 0-based index among a row's ``n`` samples.
        seed: the step's seed, or ``None`` to derive one from the key computed without it. A step seed
            is spread over the samples by :func:`sample_seed`, so ``n=4, seed=7`` makes 4 different samples.
        json_schema: the response schema, if any.
        logprobs: number of top logprobs requested, if any.
        round_: the loop round of the calling step (0 outside loops). Round r > 0 enters the key and the
            seed (:func:`sample_seed`), so a loop body's teacher samples anew each round (LLM2LLM's round 2
            augments a still-wrong seed with a new item, not round 1's cached one), while a re-run of the
            same recipe hits the same keys. Round 0 and non-loop keys are unchanged, and so are greedy
            calls (``temperature`` 0: one possible reply, so a re-asked call stays cached).
        messages_text: :func:`messages_json` of ``messages``, when the caller has it (no second encoding).

    Returns:
        ``(key, seed)``: 32 hex digits and a 31-bit seed.
    """
    if round_ and sampling.get("temperature", 1.0) == 0:
        round_ = 0   # greedy decoding has one reply: a re-asked round-r call is the cached one
    if seed is not None:
        seed = sample_seed(seed, sample_index, round_)
    body = {
        "engine": engine, "model": model_id, "revision": revision, "messages": list(messages),
        "sampling": sampling, "sample_index": sample_index, "schema": json_schema, "logprobs": logprobs,
    }
    if round_:
        body["round"] = round_   # "round" sorts before "seed": the suffix trick below still holds
    # "seed" sorts after every other key of the body, so the canonical JSON of the body with its seed is
    # the JSON without it plus `,"seed":N}`: one encoding serves both digests (keys stay byte-identical,
    # pinned by tests/test_keys_pinned.py).
    text = encode_body(body, messages_text)
    if seed is None:
        seed = int(_digest_json(text, 8), 16) & 0x7FFFFFFF
    return _digest_json(f'{text[:-1]},"seed":{seed if type(seed) is int else _ENCODE(seed)}}}'), seed


def sample_seed(step_seed: int, sample_index: int, round_: int = 0) -> int:
    """The seed of sample ``sample_index`` of a step whose recipe fixed ``seed=step_seed``.

    Sample 0 keeps the step seed (so ``n=1`` steps keep their seeds and call
    keys); sample k > 0 gets a 31-bit seed hashed from ``(step_seed, k)``, so
    the ``n`` samples of one row differ while every run reproduces them.
    A key holds the effective seed, so no earlier key changes meaning and
    :data:`CACHE_VERSION` stays (old multi-sample keys are simply not reused).
    In loop round r > 0 the seed is hashed from ``(step_seed, k, r)``: each
    round draws new samples; round 0 keeps the seeds above.

    Args:
        step_seed: the ``seed=`` option of the step.
        sample_index: 0-based index among a row's ``n`` samples.
        round_: 0-based loop round (0 outside loops).

    Returns:
        A seed in ``[0, 2**31)``.
    """
    if round_:
        h = hashlib.sha256(f"sample-seed:{step_seed}:{sample_index}:round{round_}".encode()).hexdigest()
        return int(h[:8], 16) & 0x7FFFFFFF
    if sample_index == 0:
        return step_seed
    h = hashlib.sha256(f"sample-seed:{step_seed}:{sample_index}".encode()).hexdigest()
    return int(h[:8], 16) & 0x7FFFFFFF


def row_id(step_fingerprint: str, parent_ids: tuple[str, ...] | list[str], sample_index: int) -> str:
    """A row's id, derived from content: step fingerprint, parent row ids, sample index (24 hex digits)."""
    if type(sample_index) is int and step_fingerprint.isalnum() and all(type(p) is str and p.isalnum() for p in parent_ids):
        # the canonical JSON written out (ids and fingerprints are hex digits, which JSON never escapes):
        # byte-identical to the general path below, at a fraction of its cost (tests/test_keys_pinned.py)
        return _digest_json('{"parents":[' + ",".join(['"' + p + '"' for p in parent_ids]) + '],"sample":'
                            + str(sample_index) + ',"step":"' + step_fingerprint + '"}', 24)
    return digest({"step": step_fingerprint, "parents": list(parent_ids), "sample": sample_index}, 24)
