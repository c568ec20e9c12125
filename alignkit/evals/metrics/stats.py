"""Interval estimates for per-item metrics: the percentile bootstrap of a mean (Efron & Tibshirani, 1993, ch. 13)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
                 ) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its (1 - alpha) percentile-bootstrap interval.

    Resamples items with replacement ``n_boot`` times with a fixed seed, so reruns give the same interval.
    An empty input gives NaNs; a single item gives a zero-width interval.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(low), float(high)


def mean_metric(values: Sequence[float], *, higher_is_better: bool = True, **kwargs: object):  # -> Metric
    """A ``Metric`` holding the mean of ``values`` with its bootstrap interval and item count."""
    from alignkit.evals.tasks.base import Metric

    mean, low, high = bootstrap_ci(values, **kwargs)  # type: ignore[arg-type]
    return Metric(value=mean, ci_low=low, ci_high=high, n=len(values), higher_is_better=higher_is_better)
