"""Flipped-label / semantically-unrelated-label in-context learning metrics.

Wei et al., "Larger language models do in-context learning differently", arXiv 2303.03846 (flipped labels, SUL-ICL);
Wei et al., "Symbol tuning improves in-context learning in language models", arXiv 2305.08298 (accuracy against the
flipped targets). A query is answered by ranking the log-likelihoods of the candidate label words.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Iterable, Sequence


def rank_prediction(scores: Sequence[float]) -> int:
    """Index of the highest log-likelihood; a tie goes to the lowest index (deterministic, like ``max``)."""
    if not scores:
        raise ValueError("no candidate scores")
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def accuracy(predictions: Sequence[int], targets: Sequence[int]) -> float:
    """Share of predictions equal to their targets."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    if not predictions:
        raise ValueError("accuracy of zero items is undefined")
    return sum(int(p == t) for p, t in zip(predictions, targets)) / len(predictions)


def accuracy_curve(rows: Iterable[tuple[Hashable, int, int]]) -> dict[Hashable, float]:
    """Accuracy per group from ``(group, prediction, target)`` rows, groups sorted (e.g. flip % -> accuracy)."""
    hits: dict[Hashable, list[int]] = defaultdict(list)
    for group, pred, target in rows:
        hits[group].append(int(pred == target))
    return {g: sum(v) / len(v) for g, v in sorted(hits.items(), key=lambda kv: kv[0])}
