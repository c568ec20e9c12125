"""F²C controls and losses against hand-computed values: the reference code's edge cases (ties, strict majority,
even-count median, inclusive τ, stable teacher sort, no split under strong unanimity or k < 2)."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses.f2c import cce_loss, consensus_controls, format_jsd, teacher_jsd, teacher_student_kl

RTE = dict(tau=1.4, top_k=3, w_min=0.05, w_max=0.35, temperature=2.2)


def _ll(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_strict_majority_split_and_weight():
    ll = _ll([[-1.0, -3.0], [-0.5, -1.0], [-2.0, -1.0], [-1.0, -2.5], [-3.0, -0.5]])
    c = consensus_controls(ll, **RTE)
    assert not c.skip and c.label == 0 and not c.unanimous
    assert c.predictions == (0, 0, 1, 0, 1)
    assert c.margins == pytest.approx((2.0, 0.5, -1.0, 1.5, -2.5))
    # 3 voters -> k = min(3, 3 - 1) = 2: the two highest margins, formats 0 (2.0) and 3 (1.5)
    assert c.teachers == (0, 3) and c.students == (1, 2, 4)
    delta = (-1.0 + -1.0) / 2 - (-0.5 + -2.0 + -3.0) / 3
    assert c.delta == pytest.approx(delta)
    assert c.weight == pytest.approx(0.05 + 0.30 / (1 + math.exp(-delta / 2.2)))


def test_two_two_tie_at_k4_has_no_majority():
    ll = _ll([[-1.0, -2.0], [-1.0, -2.0], [-2.0, -1.0], [-2.0, -1.0]])
    c = consensus_controls(ll, **RTE)
    assert c.skip and c.label == -1 and c.weight == 0.0 and c.teachers == () and c.students == ()


def test_plurality_without_strict_majority_is_skipped():
    # 3 formats, 3 classes, one vote each; and 2 of 5 (a plurality) is not a strict majority either
    assert consensus_controls(_ll([[0, -1, -2], [-1, 0, -2], [-2, -1, 0]]), **RTE).skip
    ll = _ll([[0, -1, -2], [0, -1, -2], [-1, 0, -2], [-2, -1, 0], [-1, -2, -3]])
    assert consensus_controls(ll, **RTE).predictions == (0, 0, 1, 2, 0)
    assert not consensus_controls(ll, **RTE).skip  # 3 of 5 > 2.5
    assert consensus_controls(ll[:4], **RTE).skip  # 2 of 4 is not > 2


def test_argmax_tie_goes_to_lowest_index_with_margin_zero():
    ll = _ll([[-1.0, -1.0], [-0.2, -2.0], [-0.1, -3.0]])
    c = consensus_controls(ll, **RTE)
    assert c.predictions[0] == 0 and c.label == 0
    assert c.margins[0] == 0.0


def test_strong_unanimity_above_tau_even_median():
    # margins 2, 1, 3, 1.4 -> median = (1.4 + 2)/2 = 1.7 >= 1.4
    ll = _ll([[0.0, -2.0], [0.0, -1.0], [0.0, -3.0], [0.0, -1.4]])
    c = consensus_controls(ll, **RTE)
    assert c.unanimous and c.label == 0 and c.weight == 0.0
    # no teacher/student split at all under strong unanimity (the reference's "unanimous_strong" branch)
    assert c.teachers == () and c.students == () and not c.split
    assert c.margins == pytest.approx((2.0, 1.0, 3.0, 1.4))


def test_strong_unanimity_is_inclusive_at_tau():
    ll = _ll([[0.0, -1.0], [0.0, -1.4], [0.0, -1.4], [0.0, -3.0]])  # median (1.4 + 1.4)/2 == τ
    assert consensus_controls(ll, **RTE).unanimous
    below = consensus_controls(ll, **{**RTE, "tau": 1.4000001})
    assert not below.unanimous and below.split  # then it splits like any majority: k = min(3, 4 - 1) = 3
    assert below.teachers == (3, 1, 2) and below.students == (0,)  # margins 1, 1.4, 1.4, 3: stable on the tie


def test_even_count_median_is_mean_of_middle_two_not_lower():
    # margins 0.2, 1.0, 2.0, 3.0: torch.median would give 1.0 (< τ = 1.4); the mean of the middle two is 1.5
    ll = _ll([[0.0, -0.2], [0.0, -1.0], [0.0, -2.0], [0.0, -3.0]])
    assert consensus_controls(ll, **RTE).unanimous
    assert not consensus_controls(ll, **{**RTE, "tau": 1.5000001}).unanimous


def test_strict_majority_is_more_than_half():
    # 3 of 5 > 2.5: a label; 3 of 6 = K/2: none
    five = _ll([[0.0, -1.0]] * 3 + [[-1.0, 0.0]] * 2)
    six = _ll([[0.0, -1.0]] * 3 + [[-1.0, 0.0]] * 3)
    assert consensus_controls(five, **RTE).label == 0
    assert consensus_controls(six, **RTE).skip


def test_unanimity_below_tau_splits_like_a_majority():
    ll = _ll([[0.0, -0.5], [0.0, -0.2], [0.0, -0.9], [0.0, -0.1]])  # median 0.35 < 1.4
    c = consensus_controls(ll, **RTE)
    assert not c.unanimous and c.label == 0
    assert c.teachers == (2, 0, 1) and c.students == (3,)
    assert c.delta == pytest.approx(0.0)  # every LL(c*) is 0
    assert c.weight == pytest.approx(0.05 + 0.30 * 0.5)


def test_top_k_larger_than_majority_is_capped():
    ll = _ll([[-1.0, -3.0], [-0.5, -1.0], [-2.0, -1.0], [-1.0, -2.5], [-3.0, -0.5]])
    c = consensus_controls(ll, **{**RTE, "top_k": 10})
    assert c.teachers == (0, 3)  # min(10, 3 - 1) = 2


def test_fewer_than_two_teachers_means_no_split_but_a_label():
    ll = _ll([[-1.0, -2.0], [-1.0, -1.5], [-2.0, -1.0]])  # 2 of 3 -> k = min(3, 1) = 1
    c = consensus_controls(ll, **RTE)
    assert not c.skip and c.label == 0 and not c.unanimous and not c.split
    assert c.teachers == () and c.students == () and c.weight == 0.0
    # top_k = 1 gives k < 2 whatever the majority
    c1 = consensus_controls(_ll([[-1.0, -2.0], [-1.0, -1.5], [-1.0, -1.2]]), **{**RTE, "top_k": 1})
    assert c1.label == 0 and not c1.split and not c1.unanimous


def test_equal_margins_keep_lower_format_first():
    ll = _ll([[-2.0, -1.0], [0.0, -1.0], [0.0, -1.0], [0.0, -1.0], [0.0, -2.0]])
    c = consensus_controls(ll, **{**RTE, "top_k": 2})
    assert c.teachers == (4, 1) and c.students == (0, 2, 3)


def test_temperature_floor():
    ll = _ll([[-1.0, -3.0], [-0.5, -1.0], [-2.0, -1.0], [-1.0, -2.5], [-3.0, -0.5]])
    c = consensus_controls(ll, **{**RTE, "temperature": 0.0})
    assert c.weight == pytest.approx(0.35)  # σ(Δ/1e-6) with Δ > 0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="C >= 2"):
        consensus_controls(_ll([[0.0], [1.0]]), **RTE)
    with pytest.raises(ValueError, match="NaN"):
        consensus_controls(_ll([[0.0, float("nan")]]), **RTE)


def test_cce_one_token_and_multi_token_answers():
    lp = torch.tensor([[math.log(0.5), 0.0], [math.log(0.25), math.log(0.5)]])
    mask = torch.tensor([[1, 0], [1, 1]])
    expected = 0.4 * 0.5 * (-math.log(0.5) + (-math.log(0.25) - math.log(0.5)) / 2)
    assert cce_loss(lp, mask, cce_weight=0.4).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least one"):
        cce_loss(lp, torch.tensor([[0, 0], [1, 1]]))


def _logp(*rows):
    return torch.tensor(rows, dtype=torch.float64).log()


def test_teacher_student_kl_detaches_teachers():
    teachers = _logp([[0.8, 0.2]], [[0.6, 0.4]]).requires_grad_(True)
    students = _logp([[0.5, 0.5]]).requires_grad_(True)
    kl = teacher_student_kl(teachers, torch.ones(2, 1), students, torch.ones(1, 1))
    assert kl.item() == pytest.approx(0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5))
    kl.backward()
    assert teachers.grad is None and students.grad is not None


def test_teacher_student_kl_multi_token_positions():
    # position 1 exists for teacher 0 and student 0 only; student 1 is a one-token answer
    teachers = _logp([[0.8, 0.2], [0.9, 0.1]], [[0.6, 0.4], [0.5, 0.5]])
    t_mask = torch.tensor([[1, 1], [1, 0]])
    students = _logp([[0.5, 0.5], [0.3, 0.7]], [[0.7, 0.3], [0.5, 0.5]])
    s_mask = torch.tensor([[1, 1], [1, 0]])
    kl00 = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)
    kl01 = 0.9 * math.log(0.9 / 0.3) + 0.1 * math.log(0.1 / 0.7)  # only teacher 0 at position 1
    kl10 = 0.0
    got = teacher_student_kl(teachers, t_mask, students, s_mask).item()
    assert got == pytest.approx((kl00 + kl01 + kl10) / 3)


def test_teacher_jsd_hand_value_and_single_teacher():
    p1, p2, m = (0.8, 0.2), (0.6, 0.4), (0.7, 0.3)

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    expected = (kl(m, p1) + kl(p1, m) + kl(m, p2) + kl(p2, m)) / 4
    t = _logp([list(p1)], [list(p2)]).requires_grad_(True)
    j = format_jsd(t, torch.ones(2, 1))
    assert j.item() == pytest.approx(expected)
    assert teacher_jsd is format_jsd
    j.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    one = _logp([list(p1)]).requires_grad_(True)
    z = teacher_jsd(one, torch.ones(1, 1))
    assert z.item() == 0.0 and z.requires_grad
