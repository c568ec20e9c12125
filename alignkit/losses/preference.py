"""Pairwise preference losses as small pure functions.

Every function takes per-example *summed* log-probabilities of the chosen and rejected responses under the policy
and the reference model (1-D tensors of equal shape) and returns per-example ``(losses, chosen_rewards,
rejected_rewards)``, with rewards ``β·(log π − log π_ref)`` detached as in TRL. Formulas: docs/methods.md
§1–2 (restated in each docstring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LossOutput = tuple[Tensor, Tensor, Tensor]


def _check(beta: float, *tensors: Tensor) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise ValueError(f"shape mismatch: {tuple(t.shape)} vs {tuple(shape)}")


def _margin(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    _check(beta, pc, pr, rc, rr)
    m = (pc - pr) - (rc - rr)
    return m, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, *, beta: float) -> LossOutput:
    """DPO (Rafailov et al., 2023, arXiv 2305.18290): ``L = −log σ(β·m)`` with
    ``m = [log π(y_w|x) − log π(y_l|x)] − [log π_ref(y_w|x) − log π_ref(y_l|x)]``."""
    m, cr, rr = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return -F.logsigmoid(beta * m), cr, rr


def _check_flags(h: Tensor, name: str) -> None:
    if not torch.all((h == 0) | (h == 1)):
        raise ValueError(f"{name} must contain only 0 and 1, got values {sorted(set(h.flatten().tolist()))}")


def fdpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, h_w: Tensor, h_l: Tensor, *, beta: float, lam: float) -> LossOutput:
    """F-DPO (Chaduvula et al., arXiv 2601.03027, methods.md §1): ``L = −log σ(β·(m − λ·Δh))``, ``Δh = h_l − h_w``.

    With the label flip applied Δh ∈ {0, 1}: pairs whose rejected answer is hallucinated and chosen is not must win
    by an extra margin λ. With Δh = 0 or λ = 0 this is exactly :func:`dpo_loss`. Δh = −1 (unflipped data, the
    paper's "F-DPO without flip" ablation) is allowed and lowers the required margin.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    _check(beta, policy_chosen_logps, h_w, h_l)
    _check_flags(h_w, "h_w")
    _check_flags(h_l, "h_l")
    m, cr, rr = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    delta_h = (h_l - h_w).to(m.dtype)
    return -F.logsigmoid(beta * (m - lam * delta_h)), cr, rr


def cdpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, *, beta: float, eps: float) -> LossOutput:
    """Conservative DPO (label smoothing ε; Mitchell, 2023): ``L = −(1−ε)·log σ(βm) − ε·log σ(−βm)``, 0 ≤ ε ≤ 0.5.

    Written here because TRL 1.16's "sigmoid" loss ignores ``label_smoothing`` (methods.md §2)."""
    if not 0.0 <= eps <= 0.5:
        raise ValueError(f"eps must be in [0, 0.5], got {eps}")
    m, cr, rr = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return -(1 - eps) * F.logsigmoid(beta * m) - eps * F.logsigmoid(-beta * m), cr, rr


def rdpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, *, beta: float, eps: float) -> LossOutput:
    """Robust DPO (Chowdhury et al., 2024, arXiv 2403.00409): an unbiased loss under flip rate ε,
    ``L = [−(1−ε)·log σ(βm) + ε·log σ(−βm)] / (1−2ε)``, 0 ≤ ε < 0.5."""
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps}")
    m, cr, rr = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    losses = (-(1 - eps) * F.logsigmoid(beta * m) + eps * F.logsigmoid(-beta * m)) / (1 - 2 * eps)
    return losses, cr, rr


def ipo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, *, beta: float) -> LossOutput:
    """IPO (Azar et al., 2023, arXiv 2310.12036): ``L = (m − 1/(2β))²``. The paper (and TRL's "ipo") uses
    length-averaged log-probs; pass averaged values to match that."""
    m, cr, rr = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return (m - 1 / (2 * beta)) ** 2, cr, rr
