"""Run budgets: calls, tokens and USD, enforced before each call is sent.

A budget comes from the recipe (``budget calls=…, tokens=…, usd=…``) and the
``synth run`` flags ``--max-calls``, ``--max-tokens``, ``--max-usd`` (a flag
wins over the recipe). It counts what *this run* spends: calls answered from
the cache are free, so running again with a higher budget continues where the
last run stopped without paying twice.

A call is admitted only if everything already spent, plus what the calls in
flight have reserved, plus this call's own reservation stays within every
limit. A call reserves its ``max_tokens`` plus an estimate of its prompt
(characters / 3, an over-estimate for English BPE vocabularies) and the USD
those tokens would cost; when it finishes its reservation is replaced by its
real usage. So with calls in flight the budget is never exceeded by their
completions, and the only way to overshoot ``tokens=`` is a prompt that
tokenises to more than one token per three characters.

Prices come from the model declaration: ``price_input`` and ``price_output`` in USD
per million prompt / completion tokens (default 0, e.g. the embedded engine),
or a ``cost_usd`` an engine reports in a result's ``meta``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from synthlang.errors import BudgetExceeded


def prompt_estimate(messages: tuple[dict[str, str], ...] | list[dict[str, str]]) -> int:
    """An upper-bound guess of a prompt's length in tokens (characters / 3 + 8 per message)."""
    return sum(len(m.get("content") or "") // 3 + 8 for m in messages)


@dataclass
class Reservation:
    """What one in-flight call holds against the budget (tokens, USD)."""

    tokens: int
    usd: float


@dataclass
class Budget:
    """Limits for one run and what has been spent and reserved against them.

    Attributes:
        calls: maximum LLM calls sent by this run (``None`` = no limit).
        tokens: maximum prompt + completion tokens of this run's calls.
        usd: maximum cost in USD of this run's calls.
        spent_calls, spent_tokens, spent_usd: what finished calls used.
        reason: why the last :meth:`admit` refused, or ``None``.
    """

    calls: int | None = None
    tokens: int | None = None
    usd: float | None = None
    spent_calls: int = 0
    spent_tokens: int = 0
    spent_usd: float = 0.0
    _in_flight: dict[str, Reservation] = field(default_factory=dict)
    reason: str | None = None
    _held_tokens: int = field(default=0, repr=False)
    _held_usd: float = field(default=0.0, repr=False)
    # engines may pull requests (admit) on their own thread while the runner settles results
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_limits(cls, recipe: dict[str, Any], calls: int | None = None, tokens: int | None = None,
                    usd: float | None = None) -> Budget:
        """The budget of a run: CLI flags override the recipe's ``budget`` declaration."""
        return cls(calls=calls if calls is not None else recipe.get("calls"),
                   tokens=tokens if tokens is not None else recipe.get("tokens"),
                   usd=usd if usd is not None else recipe.get("usd"))

    @property
    def limited(self) -> bool:
        return self.calls is not None or self.tokens is not None or self.usd is not None

    def admit(self, key: str, max_tokens: int, prompt_tokens: int, price_in: float = 0.0, price_out: float = 0.0) -> bool:
        """Reserve room for one call, or refuse (and set :attr:`reason`).

        Args:
            key: the call's key (identifies the reservation).
            max_tokens: the call's completion limit, in tokens.
            prompt_tokens: an estimate of its prompt, in tokens (:func:`prompt_estimate`).
            price_in, price_out: USD per million prompt / completion tokens.
        """
        with self._lock:
            return self._admit(key, max_tokens + prompt_tokens, (prompt_tokens * price_in + max_tokens * price_out) / 1e6)

    def _admit(self, key: str, tok: int, usd: float) -> bool:
        # running totals of what the calls in flight hold: O(1) per admit, not a sum over them
        held_tok, held_usd = self._held_tokens, self._held_usd
        if self.calls is not None and self.spent_calls + len(self._in_flight) + 1 > self.calls:
            self.reason = f"calls budget of {self.calls} reached ({self.spent_calls} made)"
        elif self.tokens is not None and self.spent_tokens + held_tok + tok > self.tokens:
            self.reason = (f"tokens budget of {self.tokens} reached ({self.spent_tokens} used; the next call may need "
                           f"up to {tok})")
        elif self.usd is not None and self.spent_usd + held_usd + usd > self.usd:
            self.reason = f"USD budget of {self.usd:g} reached ({self.spent_usd:.4f} spent; the next call may cost {usd:.4f})"
        else:
            old = self._in_flight.get(key)
            if old is not None:   # the same key admitted twice holds one reservation
                self._held_tokens -= old.tokens
                self._held_usd -= old.usd
            self._in_flight[key] = Reservation(tok, usd)
            self._held_tokens += tok
            self._held_usd += usd
            return True
        return False

    def settle(self, key: str, prompt_tokens: int, completion_tokens: int, usd: float) -> None:
        """Replace a call's reservation by what it really used."""
        with self._lock:
            r = self._in_flight.pop(key, None)
            if r is not None:
                self._held_tokens -= r.tokens
                self._held_usd -= r.usd
            self.spent_calls += 1
            self.spent_tokens += prompt_tokens + completion_tokens
            self.spent_usd += usd

    def release_all(self) -> None:
        """Drop reservations of calls that will not finish (the run is stopping)."""
        with self._lock:
            self._in_flight.clear()
            self._held_tokens, self._held_usd = 0, 0.0

    def exceeded(self) -> BudgetExceeded:
        """The error that ends a run stopped by this budget."""
        return BudgetExceeded(f"{self.reason}. Everything finished so far is saved; "
                              "run again with a higher budget (--max-calls / --max-tokens / --max-usd, or the recipe's "
                              "'budget') to continue where this run stopped")


def call_cost(options: dict[str, Any], prompt_tokens: int, completion_tokens: int, meta: dict[str, Any] | None) -> float:
    """USD cost of one finished call: the engine's ``meta['cost_usd']`` or tokens × the model's prices."""
    if meta and isinstance(meta.get("cost_usd"), (int, float)):
        return float(meta["cost_usd"])
    return (prompt_tokens * float(options.get("price_input") or 0) + completion_tokens * float(options.get("price_output") or 0)) / 1e6
