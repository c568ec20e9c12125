"""``F2CConfig``: ``TrainingArguments`` plus the F²C hyper-parameters (Hejabi et al., arXiv 2510.14242) and where
the consistency set comes from."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

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
