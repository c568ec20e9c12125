"""Fleiss' agreement among raters (Fleiss 1971, "Measuring nominal scale agreement among many raters", Psychol. Bull.
76(5)), in one place for the F²C trainer (formats agreeing on a pseudo-label), the prompt-consistency eval (formats
as raters) and the judge ensemble (judges as raters).

For one item rated by n raters, with n_j raters choosing category j, the observed agreement is
P_i = (Σ_j n_j² − n) / (n(n − 1)); P̄ is its mean over items, and kappa = (P̄ − P_e) / (1 − P_e) with
P_e = Σ_j p_j², p_j the share of all ratings in category j. Pure Python, no alignkit imports.
"""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence


def _p_i(counts: Sequence[int], n: int) -> float:
    """Observed agreement of one item from its per-category counts (they sum to ``n`` ≥ 2)."""
    return (sum(c * c for c in counts) - n) / (n * (n - 1))


def fleiss_p_i(ratings: Sequence[Hashable]) -> float:
    """One item's P_i from its raters' labels (e.g. one example's prediction per format); 1.0 for fewer than two."""
    n = len(ratings)
    return 1.0 if n < 2 else _p_i(list(Counter(ratings).values()), n)


def fleiss_observed_agreement(preds: Sequence[Sequence[Hashable]]) -> float:
    """P̄ ×100 over items: ``preds[i]`` are item i's K ratings (an ``[n, K]`` array or nested lists). Needs n ≥ 1
    items and K ≥ 2 raters, the same K for every item."""
    rows = [list(r) for r in (preds.tolist() if hasattr(preds, "tolist") else preds)]
    if not rows or any(not isinstance(r, list) for r in rows) or len({len(r) for r in rows}) != 1:
        shape = getattr(preds, "shape", None) or (len(rows),)
        raise ValueError(f"preds must be a non-empty [n, K] array, got shape {tuple(shape)}")
    if len(rows[0]) < 2:
        raise ValueError("agreement needs at least 2 formats")
    return 100.0 * sum(fleiss_p_i(r) for r in rows) / len(rows)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa. ``counts[i][j]`` = raters who put item i in category j; every row must sum to the same number
    of raters n ≥ 2. Returns None when chance agreement is 1 (every rating in one category: kappa is undefined)."""
    if not counts:
        return None
    n = sum(counts[0])
    if n < 2 or any(sum(row) != n for row in counts):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    big_n, k = len(counts), len(counts[0])
    p_bar = sum(_p_i(row, n) for row in counts) / big_n
    p_j = [sum(row[j] for row in counts) / (big_n * n) for j in range(k)]
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)
