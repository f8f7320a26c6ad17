"""Text similarity used by dedup, decontaminate and the Self-Instruct filters.

ROUGE-L is implemented here (no extra dependency) the way Google's
``rouge-score`` package computes it: lower-case, every non-alphanumeric
character becomes a space, whitespace tokens, no stemming; F-measure of the
longest common subsequence, ``F = 2PR / (P + R)`` with ``P = LCS/len(candidate)``
and ``R = LCS/len(reference)``. Self-Instruct (2022) drops an instruction when
its ROUGE-L against any instruction in the pool is 0.7 or more; LLM2LLM
(2024) uses 0.95.

MinHash near-duplicates use ``datasketch`` (imported only here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer: lower-case, non-alphanumerics to spaces, split."""
    return _NON_ALNUM.sub(" ", str(text).lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str | Sequence[str], reference: str | Sequence[str]) -> float:
    """ROUGE-L F-measure in [0, 1] between two texts (or token lists)."""
    a = tokens(candidate) if isinstance(candidate, str) else list(candidate)
    b = tokens(reference) if isinstance(reference, str) else list(reference)
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def max_rouge_l(candidate: str, pool: Iterable[Sequence[str]]) -> float:
    """Highest ROUGE-L of ``candidate`` against already-tokenized pool texts (0.0 for an empty pool)."""
    toks = tokens(candidate)
    best = 0.0
    for ref in pool:
        # an upper bound on F from lengths alone lets us skip most pairs cheaply
        if not ref or not toks:
            continue
        bound = 2 * min(len(toks), len(ref)) / (len(toks) + len(ref))
        if bound <= best:
            continue
        best = max(best, rouge_l(toks, ref))
    return best


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of a text (rouge tokenizer)."""
    t = tokens(text)
    return {tuple(t[i:i + n]) for i in range(len(t) - n + 1)}


class MinHashIndex:
    """Near-duplicate lookup with MinHash LSH (``datasketch``) over word 3-gram shingles.

    Args:
        threshold: estimated Jaccard similarity at or above which two texts are duplicates.
        num_perm: permutations per signature.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128) -> None:
        from datasketch import MinHash, MinHashLSH

        self._MinHash = MinHash
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.num_perm = num_perm
        self.n = 0

    def _sig(self, text: str) -> object:
        m = self._MinHash(num_perm=self.num_perm, seed=1)
        toks = tokens(text)
        shingles = {" ".join(toks[i:i + 3]) for i in range(max(1, len(toks) - 2))}
        for s in shingles:
            m.update(s.encode("utf-8"))
        return m

    def seen(self, text: str) -> bool:
        """Whether a near-duplicate of ``text`` was added before."""
        return bool(self.lsh.query(self._sig(text)))

    def add(self, text: str) -> None:
        self.lsh.insert(f"k{self.n}", self._sig(text))
        self.n += 1
