"""The noise-robustness experiment: hallucination rate vs injected preference-label noise ε, per method.

For each seed: build clean factuality-labelled fact-world pairs (every pair ordered, chosen factual), then for each
ε ∈ ``eps`` swap chosen/rejected on a seeded fraction ε of the pairs (:func:`alignkit.data.inject_noise`; the
hallucination flags travel with their responses, as they do when annotators misorder a pair that a judge labelled).
Each method (DPO, cDPO, rDPO, F-DPO) trains on the same noisy data with the same budget from its recipe in
``recipe_dir``; every trained model is evaluated on the same held-out items (reference judge). The report plots the
hallucination rate against ε per method, mean over seeds with the min–max range over seeds as the interval.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignkit.utils import atomic_path, atomic_write_json, atomic_write_text, stable_hash

REPO = Path(__file__).resolve().parents[2]
# The loss keys of each method when one base recipe serves them all (ε of cDPO/rDPO = 0.1; F-DPO λ = 10, the
# paper's README example).
METHOD_KEYS: dict[str, dict[str, Any]] = {
    "dpo": {"loss_type": "dpo", "apply_flip": False},
    "cdpo": {"loss_type": "cdpo", "label_smoothing": 0.1, "apply_flip": False},
    "rdpo": {"loss_type": "rdpo", "label_smoothing": 0.1, "apply_flip": False},
    "ipo": {"loss_type": "ipo", "apply_flip": False},
    "fdpo": {"loss_type": "fdpo", "fdpo_lambda": 10.0, "apply_flip": True},
}


@dataclass
class NoiseSweepConfig:
    output_dir: str = field(default="runs/noise-sweep", metadata={"help": "where data, runs and the report go"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "base model (name, dir or hub id)"})
    recipe_dir: str = field(default="recipes/smollm2-135m", metadata={"help": "folder holding METHOD.yaml recipes"})
    base_recipe: str | None = field(default=None, metadata={
        "help": "instead of recipe_dir: one recipe for every method, with each method's loss keys (METHOD_KEYS) on top"})
    methods: list[str] = field(default_factory=lambda: ["dpo", "cdpo", "rdpo", "fdpo"],
                               metadata={"help": "recipes to train (file stems in recipe_dir)"})
    eps: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4],
                             metadata={"help": "noise levels: share of pairs whose chosen/rejected are swapped"})
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "data + training seeds (≥ 2 for intervals)"})
    n_train: int = field(default=96, metadata={"help": "training pairs per run"})
    n_test: int = field(default=40, metadata={"help": "held-out fact-world items"})
    max_steps: int = field(default=12, metadata={"help": "optimizer steps per run (equal budget for all methods)"})
    overrides: dict[str, Any] = field(default_factory=dict,
                                      metadata={"help": "recipe keys applied to every run (lr, batch, lora, ...)"})
    backend: str = field(default="vllm", metadata={"help": "eval backend: vllm or hf"})
    backend_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "eval backend options"})
    max_new_tokens: int = field(default=40, metadata={"help": "generation length for the held-out answers"})

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods must not be empty")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        bad = [e for e in self.eps if not 0.0 <= e < 0.5]
        if bad:
            raise ValueError(f"eps values must be in [0, 0.5), got {bad}")
        for m in self.methods:
            if self.base_recipe:
                if m not in METHOD_KEYS:
                    raise ValueError(f"unknown method {m!r} for base_recipe; known: {sorted(METHOD_KEYS)}")
            elif not (REPO / self.recipe_dir / f"{m}.yaml").is_file() and not (Path(self.recipe_dir) / f"{m}.yaml").is_file():
                raise ValueError(f"no recipe {m}.yaml in {self.recipe_dir}")
        if self.backend not in ("vllm", "hf"):
            raise ValueError(f"backend must be vllm or hf, got {self.backend!r}")


def _find(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_file() else REPO / p


def method_recipe(cfg: NoiseSweepConfig, method: str) -> dict[str, Any]:
    from alignkit.train import load_recipe

    if cfg.base_recipe:
        return {**load_recipe(_find(cfg.base_recipe)), **METHOD_KEYS[method]}
    return load_recipe(_find(Path(cfg.recipe_dir) / f"{method}.yaml"))


def build_noisy_data(cfg: NoiseSweepConfig, seed: int, eps: float, out: Path) -> tuple[Path, Path]:
    """Clean pairs (rho = 0) with noise ε injected; returns (train.jsonl, test.jsonl)."""
    from alignkit.builders.factworld import build_factworld
    from alignkit.data import inject_noise, write_card, write_jsonl

    train, test = build_factworld(cfg.n_train, cfg.n_test, rho=0.0, seed=seed)
    noisy, idx = inject_noise(train, eps, seed)
    d = out / "data" / f"seed{seed}"
    train_path = d / f"train_eps{eps:g}.jsonl"
    write_jsonl(train_path, noisy)
    write_card(train_path, noisy, builder="noise-sweep", config={"seed": seed, "eps": eps, "n_train": cfg.n_train},
               extra={"noised_indices": idx})
    test_path = d / "test.jsonl"
    write_jsonl(test_path, test)
    return train_path, test_path


def train_run(cfg: NoiseSweepConfig, method: str, seed: int, eps: float, train_path: Path, out: Path) -> Path:
    from alignkit.train import train_from_config

    run_dir = out / "runs" / f"seed{seed}" / f"eps{eps:g}" / method
    recipe = method_recipe(cfg, method)
    recipe.update({"model_name_or_path": cfg.model, "dataset_path": str(train_path), "max_train_samples": cfg.n_train,
                   "max_steps": cfg.max_steps, "seed": seed, "output_dir": str(run_dir), "report_to": "none",
                   "save_strategy": "no"})
    recipe.update(cfg.overrides)
    key = stable_hash(recipe)
    marker = run_dir / "sweep_key"
    if marker.is_file() and marker.read_text() == key and (run_dir / "metrics.json").is_file():
        return run_dir  # finished earlier with the same settings: reruns resume
    train_from_config(recipe)
    atomic_write_text(marker, key)
    return run_dir


def run_noise_sweep(cfg: NoiseSweepConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from alignkit.evals.backends.base import ModelSpec
    from alignkit.evals.runner import Suite, TaskSpec, run_suite
    from alignkit.models import resolve_model

    out = Path(cfg.output_dir)
    base = resolve_model(cfg.model)
    rows: list[dict[str, Any]] = []
    grid = [(s, e, m) for s in cfg.seeds for e in cfg.eps for m in cfg.methods]
    bar = tqdm(grid, desc="noise-sweep training", unit="run")
    by_seed: dict[int, list[tuple[float, str, Path]]] = {}
    data_paths: dict[tuple[int, float], tuple[Path, Path]] = {}
    for seed, eps, method in bar:
        bar.set_postfix(seed=seed, eps=eps, method=method)
        if (seed, eps) not in data_paths:
            data_paths[(seed, eps)] = build_noisy_data(cfg, seed, eps, out)
        run_dir = train_run(cfg, method, seed, eps, data_paths[(seed, eps)][0], out)
        by_seed.setdefault(seed, []).append((eps, method, run_dir))

    # One eval per seed (its own held-out items); adapters share one engine on GPU, are merged on CPU (run_suite).
    for seed, runs in by_seed.items():
        test_path = data_paths[(seed, cfg.eps[0])][1]
        suite = Suite(name=f"noise-sweep-seed{seed}", backend=cfg.backend,
                      backend_options={cfg.backend: dict(cfg.backend_options)},
                      tasks=[TaskSpec("hallucination", {"items": str(test_path), "judge": "reference",
                                                        "max_new_tokens": cfg.max_new_tokens})])
        models = [ModelSpec(f"{m}-eps{e:g}", base, str(Path(d).resolve())) for e, m, d in runs]
        results = run_suite(suite, models, out / "eval" / f"seed{seed}", backend=cfg.backend)
        for (e, m, _), r in zip(runs, results):
            metric = r.metrics["hallucination_rate"]
            rows.append({"seed": seed, "eps": e, "method": m, "hallucination_rate": metric.value,
                         "ci_low": metric.ci_low, "ci_high": metric.ci_high, "n": metric.n})
    summary = aggregate(rows)
    doc = {"config": asdict(cfg), "runs": rows, "summary": summary}
    atomic_write_json(out / "results.json", doc)
    plot = plot_sweep(summary, out / "hallucination_vs_noise.png")
    report = write_report(cfg, summary, rows, plot, out / "report.md")
    return {"report": str(report), "plot": str(plot), "summary": summary}


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean hallucination rate per (method, ε) over seeds, with the min–max range over seeds."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        if r["hallucination_rate"] is not None:
            groups.setdefault((r["method"], r["eps"]), []).append(r["hallucination_rate"])
    return [{"method": m, "eps": e, "mean": statistics.fmean(v), "low": min(v), "high": max(v), "n_seeds": len(v)}
            for (m, e), v in sorted(groups.items())]


def plot_sweep(summary: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(s["method"] for s in summary):
        pts = sorted((s["eps"], s["mean"], s["low"], s["high"]) for s in summary if s["method"] == method)
        x, y, lo, hi = zip(*pts)
        ax.plot(x, y, marker="o", label=method)
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_xlabel("injected label noise ε (share of swapped pairs)")
    ax.set_ylabel("held-out hallucination rate")
    ax.set_title("Hallucination vs label noise (mean, min–max over seeds)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def write_report(cfg: NoiseSweepConfig, summary, rows, plot: Path, path: Path) -> Path:
    eps = sorted({s["eps"] for s in summary})
    methods = list(dict.fromkeys(s["method"] for s in summary))
    cell = {(s["method"], s["eps"]): s for s in summary}
    lines = [
        "# Noise sweep: hallucination rate vs injected label noise",
        "",
        f"Model `{cfg.model}`, {cfg.n_train} training pairs, {cfg.max_steps} steps per run, seeds {cfg.seeds}, "
        f"{cfg.n_test} held-out items (reference judge). Cells: mean over seeds [min, max].",
        "",
        "| method | " + " | ".join(f"ε={e:g}" for e in eps) + " |",
        "|---|" + "---|" * len(eps),
    ]
    for m in methods:
        cells = []
        for e in eps:
            s = cell.get((m, e))
            cells.append("n/a" if s is None else f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"![hallucination vs noise]({plot.name})", "", "Per-run results: `results.json`."]
    return atomic_write_text(path, "\n".join(lines) + "\n")
