"""The sweep's plots (metric vs ε, one panel per δ) and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.experiments.noise_sweep.config import reads_flags
from alignkit.experiments.noise_sweep.stats import METRICS
from alignkit.utils import atomic_path, atomic_write_text


def plot_metric(doc: dict[str, Any], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = doc["config"]
    deltas = cfg["delta"]
    fig, axes = plt.subplots(1, len(deltas), figsize=(5.2 * len(deltas), 4), sharey=True, squeeze=False)
    base = doc["base"][metric]["mean"] if metric != "reward_acc" else 0.5
    for ax, delta in zip(axes[0], deltas):
        for method in cfg["methods"]:
            pts = sorted((c["eps"], c[metric]["mean"], c[metric]["low"], c[metric]["high"])
                         for c in doc["summary"] if c["method"] == method and c["delta"] == delta
                         and c[metric]["mean"] is not None)
            if not pts:
                continue
            x, y, lo, hi = zip(*pts)
            line, = ax.plot(x, y, marker="o", label=method, linestyle="--" if not reads_flags(method) else "-")
            ax.fill_between(x, lo, hi, alpha=0.12, color=line.get_color())
        if base is not None:
            ax.axhline(base, color="grey", linewidth=1, linestyle=":", label="base model")
        ax.set_title(f"judge noise δ = {delta:g}")
        ax.set_xlabel("order noise ε (share of swapped pairs)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(METRICS[metric][2])
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{METRICS[metric][2]} vs noise (mean over {len(cfg['seeds'])} seeds, "
                 f"{int(cfg['confidence'] * 100)}% bootstrap interval shaded)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _fmt(c: dict[str, Any]) -> str:
    if c["mean"] is None:
        return "n/a"
    return f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"


def _same_training(runs: list[dict[str, Any]]) -> list[str]:
    """A paragraph naming the cells that trained on another cell's data (identical after the flip), if any."""
    seeds: dict[tuple[str, float, float, str], list[int]] = {}
    for r in runs:
        if r.get("same_training_as"):
            seeds.setdefault((r["method"], r["eps"], r["delta"], r["same_training_as"]), []).append(r["seed"])
    if not seeds:
        return []
    parts = [f"`{m}` at ε = {e:g}, δ = {d:g} is the run `{src}` (seeds {', '.join(map(str, ss))})"
             for (m, e, d, src), ss in sorted(seeds.items())]
    return ["Trained once for identical training: these cells train exactly as another cell does (after the F-DPO "
            "flip their rows equal that cell's, row for row: with correct flags the flip swaps every order-swapped "
            "pair back; and `dpo+flip`'s loss is the DPO loss, which F-DPO's is at λ = 0), so they show that run: "
            + "; ".join(parts) + ".", ""]


def write_report(doc: dict[str, Any], plots: list[Path], path: Path) -> Path:
    cfg, cal = doc["config"], doc["calibration"]
    pct = int(cfg["confidence"] * 100)
    ch = cal["chosen"]
    lines = [
        "# Noise sweep: preference accuracy and hallucination vs order noise ε and judge noise δ",
        "",
        f"Model `{cfg['model']}`, recipe `{cfg['base_recipe']}` (+ {cfg['overrides'] or 'no overrides'}), "
        f"{cfg['n_train']} training pairs per run, seeds {cfg['seeds']}. Every method gets the same budget: "
        f"lr {ch['learning_rate']:g}, {ch['max_steps']} steps (picked by calibration, below). F-DPO λ = "
        f"{cfg['fdpo_lambda']:g}; `dpo+flip` is the flip with λ = 0; `cdpo@true`/`rdpo@true` set the loss ε to the "
        "*true* injected ε (an oracle; at ε = 0 they are plain DPO and show the DPO run); `cdpo@X`/`rdpo@X` use a "
        "fixed ε = X.",
        "",
        f"Held-out test items per seed (entities never trained or calibrated on): {cfg['n_test']} clean pairs for "
        f"(a), the first {cfg['n_generate']} of them answered (greedy, ≤ {cfg['max_new_tokens']} tokens) for (b) and "
        f"(c). Cells: mean over seeds [{pct}% percentile bootstrap over items, resampled within each seed "
        "(`scipy.stats.bootstrap`)]. Judge noise changes only the training data of the flag-reading methods "
        "(`fdpo`, `dpo+flip`); the other methods' cells are the same runs in every δ table.",
        "",
        *_same_training(doc["runs"]),
        "## Calibration (validation split, DPO at ε = 0)",
        "",
        f"Seed {cal['seed']}, {cal['n_val']} validation pairs, {cal['n_val_generate']} validation answers. A setting "
        "passes when its implicit-reward accuracy interval lies above ½ (the base model's: its implicit reward is 0 "
        "for every answer), its log-likelihood ranking interval lies above the base's "
        f"({_fmt(cal['base']['loglik_acc'])}"
        + ("; not checked: the base already ranks every validation pair right, so no setting can beat it there"
           if cal["base"]["loglik_acc"]["high"] >= 1.0 else "")
        + "), and its answers are not degenerate.",
        "",
        "| lr | steps | reward acc | loglik acc | mean len | distinct-2 | empty | repeated | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cal["table"]:
        d = r["degeneracy"]
        mark = "yes" if r["passed"] else "no: " + ", ".join(k for k, v in r["checks"].items() if not v)
        lines.append(f"| {r['learning_rate']:g} | {r['max_steps']} | {_fmt(r['reward_acc'])} | {_fmt(r['loglik_acc'])} "
                     f"| {d['mean_length']:.1f} | {d['distinct_2']:.2f} | {d['empty']:.2f} | {d['repeated']:.2f} "
                     f"| {mark} |")
    bd = cal["base"]["degeneracy"]
    lines += [f"| base | – | 0.5 (by definition) | {_fmt(cal['base']['loglik_acc'])} | {bd['mean_length']:.1f} | "
              f"{bd['distinct_2']:.2f} | {bd['empty']:.2f} | {bd['repeated']:.2f} | – |", ""]
    lines.append(f"Chosen: lr {ch['learning_rate']:g}, {ch['max_steps']} steps." if cal["passed"] else
                 f"**No setting passed**; the best non-degenerate one (lr {ch['learning_rate']:g}, {ch['max_steps']} "
                 "steps) is used, so the comparison below may not separate the methods.")
    lines.append("")
    for metric, (_, higher, label) in METRICS.items():
        arrow = "↑" if higher else "↓"
        base = doc["base"][metric]
        lines += [f"## {label} {arrow}", ""]
        lines.append("Base model: " + ("0.5 by definition (implicit reward 0)." if metric == "reward_acc" else
                                       "0 by definition (implicit reward 0). The margin's scale depends on the loss "
                                       "(cDPO's smoothing and IPO's squared target bound it by design), so compare "
                                       "a method's cells along ε rather than methods with each other."
                                       if metric == "reward_margin" else f"{_fmt(base)}."))
        lines.append("")
        for delta in cfg["delta"]:
            lines += [f"**δ = {delta:g}**", "", "| method | " + " | ".join(f"ε={e:g}" for e in cfg["eps"]) + " |",
                      "|---|" + "---|" * len(cfg["eps"])]
            for method in cfg["methods"]:
                cells = []
                for eps in cfg["eps"]:
                    c = next(c for c in doc["summary"] if (c["method"], c["eps"], c["delta"]) == (method, eps, delta))
                    cells.append(_fmt(c[metric]) + (" ⚠" if c["degenerate_reasons"] else ""))
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"![{metric}]({plots[list(METRICS).index(metric)].name})", ""]
    lines += ["## Degeneracy guards (held-out answers, mean over seeds)", "",
              "| method | ε | δ | mean len | distinct-2 | empty | repeated | flagged |",
              "|---|---|---|---|---|---|---|---|"]
    bd = doc["base"]["degeneracy"]
    lines.append(f"| base | – | – | {bd['mean_length']:.1f} | {bd['distinct_2']:.2f} | {bd['empty']:.2f} | "
                 f"{bd['repeated']:.2f} | – |")
    for c in doc["summary"]:
        if c["reuses"] or (not reads_flags(c["method"]) and c["delta"] != cfg["delta"][0]):
            continue  # the same runs as a row above
        d = c["degeneracy"]
        lines.append(f"| {c['method']} | {c['eps']:g} | {c['delta']:g} | {d['mean_length']:.1f} | "
                     f"{d['distinct_2']:.2f} | {d['empty']:.2f} | {d['repeated']:.2f} | "
                     f"{'; '.join(c['degenerate_reasons']) or 'no'} |")
    fails = doc["base"]["judge_failures"] + sum(c["judge_failures"] for c in doc["summary"])
    lines += ["", f"⚠ marks a cell whose answers break a degeneracy bound ({cfg['degeneracy']}). Judge failures "
              f"(left out of the rates): {fails}. Per-run numbers, flip counts and the full configuration: "
              "`results.json`.", ""]
    t = doc.get("time")
    if t:
        workers = cfg.get("workers", 1)
        lines += ["## Compute time", "",
                  f"Measured per model (wall time of its training and evaluation, stamped when its record was made) "
                  f"over the {t['models']} models this report uses ({t['trained']} trained"
                  + (f", by {workers} parallel worker processes after the calibration and base evaluations" if
                     workers > 1 else "") + "): "
                  f"**{t.get('elapsed_hours', t['hours']):.2f} h elapsed** (the union of the models' working "
                  "intervals: overlapping workers count once, breaks between interrupted runs not at all); "
                  f"{t['hours']:.2f} h summed over models (training {t['train_seconds'] / 60:.0f} min, evaluation "
                  f"{t['eval_seconds'] / 60:.0f} min); {t.get('cpu_hours', 0):.2f} h of process CPU time. Building "
                  "this report is not counted."
                  + (f" {t['untimed']} records carry no time (made by an older version)." if t["untimed"] else ""), ""]
    return atomic_write_text(path, "\n".join(lines))
