"""alignkit.losses.preference against closed-form values computed by hand (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses import cdpo_loss, dpo_loss, fdpo_loss, ipo_loss, rdpo_loss


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def _nls(x: float) -> float:  # −log σ(x)
    return math.log1p(math.exp(-x))


# policy chosen/rejected, reference chosen/rejected: m = (-1 - -3) - (-2 - -2.5) = 2 - 0.5 = 1.5
PC, PR, RC, RR = _t(-1.0), _t(-3.0), _t(-2.0), _t(-2.5)
M, BETA = 1.5, 0.5


def test_dpo_matches_closed_form_and_rewards():
    loss, cr, rr = dpo_loss(PC, PR, RC, RR, beta=BETA)
    assert loss.item() == pytest.approx(_nls(BETA * M), abs=1e-12)  # −log σ(0.75) = 0.38687...
    assert loss.item() == pytest.approx(0.38687, abs=1e-5)
    assert cr.item() == pytest.approx(BETA * (-1.0 + 2.0))
    assert rr.item() == pytest.approx(BETA * (-3.0 + 2.5))
    assert not cr.requires_grad


def test_dpo_at_zero_margin_is_log2():
    z = _t(0.0, 0.0)
    assert torch.allclose(dpo_loss(z, z, z, z, beta=0.1)[0], _t(math.log(2), math.log(2)))


def test_fdpo_subtracts_lambda_on_delta_h_one_only():
    pc, pr, rc, rr = (torch.cat([x, x, x]) for x in (PC, PR, RC, RR))
    h_w, h_l = _t(0, 0, 1), _t(1, 0, 1)  # Δh = 1, 0, 0
    loss, _, _ = fdpo_loss(pc, pr, rc, rr, h_w, h_l, beta=BETA, lam=2.0)
    assert loss[0].item() == pytest.approx(_nls(BETA * (M - 2.0)), abs=1e-12)  # −log σ(−0.25) = 0.82594...
    assert loss[0].item() == pytest.approx(0.82594, abs=1e-5)
    assert loss[1].item() == pytest.approx(_nls(BETA * M), abs=1e-12)
    assert loss[2].item() == pytest.approx(_nls(BETA * M), abs=1e-12)


def test_fdpo_with_lambda_zero_equals_dpo():
    h = _t(1.0)
    assert torch.equal(fdpo_loss(PC, PR, RC, RR, _t(0.0), h, beta=BETA, lam=0.0)[0],
                       dpo_loss(PC, PR, RC, RR, beta=BETA)[0])


def test_fdpo_unflipped_pair_lowers_required_margin():
    # Δh = −1 (h_w=1, h_l=0, data not flipped) gives −log σ(β(m + λ)).
    loss = fdpo_loss(PC, PR, RC, RR, _t(1.0), _t(0.0), beta=BETA, lam=2.0)[0]
    assert loss.item() == pytest.approx(_nls(BETA * (M + 2.0)), abs=1e-12)


def test_cdpo_closed_form():
    loss = cdpo_loss(PC, PR, RC, RR, beta=BETA, eps=0.2)[0]
    assert loss.item() == pytest.approx(0.8 * _nls(0.75) + 0.2 * _nls(-0.75), abs=1e-12)  # 0.53687...
    assert loss.item() == pytest.approx(0.53687, abs=1e-5)
    assert torch.equal(cdpo_loss(PC, PR, RC, RR, beta=BETA, eps=0.0)[0], dpo_loss(PC, PR, RC, RR, beta=BETA)[0])


def test_rdpo_closed_form_and_unbiasedness():
    eps = 0.2
    loss = rdpo_loss(PC, PR, RC, RR, beta=BETA, eps=eps)[0]
    expected = (0.8 * _nls(0.75) - 0.2 * _nls(-0.75)) / 0.6
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # Unbiased: the expectation over a flip with prob ε equals the clean DPO loss.
    flipped = rdpo_loss(PR, PC, RR, RC, beta=BETA, eps=eps)[0]
    assert ((1 - eps) * loss + eps * flipped).item() == pytest.approx(_nls(0.75), abs=1e-12)


def test_ipo_closed_form():
    loss = ipo_loss(PC, PR, RC, RR, beta=BETA)[0]
    assert loss.item() == pytest.approx((M - 1 / (2 * BETA)) ** 2)  # (1.5 − 1)² = 0.25
    assert loss.item() == pytest.approx(0.25)


def test_gradient_of_dpo_matches_analytic():
    pc = PC.clone().requires_grad_(True)
    dpo_loss(pc, PR, RC, RR, beta=BETA)[0].sum().backward()
    # d/dpc −log σ(βm) = −β σ(−βm)
    assert pc.grad.item() == pytest.approx(-BETA / (1 + math.exp(BETA * M)), abs=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: dpo_loss(PC, PR, RC, RR, beta=0.0), "beta"),
    (lambda: dpo_loss(PC, _t(1.0, 2.0), RC, RR, beta=0.1), "shape"),
    (lambda: fdpo_loss(PC, PR, RC, RR, _t(0.0), _t(1.0), beta=0.1, lam=-1.0), "lam"),
    (lambda: fdpo_loss(PC, PR, RC, RR, _t(2.0), _t(1.0), beta=0.1, lam=1.0), "h_w"),
    (lambda: fdpo_loss(PC, PR, RC, RR, _t(0.0), _t(0.5), beta=0.1, lam=1.0), "h_l"),
    (lambda: fdpo_loss(PC, PR, RC, RR, _t(0.0, 1.0), _t(1.0, 1.0), beta=0.1, lam=1.0), "shape"),
    (lambda: cdpo_loss(PC, PR, RC, RR, beta=0.1, eps=0.6), "eps"),
    (lambda: rdpo_loss(PC, PR, RC, RR, beta=0.1, eps=0.5), "eps"),
    (lambda: ipo_loss(PC, PR, RC, RR, beta=-1.0), "beta"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
