"""Adaptive concurrency for HTTP engines: AIMD on 429 plus hill-climbing on measured tokens/s.

Two controls, combined as ``limit = min(cap, climb, ceiling)``:

* ``ceiling`` — additive-increase / multiplicative-decrease (TCP Reno, Jacobson 1988): halved on
  every 429, grown by one after each window of successes without one.
* ``climb`` — a discrete hill-climb over levels 1, 2, 4, ... ``cap`` on completion tokens per second,
  measured over windows of completed calls. It starts at ``cap`` and moves one level at a time; a
  move up that does not raise throughput by ``gain``, or a move down that loses more than
  ``tolerance``, is undone, and the controller holds that level for ``hold`` windows before it
  probes again (alternating direction). This is what finds concurrency 1 on a server that runs one request at a
  time (``llama_cpp.server``), where more requests in flight only add contention, and a large
  level on a server that batches (vLLM).

The controller is plain state (no asyncio) so it is unit-testable with synthetic measurements.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class AdaptiveLimit:
    """Concurrency limit driven by 429s and by throughput windows.

    Args:
        cap: the user's ``concurrency``; the limit never exceeds it.
        start: the first level (default ``cap``: start optimistic, probe downward first, so a
            batching server loses little while a one-at-a-time server is found in a few windows).
        adaptive: when False the limit stays at ``cap`` except for 429 cuts.
        gain: relative tokens/s improvement a move up must bring to be kept (0.08 = 8 %).
        tolerance: relative tokens/s loss a move down may cost and still be kept (0.03 = 3 %).
        hold: windows to stay at the chosen level before probing again.
        min_window: completed calls per measurement window (at least the level itself).

    Attributes:
        history: ``(time_s, level, tokens_per_s)`` for each finished window, for reports and tests.
    """

    cap: int
    start: int | None = None
    adaptive: bool = True
    gain: float = 0.08
    tolerance: float = 0.03
    hold: int = 4
    min_window: int = 4
    history: list[tuple[float, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cap = max(1, int(self.cap))
        self.climb = self.cap if not self.adaptive else max(1, min(self.cap, self.start or self.cap))
        self.ceiling = self.cap
        self._prev: tuple[int, float] | None = None   # (level, tokens/s) of the window before
        self._direction = -1 if self.climb > 1 else 1
        self._probe = self._direction
        self._holding = 0
        self._reset_window()

    # ----------------------------------------------------------------- public
    @property
    def limit(self) -> int:
        """The number of requests allowed in flight now."""
        return max(1, min(self.cap, self.climb, self.ceiling))

    def begin(self, now: float | None = None) -> None:
        """Start a fresh measurement window (call when a batch starts after an idle spell)."""
        self._reset_window(now)

    def on_rate_limited(self) -> None:
        """A 429: halve the ceiling (multiplicative decrease) and restart the window."""
        self.ceiling = max(1, self.limit // 2)
        self._reset_window()

    def on_success(self, completion_tokens: int, now: float | None = None) -> None:
        """One call finished; ``completion_tokens`` counts toward the current window."""
        now = time.perf_counter() if now is None else now
        self._w_calls += 1
        self._w_tokens += max(0, completion_tokens)
        if self._w_calls < max(self.min_window, self.limit):
            return
        elapsed = max(1e-6, now - self._w_start)
        rate = self._w_tokens / elapsed
        level = self.limit
        self.history.append((now, level, rate))
        if self.ceiling < self.cap:   # additive increase after a clean window
            self.ceiling += 1
        if self.adaptive:
            self._climb(level, rate)
        self._reset_window(now)

    # ---------------------------------------------------------------- private
    def _reset_window(self, now: float | None = None) -> None:
        self._w_start = time.perf_counter() if now is None else now
        self._w_calls = 0
        self._w_tokens = 0

    def _levels(self) -> list[int]:
        out, v = [], 1
        while v < self.cap:
            out.append(v)
            v *= 2
        out.append(self.cap)
        return out

    def _neighbour(self, level: int, direction: int) -> int:
        levels = self._levels()
        i = min(range(len(levels)), key=lambda j: abs(levels[j] - level))
        return levels[max(0, min(len(levels) - 1, i + direction))]

    def _climb(self, level: int, rate: float) -> None:
        if self._holding > 0:
            self._holding -= 1
            if self._holding == 0:   # probe again, alternating direction
                self._probe = -self._probe
                self._prev = (level, rate)
                self._direction = self._probe
                self.climb = self._step(level)
            return
        if self._prev is None or self._prev[0] == level:
            self._prev = (level, rate)
            self.climb = self._step(level)
            return
        prev_level, prev_rate = self._prev
        if level > prev_level:   # more in flight must pay for itself
            ok = rate > prev_rate * (1 + self.gain)
        else:                    # fewer in flight is kept unless throughput clearly drops
            ok = rate >= prev_rate * (1 - self.tolerance)
        if ok:
            self._prev = (level, rate)
            nxt = self._neighbour(level, self._direction)
            if nxt == level:
                self._holding = self.hold
            self.climb = nxt
        else:                    # undo the move and hold at the better level
            self.climb = prev_level
            self._holding = self.hold

    def _step(self, level: int) -> int:
        """The next level in the current direction, turning round at either end."""
        nxt = self._neighbour(level, self._direction)
        if nxt == level:
            self._direction = -self._direction
            nxt = self._neighbour(level, self._direction)
        if nxt == level:
            self._holding = self.hold
        return nxt
