"""Consistency metrics against hand-computed values (methods.md §3)."""

from __future__ import annotations

import numpy as np
import pytest

from alignkit.evals.metrics.consistency import (
    consistency_summary,
    f1_score,
    fleiss_observed_agreement,
    format_predictions,
    per_format_f1,
)


def test_fleiss_observed_agreement_hand_values():
    # K=4: [0,0,0,0] -> P=1; [0,0,1,1] -> (4+4-4)/12 = 1/3; [0,0,0,1] -> (9+1-4)/12 = 1/2
    preds = [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert fleiss_observed_agreement(preds) == pytest.approx(100 * (1 + 1 / 3 + 1 / 2) / 3)
    # K=3, three classes, all different -> (3 - 3)/6 = 0
    assert fleiss_observed_agreement([[0, 1, 2]]) == 0.0
    with pytest.raises(ValueError, match="2 formats"):
        fleiss_observed_agreement([[0], [1]])


def test_predictions_tie_to_lowest_index():
    ll = [[[-1.0, -1.0], [-2.0, -1.0]]]
    assert format_predictions(ll).tolist() == [[0, 1]]


def test_binary_and_macro_f1():
    # binary, positive class 1: tp=2, fp=1, fn=1 -> 4/6
    assert f1_score([1, 1, 0, 1, 0], [1, 1, 1, 0, 0], n_classes=2) == pytest.approx(4 / 6)
    # positive class 0: tp=1, fp=1, fn=1 -> 2/4
    assert f1_score([1, 1, 0, 1, 0], [1, 1, 1, 0, 0], n_classes=2, pos_label=0) == pytest.approx(0.5)
    # 3 classes: class 0 F1 = 1, class 1: tp=1 fp=1 fn=0 -> 2/3, class 2: tp=0 -> 0
    assert f1_score([0, 1, 2], [0, 1, 1], n_classes=3) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # a class absent from both truth and predictions is not averaged
    assert f1_score([0, 1], [0, 1], n_classes=3) == 1.0


def test_summary_mean_and_sigma_f1():
    labels = [1, 0, 1, 0]
    # format 0 perfect (F1 1), format 1 always predicts 1 (tp=2, fp=2 -> 4/6)
    ll = np.zeros((4, 2, 2))
    for i, y in enumerate(labels):
        ll[i, 0, y] = 1.0
        ll[i, 1, 1] = 1.0
    s = consistency_summary(ll, labels)
    f1s = [100.0, 100 * 4 / 6]
    assert per_format_f1(format_predictions(ll), labels, n_classes=2) == pytest.approx(f1s)
    assert s["mean_f1"] == pytest.approx(np.mean(f1s)) and s["sigma_f1"] == pytest.approx(np.std(f1s))
    assert s["agreement"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)  # K=2: agree -> 1, disagree -> 0
    assert s["accuracy"] == pytest.approx(100 * 6 / 8)


def test_one_fleiss_implementation_for_trainer_eval_and_judges():
    """F²C's training-time agreement, the eval's P̄ and the judge ensemble's kappa come from alignkit.metrics."""
    from alignkit.evals.metrics import consistency
    from alignkit.judges import ensemble
    from alignkit.metrics import agreement

    assert consistency.fleiss_observed_agreement is agreement.fleiss_observed_agreement
    assert ensemble.fleiss_kappa is agreement.fleiss_kappa
    preds = [(0, 0, 1, 1), (2, 2, 2, 1)]
    assert [agreement.fleiss_p_i(p) for p in preds] == pytest.approx([1 / 3, 1 / 2])
    assert agreement.fleiss_observed_agreement(preds) == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert agreement.fleiss_p_i((1,)) == 1.0  # one format agrees with itself (the trainer's convention)
