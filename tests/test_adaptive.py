"""The adaptive concurrency controller on synthetic throughput curves (pure state, no I/O)."""

from __future__ import annotations

from synthlang.engines.adaptive import AdaptiveLimit


def simulate(curve, cap: int, calls: int = 400, tokens: int = 10) -> list[int]:
    """Feed the controller completions whose aggregate rate at level L is curve(L) tokens/s."""
    a = AdaptiveLimit(cap=cap)
    a.begin(0.0)
    t, levels = 0.0, []
    for _ in range(calls):
        levels.append(a.limit)
        t += tokens / curve(a.limit)
        a.on_success(tokens, now=t)
    return levels


def test_one_at_a_time_server_settles_at_one():
    # llama_cpp.server: more in flight only adds contention
    levels = simulate(lambda n: 100 / (1 + 0.3 * (n - 1) ** 0.5), cap=4)
    tail = levels[100:]
    assert tail.count(1) / len(tail) > 0.75
    assert max(levels) <= 4


def test_batching_server_stays_high():
    # vLLM: throughput rises with the batch up to 12
    levels = simulate(lambda n: 50 * min(n, 12) ** 0.8, cap=16)
    assert levels[:4] == [16] * 4       # starts at the user's cap
    assert sum(1 for v in levels[50:] if v == 16) / len(levels[50:]) > 0.75


def test_429_halves_then_grows_back():
    a = AdaptiveLimit(cap=8, adaptive=False)
    assert a.limit == 8
    a.on_rate_limited()
    assert a.limit == 4
    a.on_rate_limited()
    assert a.limit == 2
    t = 0.0
    for _ in range(40):
        t += 0.1
        a.on_success(10, now=t)
    assert a.limit == 8


def test_limit_never_exceeds_cap_and_never_below_one():
    a = AdaptiveLimit(cap=1)
    for _ in range(5):
        a.on_rate_limited()
    assert a.limit == 1
    levels = simulate(lambda n: 10.0 * n, cap=3)
    assert set(levels) <= {1, 2, 3}
