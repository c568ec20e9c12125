"""F²C — Flip-Flop Consistency (Hejabi et al., arXiv 2510.14242): controls and losses as pure tensor functions.

Each example is posed in K prompt formats over C answer choices. From the length-normalised log-likelihoods
``ll[k, c]`` (computed without gradients) :func:`consensus_controls` derives the pseudo-label, the teacher/student
split and the flip weight; the losses then act on the consensus answer only:

* :func:`cce_loss` — consensus cross-entropy: token-averaged NLL of c*'s answer tokens, averaged over formats.
* :func:`teacher_student_kl` — KL(P̄_T ‖ P_s) between the detached teacher-mean next-token distribution and each
  student's, at answer-token positions (full vocabulary).
* :func:`format_jsd` — Jensen–Shannon-style agreement among a set of formats: the teachers when there is a
  teacher/student split (weight β_JSD), all K formats when there is none (strong unanimity: β_JSD; k < 2: α_noncons).

For a whole padded batch (rows ordered example, format, choice): :func:`answer_logprobs` and :func:`sequence_scores`
turn the model's answer-position logits into log-probs and per-answer scores, and :func:`f2c_batch_loss` applies the
controls and terms above per example (with alignkit's optional :class:`ClassQuota`, not part of F²C).

Edge cases follow the authors' code (github.com/ParsaHejabi/Flip-Flop-Consistency-Unsupervised-Training-for-Robustness-
to-Prompt-Perturbations-in-LLMs, ``flipflop_trainer.py``: ``derive_flipflop_controls`` and ``compute_loss``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from alignkit.metrics.agreement import fleiss_p_i


@dataclass(frozen=True)
class F2CControls:
    """What :func:`consensus_controls` decides for one example (all plain Python values: no graph)."""

    label: int  # pseudo-label c*, -1 when skipped
    skip: bool  # no strict majority -> the example contributes no loss
    predictions: tuple[int, ...]  # per-format argmax (ties -> lowest choice index)
    # m_k = LL_k(c*) - max_{j≠c*} LL_k(j) for every format (≤ 0 for dissenters); () if skipped
    margins: tuple[float, ...]
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


class F2CLossArgs(Protocol):
    """The F²C hyper-parameters :func:`f2c_batch_loss` reads (``F2CConfig`` has them all)."""

    tau: float
    top_k: int
    w_min: float
    w_max: float
    temperature: float
    cce_weight: float
    beta_jsd: float
    alpha_noncons: float
    length_normalize: bool


def answer_logprobs(logits: Tensor, answer_pos: Tensor, answer_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Full-vocabulary log-distributions at the answer positions ``[N, L, V]`` and the answer tokens' log-probs
    ``[N, L]`` (float32, whatever the model's dtype)."""
    v = logits.shape[-1]
    sel = logits.gather(1, answer_pos.unsqueeze(-1).expand(-1, -1, v))
    logp = sel.float().log_softmax(-1)
    return logp, logp.gather(-1, answer_ids.unsqueeze(-1)).squeeze(-1)


def sequence_scores(token_logps: Tensor, mask: Tensor, *, length_normalize: bool = True) -> Tensor:
    """Per-sequence answer score: mean (or sum) of the answer tokens' log-probs."""
    m = mask.to(token_logps.dtype)
    total = (token_logps * m).sum(-1)
    return total / m.sum(-1).clamp_min(1) if length_normalize else total


class ClassQuota:
    """alignkit's class-balance control (not part of F²C): admit a pseudo-label c only while the admitted count of c
    stays within ``share_c · (admitted + 1) + 1`` — the base model's share of class c, with one example of slack so
    that the first examples of any class pass. Counts are per process and restart when a run resumes."""

    def __init__(self, shares: list[float]) -> None:
        if not shares or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"class shares must be >= 0 and sum to 1, got {shares}")
        self.shares = list(shares)
        self.counts = [0] * len(shares)

    def admit(self, label: int) -> bool:
        if not 0 <= label < len(self.shares):
            raise ValueError(f"pseudo-label {label} outside the {len(self.shares)} classes of the quota")
        if self.counts[label] + 1 > self.shares[label] * (sum(self.counts) + 1) + 1:
            return False
        self.counts[label] += 1
        return True


def f2c_batch_loss(logp: Tensor, tok_lp: Tensor, mask: Tensor, shape: tuple[int, int, int],
                   args: F2CLossArgs, *, quota: ClassQuota | None = None
                   ) -> tuple[Tensor, list[F2CControls], dict[str, float]]:
    """The F²C loss of one batch from its answer-position log-distributions ``logp`` ``[B·K·C, L, V]``, answer-token
    log-probs ``tok_lp`` and ``mask`` ``[B·K·C, L]`` (rows ordered example, format, choice).

    Controls come from the detached scores. Per example with a strict majority (and, with ``quota``, an admitted
    pseudo-label), on the consensus answer c* only, as in the authors' code:

    * with a teacher/student split: CCE + w·KL(P̄_T ‖ P_s) + β_JSD·JSD(teachers);
    * strong unanimity (never a split): CCE + β_JSD·JSD(all K formats);
    * k < 2 (no split): CCE + α_noncons·JSD(all K formats).

    Examples without a strict majority (or refused by the quota) contribute nothing; the loss is the mean over the
    examples that do."""
    b, k, c = shape
    with torch.no_grad():
        ll = sequence_scores(tok_lp.detach(), mask, length_normalize=args.length_normalize).view(b, k, c)
        ctrls = [consensus_controls(ll[i], tau=args.tau, top_k=args.top_k, w_min=args.w_min, w_max=args.w_max,
                                    temperature=args.temperature) for i in range(b)]
    # Graph-connected zero: keeps backward (and ZeRO-3's gathers) identical on ranks whose batch is all skipped.
    loss = tok_lp.sum() * 0.0
    cce_sum = align_sum = jsd_sum = jsd_all_sum = 0.0
    kept = refused = 0
    for i, ct in enumerate(ctrls):
        if ct.skip:
            continue
        if quota is not None and not quota.admit(ct.label):
            refused += 1
            continue
        kept += 1
        rows = [i * k * c + f * c + ct.label for f in range(k)]
        ex = cce_loss(tok_lp[rows], mask[rows], cce_weight=args.cce_weight)
        cce_sum += ex.item()
        if ct.split:
            t_rows = [rows[f] for f in ct.teachers]
            s_rows = [rows[f] for f in ct.students]
            if ct.weight > 0:
                ex_align = ct.weight * teacher_student_kl(logp[t_rows], mask[t_rows], logp[s_rows], mask[s_rows])
                ex = ex + ex_align
                align_sum += ex_align.item()
            if args.beta_jsd > 0:
                ex_jsd = args.beta_jsd * format_jsd(logp[t_rows], mask[t_rows])
                ex = ex + ex_jsd
                jsd_sum += ex_jsd.item()
        else:
            # No split: the authors' code weights the all-format JSD by β_JSD under strong unanimity and by
            # ff_no_consensus_alpha_jsd otherwise (flipflop_trainer.py, training_step).
            weight = args.beta_jsd if ct.unanimous else args.alpha_noncons
            if weight > 0 and k >= 2:
                ex_jsd = weight * format_jsd(logp[rows], mask[rows])
                ex = ex + ex_jsd
                jsd_all_sum += ex_jsd.item()
        loss = loss + ex
    if kept:
        loss = loss / kept
    stats = {"f2c/skipped": 1.0 - (kept + refused) / b,
             "f2c/agreement": 100.0 * sum(fleiss_p_i(ct.predictions) for ct in ctrls) / b}
    if quota is not None:
        stats["f2c/quota_refused"] = refused / b
    if kept:
        used = [ct for ct in ctrls if not ct.skip]
        stats.update({"f2c/cce": cce_sum / kept, "f2c/align": align_sum / kept, "f2c/jsd": jsd_sum / kept,
                      "f2c/jsd_all": jsd_all_sum / kept,
                      "f2c/unanimous": sum(ct.unanimous for ct in used) / len(used),
                      "f2c/split": sum(ct.split for ct in used) / len(used),
                      "f2c/flip_weight": sum(ct.weight for ct in used) / len(used)})
    return loss, ctrls, stats


def class_shares(counts: Counter, n_classes: int) -> list[float]:
    """Share of each class 0..n_classes-1 in ``counts`` (all 0 when empty)."""
    total = sum(counts.values())
    return [counts.get(j, 0) / total if total else 0.0 for j in range(n_classes)]
