"""The sweep's configuration: the methods it can train and the YAML fields (`NoiseSweepConfig`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
_METHOD_RE = re.compile(r"^(dpo|ipo|fdpo|dpo\+flip|(cdpo|rdpo)@(true|[0-9.]+))$")


# -- methods ------------------------------------------------------------------------------------------------------
def check_method(name: str) -> None:
    m = _METHOD_RE.match(name)
    if not m:
        raise ValueError(f"unknown method {name!r}: use dpo, ipo, fdpo, dpo+flip, cdpo@true, rdpo@true, cdpo@EPS or "
                         "rdpo@EPS (EPS a number, e.g. cdpo@0.1)")
    if m.group(3) and m.group(3) != "true":
        e = float(m.group(3))
        if not 0.0 < e < 0.5:
            raise ValueError(f"method {name!r}: the loss ε must be in (0, 0.5)")


def reads_flags(method: str) -> bool:
    """True when the method trains on the hallucination flags (so judge noise δ changes its training data)."""
    return method in ("fdpo", "dpo+flip")


def method_keys(method: str, eps: float, fdpo_lambda: float) -> dict[str, Any] | None:
    """Recipe keys of ``method`` at injected noise ``eps``; None when the method is plain DPO there (``cdpo@true``
    and ``rdpo@true`` at ε = 0), so the DPO run stands in for it. ``apply_flip`` is always explicit."""
    if method == "dpo":
        return {"loss_type": "dpo", "apply_flip": False}
    if method == "ipo":
        return {"loss_type": "ipo", "apply_flip": False}
    if method == "fdpo":
        return {"loss_type": "fdpo", "fdpo_lambda": fdpo_lambda, "apply_flip": True}
    if method == "dpo+flip":  # the F-DPO loss with λ = 0 is the DPO loss; the flip still runs
        return {"loss_type": "fdpo", "fdpo_lambda": 0.0, "apply_flip": True}
    loss, _, value = method.partition("@")
    smoothing = eps if value == "true" else float(value)
    if smoothing == 0.0:
        return None
    return {"loss_type": loss, "label_smoothing": smoothing, "apply_flip": False}


def method_slug(method: str) -> str:
    return method.replace("@", "_eps").replace("+", "_")


# -- configuration --------------------------------------------------------------------------------------------------
@dataclass
class CalibrationConfig:
    learning_rates: list[float] = field(default_factory=lambda: [1e-4, 3e-4],
                                        metadata={"help": "learning rates tried for DPO at ε = 0"})
    steps: list[int] = field(default_factory=lambda: [16, 32], metadata={"help": "max_steps values tried"})
    seed: int | None = field(default=None, metadata={"help": "data/training seed of the calibration (default: the "
                                                                 "first sweep seed)"})

    def __post_init__(self) -> None:
        if not self.learning_rates or any(not (isinstance(v, (int, float)) and v > 0) for v in self.learning_rates):
            raise ValueError(f"calibration.learning_rates must be positive numbers, got {self.learning_rates}")
        if not self.steps or any(not (isinstance(v, int) and v > 0) for v in self.steps):
            raise ValueError(f"calibration.steps must be positive integers, got {self.steps}")


@dataclass
class DegeneracyConfig:
    """A run is degenerate when its held-out answers break any of these bounds (base = the untrained model)."""

    max_empty: float = field(default=0.02, metadata={"help": "largest share of empty answers"})
    max_repeated: float = field(default=0.10,
                                metadata={"help": "largest share of looping answers (a word 4-gram twice)"})
    min_distinct2_ratio: float = field(default=0.8, metadata={"help": "distinct-2 at least this × the base's"})
    length_ratio: list[float] = field(default_factory=lambda: [0.5, 2.0],
                                      metadata={"help": "mean answer length within [lo, hi] × the base's"})

    def __post_init__(self) -> None:
        if len(self.length_ratio) != 2 or not 0 < self.length_ratio[0] <= 1 <= self.length_ratio[1]:
            raise ValueError(f"degeneracy.length_ratio must be [lo <= 1, hi >= 1], got {self.length_ratio}")


@dataclass
class NoiseSweepConfig:
    output_dir: str = field(default="runs/noise-sweep", metadata={"help": "where data, runs and the report go"})
    record_dir: str | None = field(default=None, metadata={
        "help": "where the small per-run results go (log-probabilities, answers, judgements, training metrics; "
                "no adapters), keyed by training recipe + data + evaluation settings: commit it to resume the sweep "
                "on another machine or rebuild its report"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "base model (name, dir or hub id)"})
    base_recipe: str = field(default="recipes/smollm2-135m/dpo.yaml", metadata={
        "help": "one training recipe for every method; each method's loss keys go on top, then `overrides`"})
    methods: list[str] = field(default_factory=lambda: ["dpo", "cdpo@true", "cdpo@0.1", "rdpo@true", "rdpo@0.1",
                                                        "ipo", "fdpo", "dpo+flip"],
                               metadata={"help": "dpo, ipo, fdpo, dpo+flip, cdpo@true|EPS, rdpo@true|EPS"})
    eps: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4],
                             metadata={"help": "order-noise levels: share of pairs whose chosen/rejected are swapped"})
    delta: list[float] = field(default_factory=lambda: [0.0, 0.2],
                               metadata={"help": "judge-noise levels: probability each h_w/h_l flag is flipped"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "data + training seeds (>= 3)"})
    n_train: int = field(default=128, metadata={"help": "training pairs per run"})
    n_val: int = field(default=300, metadata={"help": "validation pairs/questions (calibration only)"})
    n_test: int = field(default=500, metadata={"help": "held-out clean pairs for metric (a)"})
    n_generate: int = field(default=200, metadata={"help": "held-out questions answered for (b) and (c)"})
    n_val_generate: int = field(default=100, metadata={"help": "validation questions answered during calibration"})
    fdpo_lambda: float = field(default=10.0, metadata={"help": "F-DPO margin λ (dpo+flip uses 0)"})
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig,
                                           metadata={"help": "the lr × steps grid tried for DPO at ε = 0"})
    degeneracy: DegeneracyConfig = field(default_factory=DegeneracyConfig, metadata={"help": "degeneracy bounds"})
    overrides: dict[str, Any] = field(default_factory=dict,
                                      metadata={"help": "recipe keys applied to every run (batch, lora, ...); not "
                                                        "learning_rate/max_steps, which calibration picks"})
    backend: str = field(default="hf", metadata={"help": "eval backend: hf or vllm (vllm needs enable_lora)"})
    backend_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "eval backend options"})
    max_new_tokens: int = field(default=40, metadata={"help": "generation length of the held-out answers"})
    workers: int = field(default=1, metadata={
        "help": "processes that train and score the sweep's runs in parallel after the calibration and the base "
                "evaluations, each with an equal share of the cores. On a 2-core CPU 2 workers of 1 thread did "
                "~1.35x the work of one 2-thread process (measured 2026-12-03): a small model's many small "
                "operations leave one process's second core idle. Results agree to float rounding"})
    n_resamples: int = field(default=2000, metadata={"help": "bootstrap resamples"})
    confidence: float = field(default=0.95, metadata={"help": "interval level"})

    def __post_init__(self) -> None:
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)
        if isinstance(self.degeneracy, dict):
            self.degeneracy = DegeneracyConfig(**self.degeneracy)
        if not self.methods:
            raise ValueError("methods must not be empty")
        for m in self.methods:
            check_method(m)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {self.methods}")
        if any("@true" in m for m in self.methods) and "dpo" not in self.methods and 0.0 in self.eps:
            raise ValueError("cdpo@true/rdpo@true at ε = 0 are plain DPO and reuse the dpo run: add dpo to methods")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and not empty, got {self.seeds}")
        if not self.eps or not self.delta:
            raise ValueError("eps and delta must not be empty (use [0.0] for no noise)")
        bad = [e for e in self.eps if not 0.0 <= e < 0.5]
        if bad:
            raise ValueError(f"eps values must be in [0, 0.5), got {bad}")
        bad = [d for d in self.delta if not 0.0 <= d < 0.5]
        if bad:
            raise ValueError(f"delta values must be in [0, 0.5), got {bad}")
        for name in ("n_train", "n_val", "n_test", "n_generate", "n_val_generate", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_generate > self.n_test or self.n_val_generate > self.n_val:
            raise ValueError("n_generate must be <= n_test and n_val_generate <= n_val (answers come from those items)")
        if self.fdpo_lambda < 0:
            raise ValueError(f"fdpo_lambda must be >= 0, got {self.fdpo_lambda}")
        picked = sorted({"learning_rate", "max_steps"} & set(self.overrides))
        if picked:
            raise ValueError(f"overrides may not set {picked}: calibration picks them (give a one-value grid in "
                             "`calibration` to fix them)")
        if self.backend not in ("vllm", "hf"):
            raise ValueError(f"backend must be vllm or hf, got {self.backend!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0 < self.confidence < 1 or self.n_resamples < 100:
            raise ValueError("confidence must be in (0, 1) and n_resamples >= 100")
        if not repo_path(self.base_recipe).is_file():
            raise ValueError(f"base_recipe not found: {self.base_recipe}")

    @property
    def calibration_seed(self) -> int:
        return self.seeds[0] if self.calibration.seed is None else self.calibration.seed


def repo_path(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_file() or p.is_absolute() else REPO / p
