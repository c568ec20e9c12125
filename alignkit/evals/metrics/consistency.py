"""Prompt-consistency metrics over formats (F²C, Hejabi et al., arXiv 2510.14242; methods.md §3). Pure functions.

``ll``: ``[n, K, C]`` length-normalised log-likelihoods (n examples, K formats, C choices); ``preds``: ``[n, K]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from alignkit.metrics.agreement import fleiss_observed_agreement  # noqa: F401 (part of this module's API)


def format_predictions(ll: Sequence) -> np.ndarray:
    """Per-format predictions ``[n, K]``: argmax over choices, ties to the lowest index (numpy's argmax)."""
    a = np.asarray(ll, dtype=float)
    if a.ndim != 3:
        raise ValueError(f"ll must be [n, K, C], got shape {a.shape}")
    return a.argmax(-1)


def f1_score(y_true: Sequence[int], y_pred: Sequence[int], *, n_classes: int, pos_label: int = 1) -> float:
    """Binary F1 of ``pos_label`` when ``n_classes == 2``, else macro-F1 over the classes present in ``y_true`` or
    ``y_pred`` (scikit-learn's default label set); a class with no true and no predicted items is not averaged,
    and F1 = 0 where precision + recall = 0. Returned as a fraction in [0, 1]."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be equal, non-empty 1-D arrays")

    def one(c: int) -> float:
        tp = int(((p == c) & (t == c)).sum())
        fp = int(((p == c) & (t != c)).sum())
        fn = int(((p != c) & (t == c)).sum())
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    if n_classes == 2:
        return one(pos_label)
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    return float(np.mean([one(c) for c in labels]))


def per_format_f1(preds: Sequence, labels: Sequence[int], *, n_classes: int, pos_label: int = 1) -> list[float]:
    """F1 ×100 of each format's predictions against the gold labels."""
    p = np.asarray(preds)
    return [100.0 * f1_score(labels, p[:, k], n_classes=n_classes, pos_label=pos_label) for k in range(p.shape[1])]


def consistency_summary(ll: Sequence, labels: Sequence[int], *, pos_label: int = 1) -> dict[str, float]:
    """agreement (Fleiss P̄ ×100), mean_f1 (×100, mean over formats), sigma_f1 (population std over formats, ×100),
    accuracy (×100, over all example-format pairs)."""
    a = np.asarray(ll, dtype=float)
    preds = format_predictions(a)
    f1s = per_format_f1(preds, labels, n_classes=a.shape[-1], pos_label=pos_label)
    y = np.asarray(labels)[:, None]
    return {"agreement": fleiss_observed_agreement(preds), "mean_f1": float(np.mean(f1s)),
            "sigma_f1": float(np.std(f1s)), "accuracy": float(100.0 * (preds == y).mean()), "n": int(a.shape[0]),
            "n_formats": int(a.shape[1])}
