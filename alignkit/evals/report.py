"""The report writer: ``results.json`` (versioned schema), ``report.md`` (one table, every metric with its 95%
interval, models side by side), per-item JSONL files, and PNG plots.

Plots: one bar chart per task (a panel per metric, a bar per model, interval whiskers), plus whatever a task's
``Task.plot(results, out_dir)`` classmethod draws from ``TaskResult.extra`` (e.g. the flip-% curve).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alignkit.evals.tasks.base import TASKS, Metric, TaskResult
from alignkit.utils import atomic_path, atomic_write_json, atomic_write_text, dumps_line, pyplot

SCHEMA_VERSION = 1


def results_document(results: list[TaskResult], *, suite: dict[str, Any] | None = None,
                     models: list[dict[str, Any]] | None = None,
                     provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``results.json`` content. Schema v1: ``{schema_version, suite, models: [{label, base, adapter}],
    results: [{task, version, model, metrics: {name: {value, ci_low, ci_high, n, higher_is_better}}, extra,
    items_file}], provenance}`` (``provenance``: see ``alignkit.evals.provenance``; absent when not given)."""
    doc = {} if provenance is None else {"provenance": provenance}
    return doc | {
        "schema_version": SCHEMA_VERSION,
        "suite": suite or {},
        "models": models or [],
        "results": [{"task": r.task, "version": r.version, "model": r.model,
                     "metrics": {k: asdict(m) for k, m in r.metrics.items()}, "extra": r.extra,
                     "items_file": f"items/{r.task}__{r.model}.jsonl"} for r in results],
    }


def _fmt(m: Metric) -> str:
    if m.value is None or (isinstance(m.value, float) and math.isnan(m.value)):
        return "n/a"
    if m.ci_low is None or m.ci_high is None or math.isnan(m.ci_low):
        return f"{m.value:.3f}"
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"


def markdown_table(results: list[TaskResult]) -> str:
    """One table: a row per (task, metric), a column per model; cells are ``mean [95% CI]``."""
    models = list(dict.fromkeys(r.model for r in results))
    rows: dict[tuple[str, str], dict[str, str]] = {}
    arrows: dict[tuple[str, str], str] = {}
    ns: dict[tuple[str, str], set[int]] = {}
    for r in results:
        for name, m in r.metrics.items():
            rows.setdefault((r.task, name), {})[r.model] = _fmt(m)
            arrows[(r.task, name)] = "↑" if m.higher_is_better else "↓"
            ns.setdefault((r.task, name), set()).add(m.n)
    lines = ["| task | metric | n | " + " | ".join(models) + " |", "|---|---|---|" + "---|" * len(models)]
    for (task, name), cells in rows.items():
        n = ",".join(str(x) for x in sorted(ns[(task, name)]))
        lines.append(f"| {task} | {name} {arrows[(task, name)]} | {n} | "
                     + " | ".join(cells.get(mo, "—") for mo in models) + " |")
    return "\n".join(lines) + "\n"


def judge_table(results: list[TaskResult]) -> str:
    """Verdict counts per status for every result whose task judges (``extra["judge_status"]``): failed and
    unparsed judgements are left out of the metrics, so the report says how many there were. Empty when no task
    judges."""
    rows = [r for r in results if isinstance(r.extra.get("judge_status"), dict)]
    if not rows:
        return ""
    statuses = ["ok", "parse_error", "error"]
    statuses += sorted({k for r in rows for k in r.extra["judge_status"]} - set(statuses))
    lines = ["| task | model | judge | verdicts | " + " | ".join(statuses) + " |",
             "|---|---|---|---|" + "---|" * len(statuses)]
    for r in rows:
        counts = r.extra["judge_status"]
        lines.append(f"| {r.task} | {r.model} | {r.extra.get('judge', '?')} | {sum(counts.values())} | "
                     + " | ".join(str(counts.get(k, 0)) for k in statuses) + " |")
    return "\n".join(lines) + "\n"


def plot_metric_bars(results: list[TaskResult], out_dir: Path) -> list[Path]:
    """One PNG per task: a panel per metric with a bar per model and its 95% interval."""
    plt = pyplot()

    paths = []
    for task in dict.fromkeys(r.task for r in results):
        rs = [r for r in results if r.task == task]
        names = [n for n in dict.fromkeys(k for r in rs for k in r.metrics)
                 if any(r.metrics[n].ci_low is not None for r in rs if n in r.metrics)] or \
            list(dict.fromkeys(k for r in rs for k in r.metrics))
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 3.2), squeeze=False)
        for ax, name in zip(axes[0], names):
            labels, vals, lo, hi = [], [], [], []
            for r in rs:
                m = r.metrics.get(name)
                if m is None or m.value is None or math.isnan(m.value):
                    continue
                labels.append(r.model)
                vals.append(m.value)
                lo.append(m.value - m.ci_low if m.ci_low is not None and not math.isnan(m.ci_low) else 0.0)
                hi.append(m.ci_high - m.value if m.ci_high is not None and not math.isnan(m.ci_high) else 0.0)
            ax.bar(range(len(vals)), vals, yerr=[lo, hi], capsize=4, color=f"C{names.index(name)}")
            ax.set_xticks(range(len(vals)), labels, rotation=20)
            ax.set_title(f"{name} ({'higher' if rs[0].metrics.get(name, Metric(0)).higher_is_better else 'lower'}"
                         " is better)", fontsize=9)
        fig.suptitle(task)
        fig.tight_layout()
        path = out_dir / f"{task}_metrics.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(results: list[TaskResult], out_dir: str | Path, *, suite: dict[str, Any] | None = None,
                 models: list[dict[str, Any]] | None = None, title: str = "alignkit eval report",
                 provenance: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write results.json, report.md, items/*.jsonl and plots/*.png under ``out_dir`` (each file atomically)."""
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        atomic_write_text(out / "items" / f"{r.task}__{r.model}.jsonl",
                          "".join(dumps_line(it) + "\n" for it in r.items))
    atomic_write_json(out / "results.json", results_document(results, suite=suite, models=models,
                                                                provenance=provenance))
    plots = plot_metric_bars(results, plots_dir)
    for task in dict.fromkeys(r.task for r in results):
        if task in TASKS:
            plots += list(TASKS[task].plot([r for r in results if r.task == task], plots_dir))
    md = [f"# {title}", ""]
    if suite:
        md += [f"Suite: `{suite.get('name', '?')}` (version {suite.get('version', '?')}), "
               f"backend `{suite.get('backend', '?')}`.", ""]
    if models:
        md += ["Models: " + ", ".join(f"**{m['label']}** = `{m['base']}`" + (f" + LoRA `{m['adapter']}`"
                                                                             if m.get("adapter") else "")
                                      for m in models), ""]
    md += ["Each cell: mean [95% bootstrap interval]; ↑/↓ marks the better direction.", "",
           markdown_table(results)]
    judged = judge_table(results)
    if judged:
        md += ["## Judge verdicts", "",
               "Failed (`error`) and unparsed (`parse_error`) judgements are left out of the metrics above, never "
               "guessed; transient failures are not cached, so a rerun asks the judge again.", "", judged]
    md += ["## Plots", ""]
    md += [f"![{p.stem}](plots/{p.name})" for p in plots]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    return {"results": out / "results.json", "report": out / "report.md", "plots": plots_dir}
