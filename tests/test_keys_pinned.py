"""Call keys, relaxed keys and row ids are pinned byte for byte (CACHE_VERSION 1).

A store made by an earlier synthlang must keep answering every call of an unchanged recipe from its
cache, so an optimisation of ``plan/keys.py`` or ``plan/reuse.py`` must not move a single key. The
values below were computed with the straightforward implementation (``json.dumps`` of the whole body,
sha256 of ``"v1:" + json``), before the key path was optimised; ``_reference_*`` re-implements it so
random inputs are compared as well.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from synthlang.plan.keys import CACHE_VERSION, call_key, canonical_json, digest, row_id, sample_seed
from synthlang.plan.reuse import relaxed_key

MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Natalia sold clips to 48 of her friends — ünïcode ✓ \"quoted\"\n"}]
SAMP = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 256, "stop": None, "top_k": None}
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}}

PINNED = [
    (("embedded", "smollm2", MSGS, SAMP, 0, None, None, None, None),
     ("52ddcb3aa9011b464ee81a814b172492", 51878874), "44d2db4f5c3affd7b4a16137817084ac"),
    (("openai", "gpt-4o-mini", MSGS[1:], SAMP, 2, 7, None, None, None),
     ("e42efbeb9cf9a92a04ed9414f653ca5e", 1955531292), "572bcccf45b8cb9d25979c12293eeff9"),
    (("vllm", "m", tuple(MSGS), SAMP, 0, None, SCHEMA, "abc123", 5),
     ("71143b1c186885b83ce1e8fd5dc11640", 1706317393), "546f3e63f45875ab32393b6d0e31de0a"),
    (("fake", "fake", [{"role": "user", "content": ""}], {}, 1, 0, None, None, 0),
     ("067af381f816d50ff45bea4b7e42d0c2", 455694409), "9d474282b815c9dad5b7dc9c918c619d"),
]


def test_cache_version_is_unchanged():
    assert CACHE_VERSION == 1


@pytest.mark.parametrize(("args", "key", "relaxed"), PINNED)
def test_call_keys_and_relaxed_keys_are_pinned(args, key, relaxed):
    assert call_key(*args) == key
    assert relaxed_key(*args) == relaxed


def test_row_ids_digests_and_sample_seeds_are_pinned():
    assert row_id("fp123", ["a", "b"], 3) == "d364f685cbe4cda072083c14"
    assert row_id("fp", (), 0) == "7ede0ed96a8dc50966aebb7e"
    assert digest({"question": "x", "n": 1.5, "t": (1, 2)}) == "755c67ff22e964734830a10967e5d14f"
    assert digest([1, "é"], 8) == "a7bfa0bf"
    assert sample_seed(7, 3) == 1994855689


# ------------------------------------------------------------ reference implementation
def _ref_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _ref_digest(obj, n=32):
    h = hashlib.sha256(f"v{CACHE_VERSION}:".encode())
    h.update(_ref_json(obj).encode("utf-8"))
    return h.hexdigest()[:n]


def _ref_call_key(engine, model_id, messages, sampling, sample_index, seed, json_schema=None, revision=None,
                  logprobs=None):
    if seed is not None:
        seed = sample_seed(seed, sample_index)
    body = {"engine": engine, "model": model_id, "revision": revision, "messages": list(messages),
            "sampling": sampling, "sample_index": sample_index, "schema": json_schema, "logprobs": logprobs}
    if seed is None:
        seed = int(_ref_digest(body, 8), 16) & 0x7FFFFFFF
    body["seed"] = seed
    return _ref_digest(body), seed


def _ref_relaxed(engine, model_id, messages, sampling, sample_index, seed, json_schema=None, revision=None,
                 logprobs=None):
    return _ref_digest({"relaxed": "max_tokens", "engine": engine, "model": model_id, "revision": revision,
                        "messages": list(messages), "sampling": {k: v for k, v in sampling.items() if k != "max_tokens"},
                        "sample_index": sample_index, "schema": json_schema, "logprobs": logprobs, "seed": seed})


def _rand_text(rng):
    alphabet = "abc xyz 0123456789 \n\t\"\\'{}[]:,é✓😀\u2028"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))


def test_keys_match_the_reference_on_random_inputs():
    rng = random.Random(9)
    for _ in range(400):
        msgs = [{"role": rng.choice(["system", "user", "assistant"]), "content": _rand_text(rng)}
                for _ in range(rng.randint(1, 3))]
        samp = {"temperature": rng.choice([0, 0.7, 1.0]), "top_p": 1.0, "max_tokens": rng.randint(1, 4096),
                "stop": rng.choice([None, ["\n"], ("###", "END")]), "top_k": rng.choice([None, 40])}
        args = (rng.choice(["fake", "openai", "vllm"]), _rand_text(rng), rng.choice([msgs, tuple(msgs)]), samp,
                rng.randint(0, 5), rng.choice([None, 0, 7, 2**40]), rng.choice([None, SCHEMA]),
                rng.choice([None, "rev"]), rng.choice([None, 0, 5]))
        assert call_key(*args) == _ref_call_key(*args)
        assert relaxed_key(*args) == _ref_relaxed(*args)
        obj = {"a": _rand_text(rng), "b": [rng.random(), None, True], "c": (1, "x")}
        assert canonical_json(obj) == _ref_json(obj)
        n = rng.randint(1, 64)
        assert digest(obj, n) == _ref_digest(obj, n)
        fp, parents = _rand_text(rng), [_rand_text(rng) for _ in range(rng.randint(0, 3))]
        assert row_id(fp, parents, n) == _ref_digest({"step": fp, "parents": parents, "sample": n}, 24)


def test_sampling_key_dicts_and_a_key_built_from_them_are_pinned():
    from synthlang.engines.base import SamplingParams

    sp = SamplingParams(temperature=0.7, max_tokens=256, stop=("\n\n",), top_k=40)
    assert sp.key_dict() == {"temperature": 0.7, "top_p": 1.0, "top_k": 40, "max_tokens": 256, "stop": ["\n\n"]}
    assert list(sp.key_dict()) == ["temperature", "top_p", "top_k", "max_tokens", "stop"]
    assert SamplingParams().key_dict() == {"temperature": 0.7, "top_p": 1.0, "max_tokens": 256}
    assert call_key("embedded", "smollm2", [{"role": "user", "content": "Rephrase: 2+2?"}], sp.key_dict(), 0, None) \
        == ("462295e5101613f4f6a558e0d8a8a99b", 1561462612)


def test_fast_key_paths_equal_the_general_encoding():
    """row_id's written-out JSON and the keys' shared messages encoding give exactly the general path's digests,
    on random text with quotes, backslashes, control and non-ASCII characters."""
    import random
    import string

    from synthlang.plan import keys as K
    from synthlang.plan.reuse import relaxed_key

    rnd = random.Random(1)

    def text() -> str:
        return "".join(rnd.choice(string.printable + 'éü中\x00"\\') for _ in range(rnd.randint(0, 40)))

    for _ in range(500):
        msgs = [{"role": "user", "content": text()}, {"role": "system", "content": text()}][:rnd.randint(1, 2)]
        sampling = {"temperature": rnd.choice([0, 0.5, 1.0]), "max_tokens": rnd.randint(1, 100), "top_p": 0.9}
        args = (rnd.choice(["fake", "openai"]), text(), msgs, sampling, rnd.randint(0, 3), rnd.choice([None, 7]),
                rnd.choice([None, {"type": "object"}]), rnd.choice([None, "r"]), rnd.choice([None, 2]))
        r = rnd.choice([0, 1, 2])
        mtext = K.messages_json(msgs)
        assert K.call_key(*args, round_=r) == K.call_key(*args, round_=r, messages_text=mtext)
        assert relaxed_key(*args, round_=r) == relaxed_key(*args, round_=r, messages_text=mtext)
        fp, parents, k = K.digest(text()), [K.digest(text(), 24) for _ in range(rnd.randint(0, 3))], rnd.randint(0, 5)
        assert K.row_id(fp, parents, k) == K.digest({"step": fp, "parents": parents, "sample": k}, 24)
    # not hex: the general path
    assert K.row_id("a b", ['x"y'], 0) == K.digest({"step": "a b", "parents": ['x"y'], "sample": 0}, 24)
