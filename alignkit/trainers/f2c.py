"""``F2CTrainer``: Flip-Flop Consistency training (Hejabi et al., arXiv 2510.14242; methods.md §3).

Every batch holds B examples, each posed in K prompt formats over C answer choices. One padded forward runs over all
B·K·C (format, choice) sequences; the controls (pseudo-label, teachers/students, flip weight) come from that
forward's detached log-probabilities, and the loss acts on the consensus answer only. No gold label is read.

The number of forward/backward calls per step never depends on the data: an all-skipped batch still returns
``0 · (graph-connected sum)``, so DeepSpeed ZeRO-3 ranks stay in lock-step.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import Trainer, TrainingArguments

from alignkit.evals.backends import encode_pair
from alignkit.losses.f2c import F2CControls, cce_loss, consensus_controls, teacher_jsd, teacher_student_kl


@dataclass
class F2CConfig(TrainingArguments):
    """Configuration for :class:`F2CTrainer`: ``TrainingArguments`` plus the F²C hyper-parameters (defaults: the
    paper's RTE setting) and where the consistency set comes from."""

    cce_weight: float = field(default=0.4, metadata={"help": "Weight of the consensus cross-entropy (CCE) term."})
    tau: float = field(default=1.4, metadata={"help": "τ: all formats agree and median margin ≥ τ -> strong "
                                                      "unanimity (CCE + teacher JSD only)."})
    top_k: int = field(default=3, metadata={"help": "At most this many teachers: k = min(top_k, |majority| - 1)."})
    w_min: float = field(default=0.05, metadata={"help": "Lower bound of the flip weight w."})
    w_max: float = field(default=0.35, metadata={"help": "Upper bound of the flip weight w."})
    temperature: float = field(default=2.2, metadata={"help": "T in w = w_min + (w_max - w_min)·σ(Δ/T)."})
    beta_jsd: float = field(default=0.35, metadata={"help": "Weight of the JSD among teachers."})
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
        if self.cce_weight < 0 or self.beta_jsd < 0:
            raise ValueError(f"cce_weight ({self.cce_weight}) and beta_jsd ({self.beta_jsd}) must be >= 0")
        if not 0 <= self.w_min <= self.w_max:
            raise ValueError(f"need 0 <= w_min <= w_max, got w_min={self.w_min}, w_max={self.w_max}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if self.format_key not in ("formats", "heldout_formats"):
            raise ValueError(f"format_key must be 'formats' or 'heldout_formats', got {self.format_key!r}")
        super().__post_init__()


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


def fleiss_p_i(predictions: tuple[int, ...]) -> float:
    """One example's Fleiss agreement P_i = (Σ_j n_j² − K) / (K(K − 1)) (1.0 for K = 1)."""
    k = len(predictions)
    if k < 2:
        return 1.0
    counts = [predictions.count(c) for c in set(predictions)]
    return (sum(n * n for n in counts) - k) / (k * (k - 1))


def f2c_batch_loss(logp: Tensor, tok_lp: Tensor, mask: Tensor, shape: tuple[int, int, int],
                   args: F2CConfig) -> tuple[Tensor, list[F2CControls], dict[str, float]]:
    """The F²C loss of one batch from its answer-position log-distributions ``logp`` ``[B·K·C, L, V]``, answer-token
    log-probs ``tok_lp`` and ``mask`` ``[B·K·C, L]`` (rows ordered example, format, choice). Controls come from the
    detached scores; the loss is the mean over examples with a strict majority of CCE + w·KL + β_JSD·JSD."""
    b, k, c = shape
    with torch.no_grad():
        ll = sequence_scores(tok_lp.detach(), mask, length_normalize=args.length_normalize).view(b, k, c)
        ctrls = [consensus_controls(ll[i], tau=args.tau, top_k=args.top_k, w_min=args.w_min, w_max=args.w_max,
                                    temperature=args.temperature) for i in range(b)]
    # Graph-connected zero: keeps backward (and ZeRO-3's gathers) identical on ranks whose batch is all skipped.
    loss = tok_lp.sum() * 0.0
    cce_sum = align_sum = jsd_sum = 0.0
    kept = 0
    for i, ct in enumerate(ctrls):
        if ct.skip:
            continue
        kept += 1
        rows = [i * k * c + f * c + ct.label for f in range(k)]
        ex = cce_loss(tok_lp[rows], mask[rows], cce_weight=args.cce_weight)
        cce_sum += ex.item()
        t_rows = [rows[f] for f in ct.teachers]
        if ct.students and ct.weight > 0:
            s_rows = [rows[f] for f in ct.students]
            ex_align = ct.weight * teacher_student_kl(logp[t_rows], mask[t_rows], logp[s_rows], mask[s_rows])
            ex = ex + ex_align
            align_sum += ex_align.item()
        if len(t_rows) >= 2 and args.beta_jsd > 0:
            ex_jsd = args.beta_jsd * teacher_jsd(logp[t_rows], mask[t_rows])
            ex = ex + ex_jsd
            jsd_sum += ex_jsd.item()
        loss = loss + ex
    if kept:
        loss = loss / kept
    stats = {"f2c/skipped": 1.0 - kept / b,
             "f2c/agreement": 100.0 * sum(fleiss_p_i(ct.predictions) for ct in ctrls) / b}
    if kept:
        stats.update({"f2c/cce": cce_sum / kept, "f2c/align": align_sum / kept, "f2c/jsd": jsd_sum / kept,
                      "f2c/unanimous": sum(ct.unanimous for ct in ctrls) / kept,
                      "f2c/flip_weight": sum(ct.weight for ct in ctrls if not ct.skip) / kept})
    return loss, ctrls, stats


class F2CTrainer(Trainer):
    """Trainer for F²C. Logs ``f2c/cce``, ``f2c/align`` (w·KL), ``f2c/jsd``, ``f2c/skipped`` (share of examples
    without a strict majority), ``f2c/unanimous``, ``f2c/flip_weight`` and ``f2c/agreement`` (Fleiss P̄ ×100 of the
    per-format predictions on the batch)."""

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
        self.last_controls: list[F2CControls] = []

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        b, k, c = (int(x) for x in inputs["shape"])
        # The only model call of the step, over all B·K·C sequences at once.
        outputs, logp, tok_lp = answer_forward(model, inputs)
        loss, ctrls, stats = f2c_batch_loss(logp, tok_lp, inputs["answer_mask"], (b, k, c), self.args)
        self.last_controls = ctrls
        m = self._metrics["train" if model.training else "eval"]
        for key, value in stats.items():
            m[key].append(value)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs or not any(k.startswith("eval_") for k in logs) else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for key, vals in self._metrics[mode].items():
            if vals:
                logs[prefix + key] = sum(vals) / len(vals)
        self._metrics[mode].clear()
        super().log(logs, start_time)


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


def run(script_args: Any, training_args: F2CConfig, model_args: Any, callbacks: list | None = None) -> dict:
    """Train F²C from a recipe (alignkit.train): ``script_args.dataset_path`` is a consistency set, or raw SuperGLUE
    JSONL with ``consistency_templates``; ``model_args`` a TRL ``ModelConfig`` (``use_peft`` for LoRA). Saves the
    model (or adapter), tokenizer and ``metrics.json`` to ``output_dir``; returns the train metrics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config

    from alignkit.models import resolve_model
    from alignkit.trainers.distributed import init_deepspeed_comm
    from alignkit.utils import atomic_write_json

    init_deepspeed_comm()  # before any from_pretrained: ZeRO-3's zero.Init needs the comm group
    path = resolve_model(model_args.model_name_or_path)
    trust = bool(getattr(model_args, "trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    dtype = getattr(model_args, "dtype", None)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype) if dtype not in (None, "auto") else "auto", trust_remote_code=trust)
    train = load_consistency_set(script_args.dataset_path, training_args, script_args.dataset_split or "train")
    if script_args.max_train_samples:
        train = train[: script_args.max_train_samples]
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    trainer = F2CTrainer(model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
                         callbacks=callbacks)
    result = trainer.train()
    trainer.save_model(training_args.output_dir)
    from alignkit.trainers.runner import peak_memory

    metrics = {**result.metrics, "n_examples": len(train), "world_size": trainer.accelerator.num_processes,
               **peak_memory()}
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
        atomic_write_json(Path(training_args.output_dir) / "metrics.json",
                          {**metrics, "log_history": trainer.state.log_history})
    return {**metrics, "output_dir": training_args.output_dir}
