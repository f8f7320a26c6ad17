"""Numeric and symbolic answer equivalence through the ``math-verify`` package.

``math-verify`` enforces its timeouts with ``signal.alarm``, which only works in
the main thread. We call it with its timeouts disabled (``parsing_timeout=None``,
``timeout_seconds=None``) and enforce our own: each comparison runs in a daemon
thread that we wait on for at most ``timeout_s`` seconds; a comparison that
takes longer counts as "not equal".
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

DEFAULT_TIMEOUT_S = 5.0


def _compare(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    g = parse(gold, parsing_timeout=None)  # type: ignore[arg-type]
    p = parse(pred, parsing_timeout=None)  # type: ignore[arg-type]
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))


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
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _warm()
    box: list[bool] = []

    def work() -> None:
        try:
            box.append(_compare(str(gold), str(pred)))
        except Exception:  # noqa: BLE001 - math-verify/sympy failures mean "not shown equal"
            box.append(False)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout_s)
    return box[0] if box else None
