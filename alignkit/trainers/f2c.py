"""``F2CTrainer``: Flip-Flop Consistency training (Hejabi et al., arXiv 2510.14242).

Every batch holds B examples, each posed in K prompt formats over C answer choices. One padded forward runs over all
B·K·C (format, choice) sequences; the controls (pseudo-label, teachers/students, flip weight) come from that
forward's detached log-probabilities, and the loss acts on the consensus answer only. No gold label is read.

The number of forward/backward calls per step never depends on the data: an all-skipped batch still returns
``0 · (graph-connected sum)``, so DeepSpeed ZeRO-3 ranks stay in lock-step.

Besides the paper's method (the default) the trainer has two guards against collapsing onto one answer class:
the reference's unsupervised dev-loss early stopping (``early_stopping_patience``) and alignkit's own collapse
guard (per-class shares logged at every logging step, ``collapse_threshold``/``stop_on_collapse``) plus an optional
class-balance control (``class_balance: quota``, off by default; not part of F²C).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import Trainer, TrainerCallback, TrainingArguments

from alignkit.inference import encode_pair
from alignkit.losses.f2c import F2CControls, cce_loss, consensus_controls, format_jsd, teacher_student_kl
from alignkit.metrics.agreement import fleiss_p_i

logger = logging.getLogger(__name__)
CLASS_BALANCE = ("none", "quota")


@dataclass
class F2CConfig(TrainingArguments):
    """Configuration for :class:`F2CTrainer`: ``TrainingArguments`` plus the F²C hyper-parameters (defaults: the
    paper's RTE setting) and where the consistency set comes from."""

    cce_weight: float = field(default=0.4, metadata={"help": "Weight of the consensus cross-entropy (CCE) term."})
    tau: float = field(default=1.4, metadata={"help": "τ: all formats agree and median margin ≥ τ -> strong "
                                                      "unanimity: no teacher/student split (CCE + β_JSD·JSD over "
                                                      "all formats)."})
    top_k: int = field(default=3, metadata={"help": "At most this many teachers: k = min(top_k, |majority| - 1)."})
    w_min: float = field(default=0.05, metadata={"help": "Lower bound of the flip weight w."})
    w_max: float = field(default=0.35, metadata={"help": "Upper bound of the flip weight w."})
    temperature: float = field(default=2.2, metadata={"help": "T in w = w_min + (w_max - w_min)·σ(Δ/T)."})
    beta_jsd: float = field(default=0.35, metadata={"help": "β_JSD: weight of the JSD among the teachers (with a "
                                                            "split) and, as in the authors' code, of the JSD over all "
                                                            "formats under strong unanimity."})
    alpha_noncons: float = field(default=1.0, metadata={
        "help": "α_noncons: weight of the JSD over all K formats for an example with a pseudo-label but no valid "
                "teacher/student split other than strong unanimity (k = min(top_k, |majority| - 1) < 2). Examples "
                "without a strict majority get no loss at all. 1.0 is the reference code's option default "
                "(ff_no_consensus_alpha_jsd); the authors' public launcher passes 0.0."})
    early_stopping_patience: int = field(default=0, metadata={
        "help": "Unsupervised dev-loss early stopping (the reference's): stop after this many evaluations without a "
                "new lowest dev F²C loss, counted only from `early_stopping_min_steps` on. 0 = off (reference: 5). "
                "Needs a dev set (`eval_dataset_path` or `dev_examples`) and `eval_strategy: steps`."})
    early_stopping_min_steps: int = field(default=20, metadata={
        "help": "Evaluations before this optimiser step never count against the patience (published study "
                "config: 20)."})
    dev_examples: int = field(default=0, metadata={
        "help": "Hold out the last N examples of the training set as the unsupervised dev set (used when the recipe "
                "has no `eval_dataset_path`). No gold label is read."})
    collapse_threshold: float = field(default=0.9, metadata={
        "help": "Collapse guard (alignkit's): warn when one class holds at least this share of the model's "
                "per-format predictions over the last `collapse_window` predictions on training examples."})
    collapse_window: int = field(default=100, metadata={
        "help": "Number of most recent per-format training predictions the collapse guard looks at (it checks only "
                "once the window is full)."})
    stop_on_collapse: bool = field(default=False, metadata={
        "help": "Stop training (saving the model as it is) when the collapse guard fires, instead of only warning."})
    class_balance: str = field(default="none", metadata={
        "help": "alignkit's own addition, not part of F²C (off by default): 'quota' admits a consensus pseudo-label "
                "only while its class stays within its quota, the base model's share of per-format predictions for "
                "that class (measured before training on `class_balance_examples` training examples, no gold "
                "labels); an example over quota contributes no loss. 'none': the paper's method."})
    class_balance_examples: int = field(default=64, metadata={
        "help": "Training examples scored with the base model to measure its class shares for `class_balance`."})
    length_normalize: bool = field(default=True, metadata={"help": "Controls use the mean token log-prob of each "
                                                                   "answer (False: the sum)."})
    max_length: int = field(default=512, metadata={"help": "Max tokens per (format, choice) sequence; longer "
                                                           "prompts lose tokens on the left."})
    format_key: str = field(default="formats", metadata={"help": "Record key of the training formats "
                                                                 "('heldout_formats' stays for evaluation)."})
    consistency_templates: str | None = field(default=None, metadata={
        "help": "When the dataset is raw SuperGLUE JSONL: PromptSource templates to build the consistency set "
                "with (e.g. 'super_glue/rte'); None when the dataset is already a consistency set."})
    consistency_examples: int | None = field(default=None, metadata={"help": "Examples sampled when building."})
    consistency_heldout: int = field(default=0, metadata={"help": "Formats held out (drawn by seed) when building."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Paper: 1e-5 (LoRA r16/α32)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Records are nested; keep them whole."})

    def __post_init__(self) -> None:
        for name in ("cce_weight", "beta_jsd", "alpha_noncons"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("early_stopping_patience", "early_stopping_min_steps", "dev_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.collapse_threshold <= 1:
            raise ValueError(f"collapse_threshold must be in (0, 1], got {self.collapse_threshold}")
        if self.collapse_window < 1 or self.class_balance_examples < 1:
            raise ValueError(f"collapse_window ({self.collapse_window}) and class_balance_examples "
                             f"({self.class_balance_examples}) must be >= 1")
        if self.class_balance not in CLASS_BALANCE:
            raise ValueError(f"class_balance must be one of {CLASS_BALANCE}, got {self.class_balance!r}")
        if not 0 <= self.w_min <= self.w_max:
            raise ValueError(f"need 0 <= w_min <= w_max, got w_min={self.w_min}, w_max={self.w_max}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if self.format_key not in ("formats", "heldout_formats"):
            raise ValueError(f"format_key must be 'formats' or 'heldout_formats', got {self.format_key!r}")
        super().__post_init__()
        if self.early_stopping_patience and str(getattr(self.eval_strategy, "value", self.eval_strategy)) != "steps":
            raise ValueError("early_stopping_patience needs eval_strategy: steps (and eval_steps) to evaluate the "
                             f"dev loss during training, got eval_strategy={self.eval_strategy!r}")


class F2CCollator:
    """Tokenises every (example, format, choice) as prompt + " " + choice (lm-evaluation-harness pair encoding, the
    same as the eval backends), pads right, and records where each answer's tokens are predicted.

    Output: ``input_ids``/``attention_mask`` ``[B·K·C, T]``; ``answer_pos``/``answer_ids``/``answer_mask``
    ``[B·K·C, L]`` (logit index, target token, validity of each answer token); ``shape`` = (B, K, C).
    """

    def __init__(self, tokenizer: Any, *, max_length: int = 512, format_key: str = "formats") -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.format_key = format_key
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, examples: list[dict]) -> dict[str, Tensor]:
        seqs: list[tuple[list[int], int]] = []  # (ids, number of answer tokens at the end)
        shape = None
        for ex in examples:
            formats = ex[self.format_key]
            k, c = len(formats), len({len(f["choices"]) for f in formats})
            if c != 1:
                raise ValueError(f"example {ex.get('id')!r}: formats have different numbers of choices")
            kc = (k, len(formats[0]["choices"]))
            if shape is not None and kc != shape:
                raise ValueError(f"example {ex.get('id')!r} has (K, C) = {kc}, the batch {shape}: use batch size 1 "
                                 "or a set whose examples all render in the same formats")
            shape = kc
            for f in formats:
                for choice in f["choices"]:
                    ctx, cont = encode_pair(self.tokenizer, f["prompt"], " " + choice)
                    if not cont:
                        raise ValueError(f"example {ex.get('id')!r}, format {f['name']!r}: choice {choice!r} "
                                         "encodes to no tokens")
                    ids = (ctx + cont)[-self.max_length:]
                    seqs.append((ids, min(len(cont), len(ids) - 1)))
        assert shape is not None
        n, t = len(seqs), max(len(s) for s, _ in seqs)
        la = max(a for _, a in seqs)
        input_ids = torch.full((n, t), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, t), dtype=torch.long)
        pos = torch.zeros((n, la), dtype=torch.long)
        tgt = torch.zeros((n, la), dtype=torch.long)
        amask = torch.zeros((n, la), dtype=torch.long)
        for i, (ids, a) in enumerate(seqs):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attn[i, : len(ids)] = 1
            start = len(ids) - a
            pos[i, :a] = torch.arange(start - 1, len(ids) - 1)  # logits at p-1 predict token p
            tgt[i, :a] = torch.tensor(ids[start:])
            amask[i, :a] = 1
        return {"input_ids": input_ids, "attention_mask": attn, "answer_pos": pos, "answer_ids": tgt,
                "answer_mask": amask, "shape": torch.tensor([len(examples), *shape])}


def answer_logprobs(logits: Tensor, answer_pos: Tensor, answer_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Full-vocabulary log-distributions at the answer positions ``[N, L, V]`` and the answer tokens' log-probs
    ``[N, L]`` (float32, whatever the model's dtype)."""
    v = logits.shape[-1]
    sel = logits.gather(1, answer_pos.unsqueeze(-1).expand(-1, -1, v))
    logp = sel.float().log_softmax(-1)
    return logp, logp.gather(-1, answer_ids.unsqueeze(-1)).squeeze(-1)


def answer_forward(model: Any, inputs: dict[str, Tensor]) -> tuple[Any, Tensor, Tensor]:
    """One model call over all sequences that projects to the vocabulary only at answer positions.

    ``logits_to_keep`` (a 1-D index tensor, shared by the batch) gets the union of the batch's answer positions, so
    the [N, T, V] logits tensor — most of the memory and much of the time at V ≈ 50k — is never built. Returns
    (model outputs, answer-position log-distributions [N, L, V], answer-token log-probs [N, L])."""
    pos, mask = inputs["answer_pos"], inputs["answer_mask"].bool()
    keep = torch.unique(pos[mask])  # sorted
    outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False,
                    logits_to_keep=keep)
    local = torch.searchsorted(keep, pos).clamp_max(keep.numel() - 1)  # padded slots point anywhere; masked later
    logp, tok_lp = answer_logprobs(outputs.logits, local, inputs["answer_ids"])
    return outputs, logp, tok_lp


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
                   args: F2CConfig, *, quota: ClassQuota | None = None
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


class DevLossEarlyStopping(TrainerCallback):
    """The reference's unsupervised early stopping: a new lowest dev loss resets the count; an evaluation without one
    counts only from ``min_steps`` on; ``patience`` such evaluations stop training. (transformers'
    ``EarlyStoppingCallback`` has no minimum step count and needs ``load_best_model_at_end``.) The best value and
    the count restart when a run resumes."""

    def __init__(self, patience: int, min_steps: int, metric: str = "eval_loss") -> None:
        self.patience, self.min_steps, self.metric = patience, min_steps, metric
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0
        self.stopped_at: int | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        value = (metrics or {}).get(self.metric)
        if value is None:
            return
        if self.best is None or value < self.best:
            self.best, self.best_step, self.bad = float(value), state.global_step, 0
            return
        if state.global_step < self.min_steps:
            return
        self.bad += 1
        if self.bad >= self.patience:
            logger.warning("F2C early stopping at step %d: dev loss %.4f, no new best (%.4f at step %s) in %d "
                           "evaluations", state.global_step, value, self.best, self.best_step, self.bad)
            self.stopped_at = state.global_step
            control.should_training_stop = True


class F2CTrainer(Trainer):
    """Trainer for F²C. Logs ``f2c/cce``, ``f2c/align`` (w·KL), ``f2c/jsd`` (β_JSD·JSD among teachers),
    ``f2c/jsd_all`` (weighted JSD over all formats, examples without a split), ``f2c/skipped`` (share of examples
    without a strict majority), ``f2c/unanimous``, ``f2c/split``, ``f2c/flip_weight``, ``f2c/agreement`` (Fleiss P̄
    ×100 of the per-format predictions on the batch) and, per logging step, the class shares of the consensus
    pseudo-labels (``f2c/label_share_c{j}``) and of the model's per-format predictions (``f2c/pred_share_c{j}``).

    Collapse guard: when one class holds ≥ ``collapse_threshold`` of the last ``collapse_window`` per-format
    training predictions, a warning is logged (``f2c/collapse`` = 1 in that log entry, the event in
    ``collapse_events``) and, with ``stop_on_collapse``, training stops."""

    args: F2CConfig

    def __init__(self, model: Any = None, args: F2CConfig | None = None, data_collator: Any = None,
                 processing_class: Any = None, **kwargs: Any) -> None:
        if args is None or not isinstance(args, F2CConfig):
            raise TypeError("F2CTrainer needs an F2CConfig")
        if data_collator is None:
            if processing_class is None:
                raise ValueError("pass processing_class (the tokenizer) or a data_collator")
            data_collator = F2CCollator(processing_class, max_length=args.max_length, format_key=args.format_key)
        super().__init__(model=model, args=args, data_collator=data_collator, processing_class=processing_class,
                         **kwargs)
        self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean; let Trainer scale for accumulation
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._classes: dict[str, dict[str, Counter]] = {m: {"label": Counter(), "pred": Counter()}
                                                       for m in ("train", "eval")}
        self._n_classes = 0
        self._recent_preds: deque[int] = deque(maxlen=args.collapse_window)
        self.collapse_events: list[dict[str, Any]] = []
        self.quota: ClassQuota | None = None  # set by run() (or the caller) when class_balance == "quota"
        self.last_controls: list[F2CControls] = []

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        b, k, c = (int(x) for x in inputs["shape"])
        # The only model call of the step, over all B·K·C sequences at once.
        outputs, logp, tok_lp = answer_forward(model, inputs)
        mode = "train" if model.training else "eval"
        # The quota admits training pseudo-labels only; the dev loss is the paper's objective.
        loss, ctrls, stats = f2c_batch_loss(logp, tok_lp, inputs["answer_mask"], (b, k, c), self.args,
                                            quota=self.quota if mode == "train" else None)
        self.last_controls = ctrls
        m = self._metrics[mode]
        for key, value in stats.items():
            m[key].append(value)
        self._n_classes = max(self._n_classes, c)
        counts = self._classes[mode]
        for ct in ctrls:
            counts["pred"].update(ct.predictions)
            if not ct.skip:
                counts["label"][ct.label] += 1
            if mode == "train":
                self._recent_preds.extend(ct.predictions)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Tensor, None, None]:
        """The dev loss: the F²C loss without gradients (Trainer's default asks the model for labels we lack)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _collapse_check(self) -> dict[str, Any] | None:
        """The class holding ≥ collapse_threshold of the recent training predictions, once the window is full."""
        if len(self._recent_preds) < self._recent_preds.maxlen:
            return None
        cls, n = Counter(self._recent_preds).most_common(1)[0]
        share = n / len(self._recent_preds)
        if share < self.args.collapse_threshold:
            return None
        return {"step": self.state.global_step, "class": int(cls), "share": share, "window": len(self._recent_preds)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs or not any(k.startswith("eval_") for k in logs) else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for key, vals in self._metrics[mode].items():
            if vals:
                logs[prefix + key] = sum(vals) / len(vals)
        self._metrics[mode].clear()
        for kind, counts in self._classes[mode].items():
            if counts:
                for j, share in enumerate(class_shares(counts, self._n_classes)):
                    logs[f"{prefix}f2c/{kind}_share_c{j}"] = share
            counts.clear()
        event = self._collapse_check() if mode == "train" and "loss" in logs else None
        if event is not None:
            logs["f2c/collapse"] = 1.0
            self.collapse_events.append(event)
            logger.warning("F2C collapse guard at step %d: class %d holds %.0f%% of the last %d per-format "
                           "predictions (collapse_threshold %.2f)%s", event["step"], event["class"],
                           100 * event["share"], event["window"], self.args.collapse_threshold,
                           "; stopping (stop_on_collapse)" if self.args.stop_on_collapse else "")
        super().log(logs, start_time)
        if event is not None and self.args.stop_on_collapse:
            self.control.should_training_stop = True

    @torch.no_grad()
    def predicted_class_shares(self, examples: list[dict]) -> list[float]:
        """Share of each class among the model's per-format predictions on ``examples`` (no gold label read)."""
        model = self.model
        was_training = model.training
        model.eval()
        counts: Counter = Counter()
        n_classes = 0
        try:
            for ex in examples:
                batch = self._prepare_inputs(self.data_collator([ex]))
                b, k, c = (int(x) for x in batch["shape"])
                _, _, tok_lp = answer_forward(model, batch)
                ll = sequence_scores(tok_lp, batch["answer_mask"], length_normalize=self.args.length_normalize)
                counts.update(consensus_controls(ll.view(k, c), tau=self.args.tau, top_k=self.args.top_k,
                                                 w_min=self.args.w_min, w_max=self.args.w_max,
                                                 temperature=self.args.temperature).predictions)
                n_classes = max(n_classes, c)
        finally:
            model.train(was_training)
        return class_shares(counts, n_classes)


# -- recipe entry point ---------------------------------------------------------------------------------------------

CONFIG_CLASS = F2CConfig


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
    return rows


def load_consistency_set(path: str, args: F2CConfig, split: str = "train") -> list[dict]:
    """A consistency set (records with ``formats``), built first from raw SuperGLUE JSONL when
    ``args.consistency_templates`` is set (into the output dir; deterministic, so reruns rebuild the same file)."""
    if args.consistency_templates:
        from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency

        out = Path(args.output_dir) / f"consistency-{Path(path).stem}-{split}.jsonl"
        build_consistency(ConsistencyBuildConfig(
            data=path, templates=args.consistency_templates, output=str(out), split=split,
            n=args.consistency_examples, heldout=args.consistency_heldout, seed=args.seed))
        path = str(out)
    rows = _read_jsonl(path)
    for i, r in enumerate(rows, 1):
        if not isinstance(r.get(args.format_key), list) or not r[args.format_key]:
            raise ValueError(f"{path}:{i}: field {args.format_key!r}: missing or empty (build the set with "
                             "`alignkit build consistency`, or set consistency_templates)")
    return rows


def _dev_set(script_args: Any, args: F2CConfig, train: list[dict]) -> tuple[list[dict], list[dict] | None]:
    """(train, dev): the dev set is ``eval_dataset_path`` (split ``eval_split``, built like the training set when
    ``consistency_templates`` is set) or the last ``dev_examples`` training examples; None when neither is set."""
    if script_args.eval_dataset_path:
        if args.dev_examples:
            raise ValueError("set either eval_dataset_path or dev_examples, not both")
        dev = load_consistency_set(script_args.eval_dataset_path, args, script_args.eval_split)
        return train, dev[: script_args.max_eval_samples] if script_args.max_eval_samples else dev
    if args.dev_examples:
        if args.dev_examples >= len(train):
            raise ValueError(f"dev_examples ({args.dev_examples}) must be < the {len(train)} training examples")
        return train[: -args.dev_examples], train[-args.dev_examples:]
    return train, None


def run(script_args: Any, training_args: F2CConfig, model_args: Any, callbacks: list | None = None) -> dict:
    """Train F²C from a recipe (alignkit.train): ``script_args.dataset_path`` is a consistency set, or raw SuperGLUE
    JSONL with ``consistency_templates``; ``model_args`` a TRL ``ModelConfig`` (``use_peft`` for LoRA,
    ``load_in_4bit``/``load_in_8bit`` for QLoRA, ``attn_implementation``, ``model_revision``). A rerun into an output
    folder with a complete checkpoint resumes from the newest one (``resume_from_checkpoint``: a path or
    ``last``). Saves the model (or adapter), tokenizer and ``metrics.json`` to ``output_dir``; returns the metrics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from alignkit.models import resolve_model
    from alignkit.trainers.distributed import init_deepspeed_comm
    from alignkit.trainers.runner import (check_resume, fingerprint_callback, fingerprint_config, peak_memory,
                                          resolve_checkpoint, resolved_config, start_over)
    from alignkit.utils import atomic_write_json, stable_hash

    if script_args.on_invalid != "error":
        raise ValueError("on_invalid: F2C reads consistency sets strictly; only 'error' is supported")
    if getattr(script_args, "uses_hub_data", False):
        raise ValueError("dataset_name / dataset_mixture: F2C trains on a consistency set (dataset_path) only")
    quantization = get_quantization_config(model_args)
    if quantization is not None and not model_args.use_peft:
        raise ValueError("load_in_4bit/load_in_8bit train only adapters: set use_peft: true")
    if training_args.class_balance != "none" and training_args.deepspeed:
        raise ValueError("class_balance scores the base model outside the DeepSpeed engine; use DDP (or no "
                         "class_balance) with DeepSpeed")
    train = load_consistency_set(script_args.dataset_path, training_args, script_args.dataset_split or "train")
    if script_args.max_train_samples:
        train = train[: script_args.max_train_samples]
    train, dev = _dev_set(script_args, training_args, train)
    if training_args.early_stopping_patience and dev is None:
        raise ValueError("early_stopping_patience needs a dev set: set eval_dataset_path or dev_examples")
    if dev is not None and str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) == "no":
        raise ValueError("a dev set is given (eval_dataset_path or dev_examples) but eval_strategy is 'no': set "
                         "eval_strategy: steps and eval_steps, or drop the dev set")
    # Decide about resuming before any model is loaded, so a mismatch stops in seconds (same rules as F-DPO).
    out_dir = Path(training_args.output_dir)
    fp_config = fingerprint_config(resolved_config(script_args, training_args, model_args), stable_hash(train))
    checkpoint = None
    if getattr(script_args, "overwrite", False):
        if training_args.process_index == 0:
            gone = start_over(out_dir)
            if gone:
                logger.warning("overwrite: deleted %d checkpoint(s) in %s; starting over", len(gone), out_dir)
    else:
        checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, str(out_dir))
    if checkpoint:
        changes = check_resume(checkpoint, fp_config, force=getattr(script_args, "resume", False))
        if changes:
            logger.warning("resume: continuing from %s although its configuration differs:\n%s", checkpoint,
                           "\n".join(f"  {c}" for c in changes))
        logger.warning("resuming from %s", Path(checkpoint).name)
    init_deepspeed_comm()  # before any from_pretrained: ZeRO-3's zero.Init needs the comm group
    path = resolve_model(model_args.model_name_or_path)
    trust = bool(getattr(model_args, "trust_remote_code", False))
    revision = getattr(model_args, "model_revision", None)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust, revision=revision)
    dtype = getattr(model_args, "dtype", None)
    model_kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype) if dtype not in (None, "auto") else "auto",
                                    "trust_remote_code": trust, "revision": revision}
    if getattr(model_args, "attn_implementation", None):
        model_kwargs["attn_implementation"] = model_args.attn_implementation
    if quantization is not None:
        from accelerate import PartialState

        # bitsandbytes places the quantized weights at load time: each process on its own GPU.
        device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
        model_kwargs.update(quantization_config=quantization, device_map=device_map)
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quantization is not None:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=training_args.gradient_checkpointing)
        model = get_peft_model(model, peft_config)
    stopper = None
    callbacks = [*(callbacks or []), fingerprint_callback(fp_config)]
    if training_args.early_stopping_patience:
        stopper = DevLossEarlyStopping(training_args.early_stopping_patience, training_args.early_stopping_min_steps)
        callbacks.append(stopper)
    trainer = F2CTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=dev,
                         processing_class=tokenizer, callbacks=callbacks)
    base_shares = None
    if training_args.class_balance == "quota":
        # Measured before train(): a resumed run loads its checkpoint inside train(), so this is always the base.
        base_shares = trainer.predicted_class_shares(train[: training_args.class_balance_examples])
        trainer.quota = ClassQuota(base_shares)
        logger.warning("class_balance=quota (alignkit's addition, not F2C): base model class shares %s",
                       [round(x, 3) for x in base_shares])
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)

    metrics = {**result.metrics, "n_examples": len(train), "n_dev_examples": len(dev) if dev is not None else 0,
               "world_size": trainer.accelerator.num_processes, "global_step": trainer.state.global_step,
               "resumed_from": checkpoint, "collapse_events": trainer.collapse_events,
               "early_stopping": None if stopper is None else {
                   "stopped_at": stopper.stopped_at, "best_dev_loss": stopper.best, "best_step": stopper.best_step},
               "class_balance": training_args.class_balance, "base_class_shares": base_shares,
               "quota_counts": None if trainer.quota is None else trainer.quota.counts, **peak_memory()}
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
        atomic_write_json(Path(training_args.output_dir) / "metrics.json",
                          {**metrics, "log_history": trainer.state.log_history})
    return {**metrics, "output_dir": training_args.output_dir}
