"""Numeric and symbolic answer equivalence through the ``math-verify`` package.

``math-verify`` enforces its timeouts with ``signal.alarm``, which only works in
the main thread. We call it with its timeouts disabled (``parsing_timeout=None``,
``timeout_seconds=None``) and enforce our own: each comparison runs in a daemon
thread that we wait on for at most ``timeout_s`` seconds; a comparison that
takes longer counts as "not equal".

Per-row cost (issue 9): a math-verify comparison costs milliseconds (sympy), so

* two Python ``int`` values (what ``final_number`` and ``extract="number"`` give on GSM8K-style data) are
  compared exactly, without math-verify: for integers math-verify's verdict is exact equality
  (``tests/test_answers.py`` checks the two agree on real GSM8K answers and their neighbours);
* every other verdict is memoised by the pair of strings compared (:data:`MEMO_SIZE` pairs, least recently
  used out first), and each string's ``parse`` by the string (8,192 strings), so a loop's next round, a step re-run in the
  same process, or ``n`` samples checked against one gold do not pay math-verify again for the same pair;
* a comparison that timed out is not memoised as a verdict: its thread keeps running, and the next request
  for the same pair waits on that thread (up to ``timeout_s``) instead of starting another one.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

DEFAULT_TIMEOUT_S = 5.0
MEMO_SIZE = 65_536
"""Most (gold, prediction) verdicts kept in memory."""
_EXACT_INT = 10**15   # math-verify compares with 15 significant digits; beyond that ints go through it

_memo: OrderedDict[tuple[str, str], bool] = OrderedDict()
_running: dict[tuple[str, str], tuple[threading.Thread, list[bool]]] = {}
_lock = threading.Lock()


@lru_cache(maxsize=8192)   # parsed sympy objects are larger than verdicts; n samples reuse one gold at once
def _parse(text: str) -> Any:
    from math_verify import parse

    return parse(text, parsing_timeout=None)  # type: ignore[arg-type]


def _compare(gold: str, pred: str) -> bool:
    from math_verify import verify

    g = _parse(gold)
    p = _parse(pred)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))


def _remember(pair: tuple[str, str], verdict: bool) -> None:
    with _lock:
        _memo[pair] = verdict
        _memo.move_to_end(pair)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
        _running.pop(pair, None)


@functools.cache
def _warm() -> None:
    """Import math-verify and run one comparison, once per process, outside any timer: the first comparison
    pays for importing sympy and the LaTeX grammar (seconds on a loaded machine), which must not count
    against one comparison's ``timeout_s`` (it made the first row of a run a "timed out" mismatch)."""
    try:
        _compare("1", "1")
    except Exception:  # noqa: BLE001 - a broken install shows up in the real comparison
        pass


def equivalent(gold: Any, pred: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
    """Whether ``pred`` states the same answer as ``gold`` (``1,000`` = ``1000``, ``0.5`` = ``1/2``, ``$18`` = ``18``).

    Args:
        gold: the gold answer (number or text).
        pred: the predicted answer: a number, or text whose final answer is extracted.
        timeout_s: our own limit for one comparison, in seconds.

    Returns:
        ``True``/``False``, or ``None`` when the comparison timed out.
    """
    if gold is None or pred is None:
        return False
    if type(gold) is int and type(pred) is int and abs(gold) < _EXACT_INT and abs(pred) < _EXACT_INT:
        return gold == pred
    pair = (str(gold), str(pred))
    _warm()   # papersb: import math-verify outside the first comparison's timer
    with _lock:
        verdict = _memo.get(pair)
        if verdict is not None:
            _memo.move_to_end(pair)
            return verdict
        running = _running.get(pair)
        if running is None:
            box: list[bool] = []

            def work() -> None:
                try:
                    ok = _compare(*pair)
                except Exception:  # noqa: BLE001 - math-verify/sympy failures mean "not shown equal"
                    ok = False
                box.append(ok)
                _remember(pair, ok)

            logging.getLogger("math_verify").setLevel(logging.ERROR)
            running = (threading.Thread(target=work, daemon=True), box)
            _running[pair] = running
            running[0].start()
    thread, result = running
    thread.join(timeout_s)
    return result[0] if result else None
