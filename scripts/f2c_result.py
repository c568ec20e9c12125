"""Regenerate docs/f2c_result.md: SmolLM2-135M-Instruct before/after F²C on RTE, scored on held-out formats, with and
without alignkit's class-balance control.

1. train each variant with recipes/smollm2-135m/f2c-rte.yaml (5 training formats drawn by seed, LoRA, CPU):
   "F²C" = the recipe as it is (the paper's method); "F²C + quota" = the same with ``class_balance: quota``
   (alignkit's own addition, not part of F²C);
2. build the RTE validation consistency set with the same templates, seed and held-out draw;
3. score the base model and each adapter with the `prompt_consistency` task (hf backend) on the 5 held-out formats;
4. write the table (markdown + JSON) and copy it into the README. Nothing is tuned on the held-out formats or the
   validation split. A rerun resumes: trained adapters (when trained with the same recipe and overrides) and cached
   scores are reused.

Run from the repo root:  flock /tmp/alignkit-heavy.lock .venv/bin/python scripts/f2c_result.py
Smaller (faster) configuration:  ... scripts/f2c_result.py --set consistency_examples=32 --set max_steps=8 --limit 40
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not
# label -> recipe overrides; the first is the paper's method
VARIANTS: dict[str, dict[str, Any]] = {"F²C": {}, "F²C + quota": {"class_balance": "quota"}}
ROWS = [("Agreement P̄ (×100) ↑", "agreement"), ("Mean F1 (×100) ↑", "mean_f1"), ("σ_F1 ↓", "sigma_f1"),
        ("Accuracy (×100) ↑", "accuracy")]
TABLE_HEAD = "| metric | base |"


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in label.lower().replace("²", "2")).strip("-")


def _parse_set(items: list[str]) -> dict[str, Any]:
    from alignkit.config import ConfigError, parse_overrides  # the one --set parser

    try:
        return parse_overrides(items)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


def class_shares(items: list[dict]) -> dict[int, float]:
    """Share of each predicted class over all (example, format) pairs: a collapse onto one answer raises agreement
    and lowers σ_F1 without any understanding."""
    preds = [p for it in items for p in it["predictions"]]
    return {c: 100 * preds.count(c) / len(preds) for c in sorted(set(preds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(REPO / "recipes/smollm2-135m/f2c-rte.yaml"))
    ap.add_argument("--out", default=str(REPO / "runs/f2c-result"), help="run folder (adapters, caches)")
    ap.add_argument("--doc", default=str(REPO / "docs/f2c_result.md"))
    ap.add_argument("--limit", type=int, default=None, help="validation examples (default: all 277)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every variant (e.g. a smaller configuration); stated in the doc")
    ap.add_argument("--note", default=None, help="a sentence for the doc, e.g. why a smaller configuration was used")
    ap.add_argument("--readme", default=str(REPO / "README.md"), help="README whose f2c block is rewritten")
    ap.add_argument("--readme-only", action="store_true", help="only copy the doc's table into the README")
    args = ap.parse_args()
    if args.readme_only:
        update_readme(Path(args.doc), Path(args.readme))
        return

    from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency
    from alignkit.data.cache import ItemCache
    from alignkit.evals.tasks import get_task
    from alignkit.inference.base import ModelSpec
    from alignkit.inference.hf import HFBackend
    from alignkit.resources import resolve_data
    from alignkit.train import load_recipe, parse_dict, train_from_config
    from alignkit.utils import atomic_write_json, atomic_write_text, stable_hash

    out = Path(args.out)
    overrides = _parse_set(args.set)
    recipe = load_recipe(args.recipe, overrides=overrides)
    data = resolve_data(recipe["dataset_path"])  # pkg:consistency/rte.jsonl -> the packaged file
    recipe["dataset_path"] = data if Path(data).is_absolute() else str((REPO / data).resolve())
    _, targs, _ = parse_dict({**recipe, "output_dir": str(out / "tmp")})
    train_metrics: dict[str, dict] = {}
    for label, extra in VARIANTS.items():
        adapter = out / _slug(label)
        run = {**recipe, **extra, "output_dir": str(adapter)}
        # a rerun resumes (training is the expensive part), but only the run asked for: other settings retrain
        key = stable_hash({k: v for k, v in run.items() if k != "output_dir"})
        marker = adapter / "f2c_result_key"
        if not (marker.is_file() and marker.read_text() == key and (adapter / "adapter_config.json").is_file()):
            if adapter.exists():
                shutil.rmtree(adapter)
            t0 = time.time()
            train_from_config(run)
            atomic_write_text(marker, key)
            print(f"{label}: trained in {time.time() - t0:.0f} s", file=sys.stderr)
        train_metrics[label] = json.loads((adapter / "metrics.json").read_text(encoding="utf-8"))
    val = out / "rte-validation.jsonl"
    info = build_consistency(ConsistencyBuildConfig(
        data=recipe["dataset_path"], templates=targs.consistency_templates, output=str(val), split="validation",
        heldout=targs.consistency_heldout, seed=targs.seed))
    backend = HFBackend(recipe["model_name_or_path"], batch_size=16, progress=True)
    cache = ItemCache(out / "scores.jsonl")
    task = get_task("prompt_consistency", data=str(val), formats="heldout", limit=args.limit)
    results = {"base": task.run(backend, ModelSpec(label="base", base=recipe["model_name_or_path"]), cache)}
    for label in VARIANTS:
        results[label] = task.run(backend, ModelSpec(label=label, base=recipe["model_name_or_path"],
                                                      adapter=str(out / _slug(label))), cache)
    write_doc(args, recipe, overrides, info, results, train_metrics)
    atomic_write_json(Path(args.doc).with_suffix(".json"), {
        label: {k: m.value for k, m in r.metrics.items()}
        | {"per_format_f1": r.extra["per_format_f1"], "n": r.metrics["agreement"].n,
           "predicted_class_share": class_shares(r.items)}
        | ({} if label == "base" else {"recipe_overrides": {**overrides, **VARIANTS[label]},
                                       "train": _train_summary(train_metrics[label])})
        for label, r in results.items()})
    update_readme(Path(args.doc), Path(args.readme))


def _train_summary(m: dict) -> dict:
    logs = [h for h in m.get("log_history", []) if "loss" in h]
    last = logs[-1] if logs else {}
    f2c = m.get("f2c") or {}  # the trainer's own keys in the run metrics.json layout (alignkit.trainers.runner)
    return {"steps": m.get("global_step"), "train_runtime_s": (m.get("train") or {}).get("train_runtime"),
            "n_examples": ((m.get("data") or {}).get("train") or {}).get("n_used"),
            "collapse_events": len(f2c.get("collapse_events") or []),
            "base_class_shares": f2c.get("base_class_shares"), "quota_counts": f2c.get("quota_counts"),
            "last_label_shares": {k: v for k, v in last.items() if k.startswith("f2c/label_share")},
            "last_pred_shares": {k: v for k, v in last.items() if k.startswith("f2c/pred_share")}}


def write_doc(args: Any, recipe: dict, overrides: dict, info: dict, results: dict, train_metrics: dict) -> None:
    from alignkit.utils import atomic_write_text

    base = results["base"]
    n = base.metrics["agreement"].n
    labels = list(VARIANTS)
    first = train_metrics[labels[0]]
    steps = first.get("global_step")
    threshold = recipe.get("collapse_threshold", 0.9)
    cmd = "scripts/f2c_result.py" + "".join(f" --set {shlex.quote(s)}" for s in args.set) + (
        f" --limit {args.limit}" if args.limit else "") + (" --note …" if args.note else "")
    lines = [
        f"# F²C on RTE with `{recipe['model_name_or_path']}`: held-out prompt formats, before and after",
        "",
        f"Generated by `{cmd}` (recipe `{Path(args.recipe).relative_to(REPO)}`); do not edit by hand.",
        "",
        f"Training: {_train_summary(first)['n_examples']} RTE train examples × {len(info['formats'])} formats "
        f"({', '.join(info['formats'])}), LoRA, {steps} optimiser steps, no gold labels. "
        f"Evaluation: {n} RTE validation examples × {len(info['heldout_formats'])} held-out formats "
        f"({', '.join(info['heldout_formats'])}), length-normalised log-likelihood, binary F1 of class 1 "
        "(not_entailment).",
        "",
        "Variants: **F²C** is the recipe as it is (the paper's method as the authors' code implements it: no "
        "teacher/student split under strong unanimity, JSD over all formats for examples without a split); "
        "**F²C + quota** adds `class_balance: quota`, alignkit's own class-balance control (not part of F²C): a "
        "consensus pseudo-label is used only while its class stays within the base model's share of predictions "
        "for that class.",
    ]
    if overrides:
        lines += ["", "**Smaller configuration than the recipe** (CPU time): "
                  + ", ".join(f"`{k}: {v}`" for k, v in overrides.items())
                  + ". The full configuration: `flock /tmp/alignkit-heavy.lock .venv/bin/python "
                  "scripts/f2c_result.py --limit 80`." + (f" {args.note}" if args.note else "")]
    head = TABLE_HEAD + "".join(f" {lb} | Δ |" for lb in labels)
    lines += ["", head, "|---|---:|" + "---:|---:|" * len(labels)]
    for name, key in ROWS:
        b = base.metrics[key].value
        cells = "".join(f" {results[lb].metrics[key].value:.2f} | {results[lb].metrics[key].value - b:+.2f} |"
                        for lb in labels)
        lines.append(f"| {name} | {b:.2f} |{cells}")

    def share_text(r) -> str:
        return ", ".join(f"class {c}: {v:.1f}%" for c, v in class_shares(r.items).items())

    gold1 = 100 * sum(1 for it in base.items if it["label"] == 1) / n
    lines += ["", "Predicted classes over all (example, format) pairs — "
              + "; ".join(f"{lb}: {share_text(r)}" for lb, r in results.items())
              + f"; gold class 1 share: {gold1:.1f}%."]
    verdicts = []
    for lb in labels:
        top = max(class_shares(results[lb].items).values())
        verdicts.append(f"{lb}: {'collapsed' if top >= 100 * threshold else 'not collapsed'} "
                        f"(largest class {top:.1f}%)")
    lines += ["", f"Collapse (one class ≥ {100 * threshold:.0f}% of held-out predictions, the trainer's "
              f"`collapse_threshold`) — " + "; ".join(verdicts) + "."]
    lines += ["", "Per-format F1 (×100):", "", "| format | base |" + "".join(f" {lb} |" for lb in labels),
              "|---|---:|" + "---:|" * len(labels)]
    for fmt, v in base.extra["per_format_f1"].items():
        lines.append(f"| {fmt} | {v:.2f} |" + "".join(f" {results[lb].extra['per_format_f1'][fmt]:.2f} |"
                                                      for lb in labels))
    lines += ["", "Training logs (first → last logging step; label/prediction shares are the trainer's per-step "
              "collapse-guard metrics on training examples):", ""]
    for lb in labels:
        m = train_metrics[lb]
        logs = [h for h in m.get("log_history", []) if "loss" in h]
        if not logs:
            continue
        a, z = logs[0], logs[-1]

        def g(h: dict, k: str) -> float:
            return h.get(k, float("nan"))

        extra = ""
        f2c = m.get("f2c") or {}
        if f2c.get("base_class_shares"):
            extra = (f"; base class shares for the quota {[round(100 * x, 1) for x in f2c['base_class_shares']]}%, "
                     f"pseudo-labels admitted per class {f2c.get('quota_counts')}")
        lines.append(
            f"- {lb}: loss {a['loss']:.3f} → {z['loss']:.3f}, batch agreement {g(a, 'f2c/agreement'):.1f} → "
            f"{g(z, 'f2c/agreement'):.1f}, class-1 share of pseudo-labels {100 * g(a, 'f2c/label_share_c1'):.0f}% → "
            f"{100 * g(z, 'f2c/label_share_c1'):.0f}%, of predictions {100 * g(a, 'f2c/pred_share_c1'):.0f}% → "
            f"{100 * g(z, 'f2c/pred_share_c1'):.0f}%; collapse-guard warnings: {len(f2c.get('collapse_events') or [])}"
            f"; training time {(m.get('train') or {}).get('train_runtime', float('nan')):.0f} s{extra}.")
    atomic_write_text(args.doc, "\n".join(lines) + "\n")
    print("\n".join(lines))


def update_readme(doc: Path, readme: Path) -> None:
    """Copy the before/after table and the class shares of the generated doc into the README's f2c block (never
    typed by hand)."""
    import re

    from alignkit.utils import atomic_write_text

    text = doc.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith(TABLE_HEAD))
    end = next((i for i in range(start, len(text)) if not text[i].startswith("|")), len(text))
    table = "\n".join(text[start:end])
    notes = [line for line in text if line.startswith(("Predicted classes", "Collapse (", "**Smaller"))]
    block = "<!-- f2c:begin -->\n" + table + "\n" + "".join(f"\n{line}\n" for line in notes) + "<!-- f2c:end -->"
    body = readme.read_text(encoding="utf-8")
    atomic_write_text(readme, re.sub(r"<!-- f2c:begin -->.*?<!-- f2c:end -->", lambda _: block, body, flags=re.S))


if __name__ == "__main__":
    main()
