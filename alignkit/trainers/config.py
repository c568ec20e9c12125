"""``FDPOConfig``: TRL's ``DPOConfig`` plus the F-DPO fields (methods.md §1–2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

# Our loss names, and the TRL names accepted as aliases so TRL-style recipes keep working.
PAIR_LOSSES = ("dpo", "fdpo", "cdpo", "rdpo", "ipo")
LOSS_ALIASES = {"sigmoid": "dpo", "robust": "rdpo"}
# Losses whose formula reads the per-response hallucination flags.
FLAG_LOSSES = ("fdpo",)


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
    apply_flip: bool = field(
        default=True,
        metadata={"help": "Run the F-DPO label flip (swap pairs with h_w=1, h_l=0) when the dataset is prepared, "
                          "unless every row already carries `flipped`."},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an NLL term on the chosen answer (TRL's 'sft' loss, RPO's alpha) added to the "
                          "pairwise loss; a shortcut for appending 'sft' to `loss_type`. 0 disables it."},
    )

    def __post_init__(self):
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        self.loss_type = [LOSS_ALIASES.get(t, t) for t in self.loss_type]
        if self.sft_weight < 0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight}")
        if self.sft_weight > 0:
            if "sft" in self.loss_type:
                raise ValueError("set the NLL weight either with sft_weight or with 'sft' in loss_type, not both")
            weights = list(self.loss_weights) if self.loss_weights else [1.0] * len(self.loss_type)
            self.loss_type = [*self.loss_type, "sft"]
            self.loss_weights = [*weights, self.sft_weight]
            self.sft_weight = 0.0  # folded into loss_type, so a resolved config re-parses to the same run
        unknown = [t for t in self.loss_type if t not in (*PAIR_LOSSES, "sft")]
        if unknown:
            raise ValueError(f"unsupported loss_type {unknown}; choose from {list(PAIR_LOSSES)} (+ 'sft')")
        pair = [t for t in self.loss_type if t in PAIR_LOSSES]
        if len(pair) != 1:
            raise ValueError(f"loss_type needs exactly one pairwise loss from {list(PAIR_LOSSES)}, got {pair}")
        if self.fdpo_lambda < 0:
            raise ValueError(f"fdpo_lambda must be >= 0, got {self.fdpo_lambda}")
        if pair[0] == "cdpo" and not 0.0 <= self.label_smoothing <= 0.5:
            raise ValueError(f"cdpo needs label_smoothing (ε) in [0, 0.5], got {self.label_smoothing}")
        if pair[0] == "rdpo" and not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"rdpo needs label_smoothing (ε) in [0, 0.5), got {self.label_smoothing}")
        if self.ld_alpha is not None or self.f_divergence_type != "reverse_kl" or self.use_weighting:
            raise ValueError("FDPOTrainer supports the reverse-KL DPO family only: leave ld_alpha, "
                             "f_divergence_type and use_weighting at their defaults")
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
