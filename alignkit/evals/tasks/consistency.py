"""``prompt_consistency``: agreement and F1 across prompt formats (F²C, arXiv 2510.14242; methods.md §3).

Reads a consistency set (``alignkit build consistency``); every (example, format, choice) is scored by the
length-normalised log-likelihood of ``" " + choice`` after the format's prompt (Backend.loglikelihood, summed
log-prob / token count); each format predicts the argmax choice. By default only the held-out formats are scored,
so a model trained with F²C on the training formats is evaluated on formats it never saw.
"""

from __future__ import annotations

from typing import Any, Literal

from alignkit.data.cache import ItemCache, run_cached
from alignkit.data.io import iter_jsonl
from alignkit.evals.metrics.consistency import consistency_summary, format_predictions, per_format_f1
from alignkit.evals.tasks.base import Metric, Task, TaskResult, register_task
from alignkit.inference.base import Backend, ModelSpec
from alignkit.utils import model_identity

FORMAT_SETS = {"heldout": ("heldout_formats",), "train": ("formats",), "all": ("formats", "heldout_formats")}


def load_set(path: str, formats: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Examples with the chosen formats under ``"eval_formats"``; every example must have the same format names."""
    keys = FORMAT_SETS[formats]
    rows = []
    for line_no, r in iter_jsonl(path):
            fmts = [f for k in keys for f in r.get(k) or []]
            if not fmts:
                raise ValueError(f"{path}:{line_no}: field {'/'.join(keys)}: no formats to evaluate")
            if not isinstance(r.get("label"), int):
                raise ValueError(f"{path}:{line_no}: field 'label': gold label index required for evaluation")
            names = [f["name"] for f in fmts]
            if rows and names != [f["name"] for f in rows[0]["eval_formats"]]:
                raise ValueError(f"{path}:{line_no}: formats {names} differ from the first example's; every example "
                                 "must render in the same formats")
            rows.append({**r, "eval_formats": fmts})
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def score_set(backend: Backend, rows: list[dict], *, adapter: str | None = None, cache: ItemCache | None = None,
              key: Any = None, batch_size: int = 32, progress: bool = True) -> list:
    """``ll[n][K][C]``: length-normalised log-likelihood of every (example, format, choice). ``key(*parts)`` builds
    the cache keys (``Task.item_key``: task name, version, and the model identity among the parts)."""
    if cache is not None and key is None:
        raise ValueError("score_set: a cache needs a key function")
    reqs, keys, where = [], [], []
    for i, r in enumerate(rows):
        for k, f in enumerate(r["eval_formats"]):
            for c, choice in enumerate(f["choices"]):
                reqs.append((f["prompt"], " " + choice))
                keys.append(key(r["id"], f["name"], f["prompt"], choice) if key else "")
                where.append((i, k, c))

    def compute(idx: list[int]) -> list[float]:
        out = backend.loglikelihood([reqs[j] for j in idx], adapter=adapter)
        return [o.logprob / max(1, o.n_tokens) for o in out]

    vals = run_cached(cache, keys, compute, batch_size=batch_size, desc="prompt_consistency", progress=progress)
    ll = [[[0.0] * len(f["choices"]) for f in r["eval_formats"]] for r in rows]
    for (i, k, c), v in zip(where, vals):
        ll[i][k][c] = v
    return ll


@register_task
class PromptConsistency(Task):
    """Config: ``data`` (consistency JSONL), ``formats`` ('heldout' | 'train' | 'all'), ``limit``, ``pos_label``
    (the positive class of binary F1, default 1), ``batch_size``."""

    name = "prompt_consistency"
    version = 1
    options = {"data": str, "formats": Literal["heldout", "train", "all"], "pos_label": int}

    def run(self, backend: Backend, model: ModelSpec, cache: ItemCache | None) -> TaskResult:
        data = self.config.get("data")
        if not data:
            raise ValueError("prompt_consistency needs config 'data' (a consistency set from `alignkit build "
                             "consistency`)")
        formats = self.config.get("formats", "heldout")
        if formats not in FORMAT_SETS:
            raise ValueError(f"prompt_consistency: formats must be one of {sorted(FORMAT_SETS)}, got {formats!r}")
        rows = load_set(data, formats, self.config.get("limit"))
        identity = model_identity(backend, model)
        ll = score_set(backend, rows, adapter=model.adapter, cache=cache,
                       key=lambda *parts: self.item_key(identity, *parts),
                       batch_size=int(self.config.get("batch_size", 32)), progress=self.config.get("progress", True))
        labels = [r["label"] for r in rows]
        pos = int(self.config.get("pos_label", 1))
        s = consistency_summary(ll, labels, pos_label=pos)
        preds = format_predictions(ll)
        names = [f["name"] for f in rows[0]["eval_formats"]]
        f1s = per_format_f1(preds, labels, n_classes=len(ll[0][0]), pos_label=pos)
        metrics = {"agreement": Metric(s["agreement"], n=len(rows)), "mean_f1": Metric(s["mean_f1"], n=len(rows)),
                   "sigma_f1": Metric(s["sigma_f1"], n=len(rows), higher_is_better=False),
                   "accuracy": Metric(s["accuracy"], n=len(rows))}
        items = [{"id": r["id"], "label": r["label"], "predictions": preds[i].tolist(), "ll": ll[i]}
                 for i, r in enumerate(rows)]
        return TaskResult(task=self.name, version=self.version, model=model.label, metrics=metrics, items=items,
                          extra={"per_format_f1": dict(zip(names, f1s)), "formats": formats})
