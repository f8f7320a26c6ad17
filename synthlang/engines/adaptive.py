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

Two rules keep the climb honest when calls take a while (issue 9: at concurrency 64 against a 50 ms server the
climb used to walk down to 2 and cost up to 40 % of the throughput):

* **Epochs.** Every change of the limit starts a new epoch; the engine tags each call with the epoch it was sent
  in (:meth:`AdaptiveLimit.on_sent`) and completions of calls sent in an earlier epoch are not measured. Without
  this, the window after a move down is filled by the calls still in flight from the higher level, which finish
  at the higher level's rate, so every move down looked free. After a change (and at :meth:`begin`) the
  window's clock starts at the first measured completion, which itself is not counted, so the time the
  pipeline takes to fill is not charged to the new level either.
* **Anchor.** A move down is compared with the best window of the descent (the level it started from), not
  with the step just before, so several small losses within ``tolerance`` cannot add up to a large one.
* **Backoff.** Each probe that is undone doubles the next hold (``hold``, ``2 hold``, ... up to ``max_hold``
  windows); a kept move or a 429 resets it. A move down that lost more than ``steep`` (25 %) of the throughput
  means the server is far from saturated (a provider answering in fixed time): it is held ``max_hold`` windows
  at once. A server whose best level is the cap is then probed once or twice per run instead of every ``hold``
  windows (each probe of half the level costs about one and a half latencies at half throughput).

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
        hold: windows to stay at the chosen level before probing again (doubled after each undone probe).
        max_hold: the longest hold, in windows.
        steep: a move down that loses more than this share of the throughput (the server is far from
            saturated: fewer in flight is simply slower) is undone and held for ``max_hold`` at once.
        min_window: completed calls per measurement window (at least the level itself).

    Attributes:
        history: ``(time_s, level, tokens_per_s)`` for each finished window, for reports and tests.
        epoch: bumped at every change of :attr:`limit`; see :meth:`on_sent`.
    """

    cap: int
    start: int | None = None
    adaptive: bool = True
    gain: float = 0.08
    tolerance: float = 0.03
    hold: int = 4
    min_window: int = 4
    max_hold: int = 64
    steep: float = 0.25
    history: list[tuple[float, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cap = max(1, int(self.cap))
        self.climb = self.cap if not self.adaptive else max(1, min(self.cap, self.start or self.cap))
        self.ceiling = self.cap
        self._prev: tuple[int, float] | None = None   # (level, tokens/s) of the window before
        self._anchor: tuple[int, float] | None = None   # best (level, tokens/s) of the current descent
        self.epoch = 0
        self._direction = -1 if self.climb > 1 else 1
        self._probe = self._direction
        self._holding = 0
        self._hold_next = self.hold
        self._reset_window()

    # ----------------------------------------------------------------- public
    @property
    def limit(self) -> int:
        """The number of requests allowed in flight now."""
        return max(1, min(self.cap, self.climb, self.ceiling))

    def begin(self, now: float | None = None) -> None:
        """Start a fresh measurement window (call when a batch starts after an idle spell)."""
        self._reset_window(now, fresh=True)

    def on_rate_limited(self) -> None:
        """A 429: halve the ceiling (multiplicative decrease) and restart the window."""
        before = self.limit
        self.ceiling = max(1, self.limit // 2)
        self._hold_next = self.hold
        self._reset_window(fresh=self.limit != before)
        if self.limit != before:
            self.epoch += 1

    def on_sent(self) -> int:
        """A call is being sent: returns the epoch to hand back to :meth:`on_success` when it completes."""
        return self.epoch

    def on_success(self, completion_tokens: int, now: float | None = None, epoch: int | None = None) -> None:
        """One call finished; ``completion_tokens`` counts toward the current window.

        Args:
            completion_tokens: the call's completion tokens.
            now: the time, in seconds (``time.perf_counter`` when omitted).
            epoch: what :meth:`on_sent` returned for this call; a call sent before the last change of the
                limit is not measured. ``None`` counts it (callers that do not tag their calls).
        """
        if epoch is not None and epoch != self.epoch:
            return
        now = time.perf_counter() if now is None else now
        if self._w_fresh:   # the first completion after a change starts the clock
            self._w_fresh = False
            self._w_start = now
            return
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
        self._reset_window(now, fresh=self.limit != level)
        if self.limit != level:
            self.epoch += 1

    # ---------------------------------------------------------------- private
    def _reset_window(self, now: float | None = None, fresh: bool = False) -> None:
        self._w_start = time.perf_counter() if now is None else now
        self._w_fresh = fresh
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
                self._anchor = (level, rate)
                self._direction = self._probe
                self.climb = self._step(level)
            return
        if self._prev is None or self._prev[0] == level:
            self._prev = (level, rate)
            self._anchor = (level, rate)
            self.climb = self._step(level)
            return
        prev_level, prev_rate = self._prev
        if level > prev_level:   # more in flight must pay for itself
            ok = rate > prev_rate * (1 + self.gain)
            back = prev_level
        else:                    # fewer in flight is kept unless throughput clearly drops below the descent's best
            anchor = self._anchor if self._anchor is not None else self._prev
            ok = rate >= anchor[1] * (1 - self.tolerance)
            back = anchor[0] if not ok else prev_level
        if ok:
            self._prev = (level, rate)
            if self._anchor is None or rate > self._anchor[1] or level > prev_level:
                self._anchor = (level, rate)
            self._hold_next = self.hold
            nxt = self._neighbour(level, self._direction)
            if nxt == level:
                self._holding = self.hold
            self.climb = nxt
        else:                    # undo the move and hold at the better level, longer each time
            self.climb = back
            steep = level < prev_level and rate < (self._anchor or self._prev)[1] * (1 - self.steep)
            self._holding = self.max_hold if steep else self._hold_next
            self._hold_next = min(self.max_hold, self._hold_next * 2)

    def _step(self, level: int) -> int:
        """The next level in the current direction, turning round at either end."""
        nxt = self._neighbour(level, self._direction)
        if nxt == level:
            self._direction = -self._direction
            nxt = self._neighbour(level, self._direction)
        if nxt == level:
            self._holding = self.hold
        return nxt
