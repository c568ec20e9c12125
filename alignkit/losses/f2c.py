"""F²C — Flip-Flop Consistency (Hejabi et al., arXiv 2510.14242): controls and losses as pure tensor functions.

Each example is posed in K prompt formats over C answer choices. From the length-normalised log-likelihoods
``ll[k, c]`` (computed without gradients) :func:`consensus_controls` derives the pseudo-label, the teacher/student
split and the flip weight; the losses then act on the consensus answer only:

* :func:`cce_loss` — consensus cross-entropy: token-averaged NLL of c*'s answer tokens, averaged over formats.
* :func:`teacher_student_kl` — KL(P̄_T ‖ P_s) between the detached teacher-mean next-token distribution and each
  student's, at answer-token positions (full vocabulary).
* :func:`format_jsd` — Jensen–Shannon-style agreement among a set of formats: the teachers when there is a
  teacher/student split (weight β_JSD), all K formats when there is none (strong unanimity: β_JSD; k < 2: α_noncons).

Edge cases follow the authors' code (github.com/ParsaHejabi/Flip-Flop-Consistency-Unsupervised-Training-for-Robustness-
to-Prompt-Perturbations-in-LLMs, ``flipflop_trainer.py``: ``derive_flipflop_controls`` and ``compute_loss``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class F2CControls:
    """What :func:`consensus_controls` decides for one example (all plain Python values: no graph)."""

    label: int  # pseudo-label c*, -1 when skipped
    skip: bool  # no strict majority -> the example contributes no loss
    predictions: tuple[int, ...]  # per-format argmax (ties -> lowest choice index)
    margins: tuple[float, ...]  # m_k = LL_k(c*) - max_{j≠c*} LL_k(j) for every format (≤ 0 for dissenters); () if skipped
    teachers: tuple[int, ...] = ()  # format indices, highest margin first; () without a split
    students: tuple[int, ...] = ()  # format indices, ascending; () without a split
    weight: float = 0.0  # flip weight w (0 when there is no teacher/student split)
    unanimous: bool = False  # strong unanimity: all agree and median margin ≥ τ (never a split)
    delta: float = 0.0  # Δ = mean LL_teacher(c*) - mean LL_student(c*)

    @property
    def split(self) -> bool:
        """A valid teacher/student split: ≥ 2 teachers and ≥ 1 student (flip term + teacher JSD apply)."""
        return len(self.teachers) >= 2 and len(self.students) >= 1


def _median(values: list[float]) -> float:
    # Even counts take the mean of the middle two (methods.md §3), i.e. numpy's median, not torch.median.
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


def consensus_controls(ll: Tensor, *, tau: float, top_k: int, w_min: float, w_max: float,
                       temperature: float) -> F2CControls:
    """F²C controls for one example (Hejabi et al., arXiv 2510.14242; methods.md §3).

    ``ll``: ``[K, C]`` length-normalised log-likelihoods (mean token log-prob of choice c's answer under format k).

    * prediction_k = argmax_c ll[k, c], ties to the lowest index; c* = majority choice if count > K/2, else skip.
    * margin m_k = ll[k, c*] - max_{j≠c*} ll[k, j] (0 for a format that voted c* by a tie).
    * Strong unanimity (checked first): all K vote c* and median margin ≥ τ (inclusive; even count -> mean of the
      middle two). Then there is no teacher/student split: no teachers, no students, w = 0 (the trainer applies CCE
      and a JSD over all K formats).
    * Otherwise k = min(top_k, |majority| - 1); with k < 2 there is no split either (w = 0; CCE and the JSD over
      all formats still apply, the pseudo-label is returned). Teachers =
      the first k majority voters by margin, descending, stable (lower format index first on equal margins);
      students = every other format, ascending.
    * w = w_min + (w_max - w_min)·σ(Δ / max(1e-6, T)), Δ = mean_{t∈T} ll[t, c*] - mean_{s∈S} ll[s, c*].
    """
    if ll.dim() != 2:
        raise ValueError(f"ll must be [K, C], got shape {tuple(ll.shape)}")
    K, C = ll.shape
    if K < 1 or C < 2:
        raise ValueError(f"need K >= 1 formats and C >= 2 choices, got K={K}, C={C}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if w_min > w_max:
        raise ValueError(f"w_min ({w_min}) > w_max ({w_max})")
    rows = ll.detach().double().cpu().tolist()
    if any(math.isnan(v) for r in rows for v in r):
        raise ValueError("ll contains NaN")
    # max() keeps the first maximum -> lowest choice index on ties, like torch/numpy argmax in the reference code.
    preds = tuple(max(range(C), key=lambda c, r=r: (r[c], -c)) for r in rows)
    counts = [preds.count(c) for c in range(C)]
    best = max(range(C), key=lambda c: (counts[c], -c))
    if not counts[best] > K / 2:
        return F2CControls(label=-1, skip=True, predictions=preds, margins=())
    c_star = best
    margins = tuple(r[c_star] - max(v for j, v in enumerate(r) if j != c_star) for r in rows)
    majority = [k for k in range(K) if preds[k] == c_star]
    # sorted() is stable, so equal margins keep ascending format order.
    by_margin = sorted(majority, key=lambda k: -margins[k])
    k = min(top_k, len(majority) - 1)
    if len(majority) == K and _median([margins[i] for i in majority]) >= tau:
        return F2CControls(label=c_star, skip=False, predictions=preds, margins=margins, unanimous=True)
    if k < 2:
        return F2CControls(label=c_star, skip=False, predictions=preds, margins=margins)
    teachers = tuple(by_margin[:k])
    students = tuple(i for i in range(K) if i not in teachers)
    delta = (sum(rows[t][c_star] for t in teachers) / len(teachers)
             - sum(rows[s][c_star] for s in students) / len(students))
    z = delta / max(1e-6, temperature)
    sig = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    weight = w_min + (w_max - w_min) * sig
    return F2CControls(label=c_star, skip=False, predictions=preds, margins=margins, teachers=teachers,
                       students=students, weight=weight, delta=delta)


def cce_loss(answer_logps: Tensor, mask: Tensor, *, cce_weight: float = 1.0) -> Tensor:
    """Consensus cross-entropy (F²C, arXiv 2510.14242): ``cce_weight · (1/K) Σ_k mean_t −log p_k(a_t)``.

    ``answer_logps``: ``[K, L]`` log-probabilities of c*'s answer tokens under each format; ``mask``: ``[K, L]``
    (1 at real answer tokens; every format needs at least one).
    """
    if answer_logps.shape != mask.shape or answer_logps.dim() != 2:
        raise ValueError(f"answer_logps {tuple(answer_logps.shape)} and mask {tuple(mask.shape)} must both be [K, L]")
    m = mask.to(answer_logps.dtype)
    n = m.sum(-1)
    if torch.any(n == 0):
        raise ValueError("every format needs at least one answer token")
    per_format = -(answer_logps * m).sum(-1) / n
    return cce_weight * per_format.mean()


def _kl(p_log: Tensor, q_log: Tensor) -> Tensor:
    """KL(P ‖ Q) over the last dim from log-probabilities (0·log 0 = 0)."""
    p = p_log.exp()
    return (p * (p_log - q_log)).sum(-1)


def _teacher_mean_logprobs(teacher_logprobs: Tensor, teacher_mask: Tensor) -> tuple[Tensor, Tensor]:
    """log of the mean teacher distribution at each answer position (over teachers that have that position)."""
    m = teacher_mask.to(teacher_logprobs.dtype)  # [T, L]
    count = m.sum(0)  # [L]
    probs = (teacher_logprobs.exp() * m.unsqueeze(-1)).sum(0) / count.clamp_min(1).unsqueeze(-1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), count > 0


def teacher_student_kl(teacher_logprobs: Tensor, teacher_mask: Tensor, student_logprobs: Tensor,
                       student_mask: Tensor) -> Tensor:
    """Flip-flop alignment (F²C, arXiv 2510.14242): mean over students and answer positions of KL(P̄_T ‖ P_s).

    ``*_logprobs``: ``[N, L, V]`` full-vocabulary next-token log-distributions at answer position 0..L-1 of each
    format's c* answer; ``*_mask``: ``[N, L]``. P̄_T (mean of the teachers' probabilities at each position) is
    detached: only students move. Formats whose answers differ in length are aligned position by position; a
    student position counts only where some teacher has that position. Returns a scalar (0 when nothing to align,
    still connected to the students' graph).
    """
    if teacher_logprobs.dim() != 3 or student_logprobs.dim() != 3:
        raise ValueError("teacher_logprobs and student_logprobs must be [N, L, V]")
    if teacher_logprobs.shape[1:] != student_logprobs.shape[1:]:
        raise ValueError(f"teacher {tuple(teacher_logprobs.shape)} and student {tuple(student_logprobs.shape)} "
                         "must share [L, V]")
    mean_log, has_teacher = _teacher_mean_logprobs(teacher_logprobs.detach(), teacher_mask)
    kl = _kl(mean_log.unsqueeze(0), student_logprobs)  # [S, L]
    w = student_mask.to(kl.dtype) * has_teacher.to(kl.dtype).unsqueeze(0)
    denom = w.sum()
    if denom == 0:
        return (student_logprobs * 0).sum()
    return (kl * w).sum() / denom


def format_jsd(teacher_logprobs: Tensor, teacher_mask: Tensor) -> Tensor:
    """Agreement term (F²C, arXiv 2510.14242) among N formats: mean over formats and answer positions of
    ½·[KL(M ‖ P_n) + KL(P_n ‖ M)], M the (non-detached) mean distribution of the formats at that position.

    Used among the teachers (with a split) and among all K formats (without one). Needs ≥ 2 formats to be
    non-zero; returns a graph-connected 0 otherwise.
    """
    if teacher_logprobs.dim() != 3:
        raise ValueError("teacher_logprobs must be [N, L, V]")
    if teacher_logprobs.shape[0] < 2:
        return (teacher_logprobs * 0).sum()
    mean_log, has = _teacher_mean_logprobs(teacher_logprobs, teacher_mask)
    sym = 0.5 * (_kl(mean_log.unsqueeze(0), teacher_logprobs) + _kl(teacher_logprobs, mean_log.unsqueeze(0)))
    w = teacher_mask.to(sym.dtype)
    return (sym * w).sum() / w.sum().clamp_min(1)


teacher_jsd = format_jsd  # the name of the with-split use
