"""Answer extraction and answer comparison by answer type, shared by ``answer``, ``verify`` and ``probe``.

One module decides both what a reply's final answer is (:func:`extract_answer`)
and whether two answers are the same (:func:`compare`), so ``verify(mode="gold")``
and ``probe`` can never disagree on a verdict.

Answer types (:data:`ANSWER_TYPES`):

* ``number`` — numeric or symbolic equivalence through ``math-verify``
  (``1,000`` = ``1000``, ``0.5`` = ``1/2``, ``$18`` = ``18``);
* ``choice`` — a multiple-choice letter A–J (``B``, ``(B)``, ``B) Mercury`` are all ``B``);
* ``yesno`` — ``yes``/``no``; a bool gold ``True``/``False`` equals ``yes``/``no``,
  and ``true``/``false`` replies count as ``yes``/``no``;
* ``label`` — a class label, compared case-, space- and punctuation-insensitively
  (``card_arrival`` = ``Card arrival``);
* ``text`` — normalised text as in SQuAD's evaluation script (lower case, no
  punctuation, no articles ``a/an/the``, single spaces).

Extraction order (every mode, documented in docs/operators.md): first an
explicit final answer — the last ``\\boxed{...}``, ``#### X``, "The (final)
answer is X" or "Answer: X" in the reply — read in the mode's own way; only
when there is none (or it holds nothing of the mode's kind) the mode's
fallback: ``number`` the last number; ``boxed`` the last box wins over the
other markers, then an explicit answer's text, else none; ``choice`` the last
parenthesised letter ``(C)``/``C)`` or a reply that is a single letter;
``yesno`` the reply's first word, then the last yes/no word (skipping idioms
such as "no doubt"); ``text`` the last non-empty line.

Follows the answer parsers of the official RevThink code (``get_yes_no``,
``get_alphabet_choice``, ``parse_math_boxed``), which take the last match; we
prefer an explicit final answer first, so a trailing remark ("There is no doubt
about it.") cannot flip the verdict.
"""

from __future__ import annotations

import re
import string
from typing import Any

from synthlang.expr import final_number, parse_number
from synthlang.ops.base import EXTRACT_MODES

ANSWER_TYPES = ("number", "choice", "yesno", "label", "text")
# the answer type each extract mode produces (boxed holds a math expression)
EXTRACT_TYPE = {"number": "number", "boxed": "number", "choice": "choice", "yesno": "yesno", "text": "text"}

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
# explicit final-answer markers; group 1 is the rest of the line after the marker
_MARKER = re.compile(
    r"(?:####|\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|will\s+be)\s*:?|\b(?:final\s+)?answer\s*:)"
    r"[ \t]*([^\n]*)", re.IGNORECASE)
_YES = {"yes", "true", "y"}
_NO = {"no", "false", "n"}
_YESNO_WORD = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
# "no" inside an idiom is not an answer: "There is no doubt", "no matter", ...
_NO_IDIOM = re.compile(r"\bno\s+(?:doubt|question|matter|longer|one|other|need|more|less|way\s+around)\b", re.IGNORECASE)
_LETTERS = "ABCDEFGHIJ"


def explicit_answers(text: str) -> list[str]:
    """Every explicit final answer in a reply, in order of position: ``\\boxed{}``, ``####``, "the answer is", "Answer:"."""
    hits: list[tuple[int, str]] = [(m.start(), m.group(1).strip()) for m in _BOXED.finditer(text)]
    hits += [(m.start(), m.group(1).strip()) for m in _MARKER.finditer(text)]
    return [s for _, s in sorted(hits) if s]


def _first_sentence(s: str) -> str:
    s = s.strip().strip("*").strip()
    m = re.match(r"(.+?)(?:(?<!\d)\.(?!\d)|[!?;\n]|$)", s)
    return (m.group(1) if m else s).strip()


def _number_in(s: str) -> Any:
    return parse_number(s)


def _choice_in(s: str) -> str | None:
    s = s.strip().strip("*").strip()
    m = re.match(r"^(?:option\s+|choice\s+)?(\()?([A-J])(\))?(?:[\s.,:)]|$)", s, flags=re.IGNORECASE)
    if not m or not (m.group(2).isupper() or len(s) <= 3):
        return None
    # "A dog ...", "I think ...": an article or pronoun, not a choice
    if not (m.group(1) or m.group(3)) and re.match(r"^[A-J]\s+[a-z]", s):
        return None
    return m.group(2).upper()


def _choice_explicit(s: str) -> str | None:
    """A letter after an explicit marker: leading (``B.``, ``(B) Mercury``), else the first ``(C)`` in it."""
    got = _choice_in(s)
    if got is not None:
        return got
    m = re.search(r"\(([A-J])\)|\b([A-J])\)", s)
    return (m.group(1) or m.group(2)).upper() if m else None


def _yesno_in(s: str) -> str | None:
    w = re.match(r"^\W*([A-Za-z]+)", s)
    if not w:
        return None
    word = w.group(1).lower()
    if word in ("yes", "true"):
        return "yes"
    if word in ("no", "false"):
        return "no"
    return None


def _text_in(s: str) -> str | None:
    s = s.strip().strip("*").strip()
    s = re.sub(r"[.\s]+$", "", s)
    return s or None


def extract_answer(text: str, mode: str) -> Any:
    """The final answer of a reply, by extract mode; see the module docstring for the order.

    Args:
        text: the model's reply (reasoning and answer).
        mode: one of :data:`EXTRACT_MODES`.

    Returns:
        ``number``: an int/float; ``boxed``: the box's text; ``choice``: a
        letter; ``yesno``: ``"yes"``/``"no"``; ``text``: a string. ``None``
        when nothing of the mode's kind can be found.
    """
    text = text or ""
    explicit = explicit_answers(text)
    if mode == "boxed":
        boxes = [m.group(1).strip() for m in _BOXED.finditer(text)]
        if boxes:
            return boxes[-1]
        return explicit[-1].rstrip(". ") if explicit else None
    if mode not in EXTRACT_TYPE:
        raise ValueError(f"unknown extract mode {mode!r}; expected one of {', '.join(EXTRACT_MODES)}")
    reader = {"number": _number_in, "choice": _choice_explicit, "yesno": _yesno_in,
              "text": lambda s: _text_in(_first_sentence(s))}[mode]
    for cand in reversed(explicit):
        got = reader(cand)
        if got is not None:
            return got
    if mode == "number":
        return final_number(text)
    if mode == "choice":
        m = re.findall(r"\(([A-J])\)|\b([A-J])\)", text)
        if m:
            last = m[-1]
            return (last[0] or last[1]).upper()
        return _choice_in(text) if len(text.strip()) <= 4 else None
    if mode == "yesno":
        lead = _yesno_in(text)
        if lead is not None:
            return lead
        cleaned = _NO_IDIOM.sub(" ", text)
        words = _YESNO_WORD.findall(cleaned)
        if not words:
            return None
        return "yes" if words[-1].lower() in ("yes", "true") else "no"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


# ------------------------------------------------------------------ comparison
def as_yesno(x: Any) -> str | None:
    """``"yes"``/``"no"`` for a bool, a yes/no/true/false word, or a reply stating one; else ``None``."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return None
    if isinstance(x, (int, float)):
        return "yes" if x == 1 else "no" if x == 0 else None
    s = str(x).strip().lower().strip(string.punctuation + " ")
    if s in _YES:
        return "yes"
    if s in _NO:
        return "no"
    return extract_answer(str(x), "yesno") if len(s.split()) > 1 else None


def as_choice(x: Any) -> str | None:
    """The letter of a choice written as ``B``, ``(B)``, ``B) Mercury`` or a reply that states one."""
    if x is None or isinstance(x, bool):
        return None
    s = str(x).strip()
    got = _choice_in(s)
    if got is not None:
        return got
    return extract_answer(s, "choice")


def norm_label(x: Any) -> str:
    """A label with case, spaces and punctuation folded: ``Card arrival`` -> ``card_arrival``."""
    return re.sub(r"[^0-9a-z]+", "_", str(x).lower()).strip("_")


def norm_text(x: Any) -> str:
    """SQuAD-style normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    s = str(x).lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def infer_type(gold: Any) -> str:
    """The answer type a gold value implies: bool -> yesno, number -> number, else by how the text looks.

    A string gold that is a number is ``number``; a single letter A–J (or
    ``(B)``) is ``choice``; yes/no/true/false is ``yesno``; one token with
    ``_`` or ``-`` (``card_arrival``) is ``label``; anything else ``text``.
    """
    if isinstance(gold, bool):
        return "yesno"
    if isinstance(gold, (int, float)):
        return "number"
    s = str(gold).strip()
    if re.fullmatch(r"\(?[A-J]\)?", s):
        return "choice"
    if s.lower().strip(".") in ("yes", "no", "true", "false"):
        return "yesno"
    if re.fullmatch(r"[$\-]?\s*[\d,]*\.?\d+(?:\s*/\s*\d+)?\s*%?", s) or "####" in s or "\\boxed" in s:
        return "number"
    if re.fullmatch(r"[A-Za-z0-9]+(?:[_\-][A-Za-z0-9]+)+", s):
        return "label"
    return "text"


def resolve_type(answer_type: str | None, extract: str | None, gold: Any) -> str:
    """The answer type to compare by: an explicit ``answer_type``, a bool gold, the extract mode, or the gold's look.

    Args:
        answer_type: ``auto`` / ``None``, or one of :data:`ANSWER_TYPES`.
        extract: the extract mode that produced the prediction, if known.
        gold: the gold value (its Python type matters: a bool means yes/no).
    """
    if answer_type and answer_type != "auto":
        return answer_type
    if isinstance(gold, bool):
        return "yesno"
    if extract in EXTRACT_TYPE:
        return EXTRACT_TYPE[extract]
    return infer_type(gold)


def compare(gold: Any, pred: Any, answer_type: str, timeout_s: float = 5.0) -> tuple[bool | None, str]:
    """Whether ``pred`` states the same answer as ``gold`` under ``answer_type``.

    Args:
        gold: the gold answer (bool, number or text).
        pred: the predicted answer, already extracted or a reply stating it.
        answer_type: one of :data:`ANSWER_TYPES`.
        timeout_s: limit for one ``math-verify`` comparison (``number``), seconds.

    Returns:
        ``(verdict, reason)``; ``verdict`` is ``None`` when a numeric
        comparison timed out (callers count it as a mismatch).

    Raises:
        ValueError: an unknown answer type.
    """
    if gold is None or (isinstance(gold, str) and not gold.strip()):
        return False, "gold is empty"
    if pred is None or (isinstance(pred, str) and not pred.strip()):
        return False, "answer is empty"
    if answer_type == "number":
        from synthlang.ops.mathcheck import equivalent

        if isinstance(gold, bool) or isinstance(pred, bool):
            return False, f"{pred!s:.60} is not a number comparable with gold {gold}"
        eq = equivalent(gold, pred, timeout_s)
        if eq is None:
            return None, f"comparison timed out after {timeout_s} s"
        return eq, f"{pred!s:.60} {'equals' if eq else 'differs from'} gold {gold} (number)"
    if answer_type == "choice":
        g, p = as_choice(gold), as_choice(pred)
    elif answer_type == "yesno":
        g, p = as_yesno(gold), as_yesno(pred)
    elif answer_type == "label":
        g, p = norm_label(gold), norm_label(pred)
    elif answer_type == "text":
        g, p = norm_text(gold), norm_text(pred)
    else:
        raise ValueError(f"unknown answer type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")
    if g is None or g == "":
        return False, f"gold {gold!s:.60} is not a valid {answer_type} answer"
    if p is None or p == "":
        return False, f"{pred!s:.60} states no {answer_type} answer"
    ok = g == p
    return ok, f"{p!s:.60} {'equals' if ok else 'differs from'} gold {g} ({answer_type})"
