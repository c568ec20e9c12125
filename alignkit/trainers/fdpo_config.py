"""``FDPOConfig``: TRL's ``DPOConfig`` plus the F-DPO fields (methods.md §1–2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trl import DPOConfig

# Our loss names, and the TRL names accepted as aliases so TRL-style recipes keep working.
PAIR_LOSSES = ("dpo", "fdpo", "cdpo", "rdpo", "ipo")
LOSS_ALIASES = {"sigmoid": "dpo", "robust": "rdpo"}
# Losses whose formula reads the per-response hallucination flags.
FLAG_LOSSES = ("fdpo",)
# Losses whose formula reads ε (`label_smoothing`), with its admissible range (low, high, high included?).
EPS_LOSSES = {"cdpo": (0.0, 0.5, True), "rdpo": (0.0, 0.5, False)}


def normalise_loss_type(loss_type: Any) -> list[str]:
    """``loss_type`` as a list of alignkit names (a single string is one loss; TRL aliases are mapped)."""
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type or [])
    return [LOSS_ALIASES.get(t, t) for t in types]


def training_problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, problem)`` for the ``TrainingArguments`` values every alignkit trainer shares that would only fail
    (or silently do something else) deep inside a worker: a non-positive learning rate, batch size or step count.
    ``v`` maps field names to values (defaults filled in); it is read, never changed."""
    out: list[tuple[str, str]] = []
    lr = v.get("learning_rate")
    if lr is not None and not lr > 0:
        out.append(("learning_rate", f"must be > 0, got {lr}"))
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if v.get(name) is not None and not v[name] >= 1:
            out.append((name, f"must be >= 1, got {v[name]}"))
    steps = v.get("max_steps", -1)
    if steps is not None and (steps == 0 or steps < -1):
        # transformers reads max_steps <= 0 as "train num_train_epochs epochs": 0 would silently train full epochs
        out.append(("max_steps", f"must be > 0 (or -1 to train `num_train_epochs` epochs), got {steps}"))
    elif steps == -1 and v.get("num_train_epochs") is not None and not v["num_train_epochs"] > 0:
        out.append(("num_train_epochs", f"must be > 0 when max_steps is -1, got {v['num_train_epochs']}"))
    if v.get("push_to_hub"):  # the repo id, checked before launch rather than at the push after training
        from pathlib import Path

        from huggingface_hub.utils import HFValidationError, validate_repo_id

        key = "hub_model_id" if v.get("hub_model_id") else "output_dir"
        repo = v.get("hub_model_id") or Path(v.get("output_dir") or ".").absolute().name
        try:
            validate_repo_id(repo)
        except HFValidationError as exc:
            out.append((key, f"push_to_hub: {repo!r} is not a hub repo id (set hub_model_id: user/name): {exc}"))
    return out


def fdpo_problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, problem)`` for the F-DPO-family values of a (partial) FDPOConfig mapping: loss names, β, λ, ε, the
    NLL weight and the TRL options the ``compute_loss`` override would silently ignore. Shared by
    :meth:`FDPOConfig.__post_init__` and the recipe check, which adds the recipe's file and line."""
    out: list[tuple[str, str]] = []
    types = normalise_loss_type(v.get("loss_type", ["fdpo"]))
    unknown = [t for t in types if t not in (*PAIR_LOSSES, "sft")]
    pair = [t for t in types if t in PAIR_LOSSES]
    if unknown:
        out.append(("loss_type", f"unsupported loss_type {unknown}; choose from {list(PAIR_LOSSES)} (+ 'sft')"))
    elif len(pair) != 1:
        out.append(("loss_type", f"loss_type needs exactly one pairwise loss from {list(PAIR_LOSSES)}, got {pair}"))
    beta = v.get("beta", 0.1)
    if not beta > 0:
        out.append(("beta", f"β must be > 0, got {beta} (β = 0 makes every DPO-family loss constant)"))
    lam = v.get("fdpo_lambda", 10.0)
    if not lam >= 0:
        out.append(("fdpo_lambda", f"fdpo_lambda (λ) must be >= 0, got {lam}"))
    sft = v.get("sft_weight", 0.0)
    if not sft >= 0:
        out.append(("sft_weight", f"sft_weight must be >= 0, got {sft}"))
    if sft > 0 and "sft" in types:
        out.append(("sft_weight", "set the NLL weight either with sft_weight or with 'sft' in loss_type, not both"))
    eps = v.get("label_smoothing", 0.0)
    if len(pair) == 1 and pair[0] in EPS_LOSSES:
        low, high, closed = EPS_LOSSES[pair[0]]
        if not (low < eps <= high if closed else low < eps < high):
            interval = f"(0, {high}]" if closed else f"(0, {high})"
            extra = " (ε = 0 is plain DPO: use loss_type dpo)" if eps == 0 else ""
            out.append(("label_smoothing", f"{pair[0]} needs label_smoothing (ε) in {interval}, got {eps}{extra}"))
    elif len(pair) == 1 and eps:
        out.append(("label_smoothing", f"label_smoothing is ε of cdpo/rdpo; loss_type {pair[0]} ignores it "
                                       f"(got {eps}): remove it or pick cdpo/rdpo"))
    if v.get("ld_alpha") is not None or v.get("f_divergence_type", "reverse_kl") != "reverse_kl" \
            or v.get("use_weighting"):
        field_name = next(k for k, bad in (("ld_alpha", v.get("ld_alpha") is not None),
                                           ("f_divergence_type",
                                            v.get("f_divergence_type", "reverse_kl") != "reverse_kl"),
                                           ("use_weighting", bool(v.get("use_weighting")))) if bad)
        out.append((field_name, "FDPOTrainer supports the reverse-KL DPO family only: leave ld_alpha, "
                                "f_divergence_type and use_weighting at their defaults"))
    if v.get("use_liger_kernel"):
        # TRL wires Liger into its own loss path; FDPOTrainer.compute_loss replaces that path, so it would be ignored
        out.append(("use_liger_kernel", "not supported by FDPOTrainer (its compute_loss bypasses the Liger path); "
                                        "leave use_liger_kernel false"))
    return out


@dataclass
class FDPOConfig(DPOConfig):
    """Configuration for :class:`~alignkit.trainers.FDPOTrainer`.

    Every ``DPOConfig`` field keeps its TRL meaning. ``loss_type`` takes alignkit's names (``dpo``, ``fdpo``,
    ``cdpo``, ``rdpo``, ``ipo``; TRL's ``sigmoid``/``robust`` are aliases) plus TRL's ``sft`` (NLL on the chosen
    answer), combined with ``loss_weights`` exactly as in TRL. ``label_smoothing`` is ε for cdpo and rdpo.
    """

    loss_type: list[str] = field(
        default_factory=lambda: ["fdpo"],
        metadata={"help": "Pairwise loss (one of dpo, fdpo, cdpo, rdpo, ipo; TRL's sigmoid/robust are aliases), "
                          "optionally followed by 'sft' for an NLL term on the chosen answer; weighted by "
                          "`loss_weights`."},
    )
    fdpo_lambda: float = field(
        default=10.0,
        metadata={"help": "λ of F-DPO: pairs whose rejected answer is hallucinated and chosen is not (Δh = 1) must "
                          "win by an extra margin λ. 0 gives plain DPO. Paper sweep {0..100}, README example 10."},
    )
    apply_flip: bool | None = field(
        default=None,
        metadata={"help": "Run the F-DPO label flip (swap exactly the pairs with h_w=1, h_l=0, whatever their "
                          "`flipped` says) when the dataset is prepared. Unset: on for loss_type fdpo only, so a "
                          "dpo/cdpo/rdpo/ipo baseline trains on the data as labelled unless the recipe says true."},
    )
    reuse_ref_logps: bool = field(
        default=False,
        metadata={"help": "Keep each batch's reference log-probs in memory, keyed by the exact batch tensors and the "
                          "reference's name, dtype and settings, and reuse them in later trainings of the same process "
                          "(a sweep whose runs see identical batches: same rows, seed and batch size). The result is "
                          "bit-identical; it assumes a reference name stands for the same frozen weights within the "
                          "process (true of a hub or local checkpoint). Off by default."},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an NLL term on the chosen answer (TRL's 'sft' loss, RPO's alpha) added to the "
                          "pairwise loss; a shortcut for appending 'sft' to `loss_type`. 0 disables it."},
    )
    train_set_rewards: bool = field(
        default=False,
        metadata={"help": "After training, measure the reward accuracy and margin over the whole training set (one "
                          "extra no-grad pass over it) and write them to metrics.json as `train_set_rewards`."},
    )

    @staticmethod
    def value_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Out-of-range values as ``(field, problem)``; the recipe check reports them with file and line."""
        return training_problems(values) + fdpo_problems(values)

    def __post_init__(self):
        self.loss_type = normalise_loss_type(self.loss_type)
        problems = self.value_problems(vars(self))
        if problems:
            name, problem = problems[0]
            raise ValueError(f"field {name}: {problem}")
        if self.apply_flip is None:
            # the flip is part of F-DPO; a baseline flips only when asked (resolved here, so the saved config says it)
            self.apply_flip = self.pair_loss == "fdpo"
        if self.sft_weight > 0:
            weights = list(self.loss_weights) if self.loss_weights else [1.0] * len(self.loss_type)
            self.loss_type = [*self.loss_type, "sft"]
            self.loss_weights = [*weights, self.sft_weight]
            self.sft_weight = 0.0  # folded into loss_type, so a resolved config re-parses to the same run
        if self.bf16 is None and not self.fp16:
            # TRL defaults to bf16 everywhere; on a machine without CUDA keep fp32 (bf16 needs use_cpu there and is
            # slow on most CPUs). An explicit bf16 in the recipe wins.
            import torch

            self.bf16 = bool(torch.cuda.is_available())
        super().__post_init__()

    @property
    def pair_loss(self) -> str:
        """The pairwise loss in ``loss_type`` (there is exactly one)."""
        return next(t for t in self.loss_type if t in PAIR_LOSSES)
