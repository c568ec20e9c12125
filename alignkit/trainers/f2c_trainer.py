"""``F2CTrainer``: Flip-Flop Consistency training (Hejabi et al., arXiv 2510.14242), with its collator.

Every batch holds B examples, each posed in K prompt formats over C answer choices. One padded forward runs over all
B·K·C (format, choice) sequences; the controls (pseudo-label, teachers/students, flip weight) come from that
forward's detached log-probabilities, and the loss (:func:`alignkit.losses.f2c.f2c_batch_loss`) acts on the consensus
answer only. No gold label is read.

The number of forward/backward calls per step never depends on the data: an all-skipped batch still returns
``0 · (graph-connected sum)``, so DeepSpeed ZeRO-3 ranks stay in lock-step.

Besides the paper's method (the default) the trainer has two guards against collapsing onto one answer class:
the reference's unsupervised dev-loss early stopping (``early_stopping_patience``) and alignkit's own collapse
guard (per-class shares logged at every logging step, ``collapse_threshold``/``stop_on_collapse``) plus an optional
class-balance control (``class_balance: quota``, off by default; not part of F²C). The configuration is
:class:`alignkit.trainers.f2c_config.F2CConfig`; the recipe entry :func:`run` goes through
:func:`alignkit.trainers.runner.run_training`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, deque
from typing import Any

import torch
from torch import Tensor
from transformers import Trainer, TrainerCallback

from alignkit.inference import encode_pair
from alignkit.losses.f2c import (
    ClassQuota,
    F2CControls,
    answer_logprobs,
    class_shares,
    consensus_controls,
    f2c_batch_loss,
    sequence_scores,
)
from alignkit.trainers.f2c_config import F2CConfig

logger = logging.getLogger(__name__)
CONFIG_CLASS = F2CConfig


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
        self.quota: ClassQuota | None = None  # set by run_training (or the caller) for class_balance: quota
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


def run(script_args: Any, training_args: F2CConfig, model_args: Any, callbacks: list | None = None) -> dict:
    """Train F²C from a recipe (alignkit.train): ``script_args.dataset_path`` is a consistency set, or raw SuperGLUE
    JSONL with ``consistency_templates``; ``model_args`` a TRL ``ModelConfig`` (``use_peft`` for LoRA,
    ``load_in_4bit``/``load_in_8bit`` for QLoRA, ``attn_implementation``, ``model_revision``). See
    :func:`alignkit.trainers.runner.run_training` (resume, output folder, metrics.json)."""
    from alignkit.trainers.runner import run_training

    return run_training(script_args, training_args, model_args, callbacks=callbacks)
