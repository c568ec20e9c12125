"""``results.json`` → lm-evaluation-harness's results layout, one file per model, so lm-eval's tooling
(``lm_eval.utils.make_table``, leaderboards that read its JSON) can read alignkit's numbers.

The mapping: each alignkit metric ``m`` becomes ``"m,none"`` (lm-eval's metric,filter key) and ``"m_stderr,none"``.
alignkit reports 95% bootstrap intervals, not standard errors; the stderr written here is the interval's half-width
divided by 1.96 (the normal approximation), and ``"N/A"`` when a metric has no interval, as lm-eval writes it.
Per-sample logs stay in alignkit's own ``items/<task>__<model>.jsonl`` schema (see ``alignkit.evals.report``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.utils import atomic_write_json, atomic_write_text

_Z95 = 1.959963984540054


def _stderr(metric: dict[str, Any]) -> float | str:
    lo, hi = metric.get("ci_low"), metric.get("ci_high")
    if lo is None or hi is None or lo != lo or hi != hi:  # None or NaN
        return "N/A"
    return (hi - lo) / (2 * _Z95)


def to_lm_eval(doc: dict[str, Any], model: str) -> dict[str, Any]:
    """lm-eval's results dictionary for one model label of an alignkit ``results.json`` document."""
    entries = [r for r in doc["results"] if r["model"] == model]
    if not entries:
        known = sorted({r["model"] for r in doc["results"]})
        raise ValueError(f"no results for model {model!r}; the document has {known}")
    prov = doc.get("provenance") or {}
    task_cfgs = {t["task"]: t for t in (doc.get("suite") or {}).get("tasks", [])}
    results, versions, higher, n_samples, configs = {}, {}, {}, {}, {}
    for r in entries:
        task = r["task"]
        row: dict[str, Any] = {"alias": task}
        for name, m in r["metrics"].items():
            row[f"{name},none"] = m["value"]
            row[f"{name}_stderr,none"] = _stderr(m)
        results[task] = row
        versions[task] = float(r["version"])
        higher[task] = {name: bool(m["higher_is_better"]) for name, m in r["metrics"].items()}
        n = max((m.get("n") or 0 for m in r["metrics"].values()), default=0)
        n_samples[task] = {"original": n, "effective": n}
        configs[task] = {"task": task, "metadata": {"version": float(r["version"])},
                         **{k: v for k, v in task_cfgs.get(task, {}).items() if k != "task"}}
    spec = next((m for m in doc.get("models", []) if m["label"] == model), {"base": model})
    versions_env = prov.get("versions") or {}
    return {
        "results": results,
        "group_subtasks": {t: [] for t in results},
        "configs": configs,
        "versions": versions,
        "n-shot": {t: 0 for t in results},
        "higher_is_better": higher,
        "n-samples": n_samples,
        "config": {"model": f"alignkit-{(prov.get('backend') or {}).get('name', doc.get('suite', {}).get('backend'))}",
                   "model_args": f"pretrained={spec['base']}" + (f",peft={spec['adapter']}" if spec.get("adapter")
                                                                  else ""),
                   "batch_size": None, "limit": None, "bootstrap_iters": None},
        "git_hash": ((prov.get("git") or {}).get("commit") or "")[:7] or None,
        "date": prov.get("date"),
        "transformers_version": versions_env.get("transformers"),
        "model_name": spec["base"],
        "model_name_sanitized": str(spec["base"]).replace("/", "__"),
        "alignkit_model_label": model,
    }


def write_lm_eval_results(doc: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/lm_eval/<label>/results.json`` for every model of the document; returns the paths."""
    paths = []
    for label in dict.fromkeys(r["model"] for r in doc["results"]):
        path = Path(out_dir) / "lm_eval" / label / "results.json"
        atomic_write_json(path, to_lm_eval(doc, label))
        paths.append(path)
    return paths


def harness_truthfulqa_tasks(root: Path, data: str | Path) -> Path:
    """lm-evaluation-harness's own ``truthfulqa_mc1``/``mc2`` task configs, copied under ``root/lm_eval_tasks``,
    renamed ``local_truthfulqa_mc1``/``mc2`` and pointed at a local JSONL, so the harness scores the same questions
    as alignkit without the hub. Pass the folder to ``lm_eval.tasks.TaskManager(include_path=...)``. Needs the
    ``lm_eval`` package (the ``dev`` extra); used by the agreement test and ``benchmarks/bench_loglik.py``."""
    import shutil

    import lm_eval

    src = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"
    d = Path(root) / "lm_eval_tasks"
    d.mkdir(parents=True)
    shutil.copy(src / "utils.py", d / "utils.py")
    mc1 = (src / "truthfulqa_mc1.yaml").read_text()
    hub = "dataset_path: truthfulqa/truthful_qa\ndataset_name: multiple_choice\n"
    if hub not in mc1:  # the harness changed its config: rewriting it blindly could score the hub's copy instead
        raise RuntimeError(f"{src / 'truthfulqa_mc1.yaml'} no longer names {hub!r}; update harness_truthfulqa_tasks")
    mc1 = mc1.replace(hub, f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n"
                           f"    validation: {data}\n")
    mc1 = mc1.replace("tag:\n  - truthfulqa\n", "").replace("task: truthfulqa_mc1", "task: local_truthfulqa_mc1")
    atomic_write_text(d / "local_mc1.yaml", mc1)
    mc2 = (src / "truthfulqa_mc2.yaml").read_text().replace("include: truthfulqa_mc1.yaml", "include: local_mc1.yaml")
    atomic_write_text(d / "local_mc2.yaml", mc2.replace("task: truthfulqa_mc2", "task: local_truthfulqa_mc2"))
    return d
