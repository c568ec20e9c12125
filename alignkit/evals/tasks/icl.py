"""Flipped-label and SUL in-context learning (Wei et al., arXiv 2303.03846; symbol-tuning scoring, arXiv 2305.08298).

Each item is a k-shot prompt (alignkit.builders.icl) whose exemplar labels are flipped in a given proportion, or
whose label words are semantically unrelated (Foo/Bar...). The model answers by log-likelihood ranking of the label
words (``" " + word`` after ``Output:``); accuracy is measured against the true labels (Wei et al. 2023: below 50% at
high flip % means the model follows the in-context flips) and against the flipped targets (symbol tuning's scoring,
where the query's label is flipped like the exemplars'). ``extra["curves"]`` holds accuracy per flip % per label set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.builders.icl import FLIP_PCTS, load_classification, make_icl_items
from alignkit.data.cache import ItemCache, run_cached
from alignkit.evals.metrics.icl import accuracy_curve, rank_prediction
from alignkit.evals.metrics.stats import mean_metric
from alignkit.evals.tasks.base import Task, TaskResult, register_task
from alignkit.inference.base import Backend, ModelSpec
from alignkit.resources import data_path
from alignkit.utils import atomic_path, model_identity, pyplot, stable_hash


def load_items(config: dict[str, Any]) -> list[dict]:
    """Items from ``items`` (a JSONL built by ``alignkit build icl``) or built here from ``datasets`` (names under
    alignkit/resources/data/icl, or ``pkg:``/JSONL paths / hub ids) with ``k``, ``n_queries``, ``flip_pcts``,
    ``label_sets``, ``seed``."""
    if config.get("items"):
        from alignkit.data.io import iter_jsonl
        from alignkit.data.schema import DataError

        out = []
        for line, it in iter_jsonl(config["items"]):
            for fld in ("id", "prompt", "choices", "target", "flipped_target", "flip_pct", "label_set"):
                if fld not in it:
                    raise DataError("missing", file=config["items"], line=line, field=fld)
            out.append(it)
        return out
    items = []
    for ds in config.get("datasets", ["sst2"]):
        src = ds if ("/" in ds or ds.endswith(".jsonl")) else str(data_path(f"icl/{ds}.jsonl"))
        data = load_classification(src, seed=int(config.get("seed", 0)))
        items += make_icl_items(data, k=int(config.get("k", 4)), n_queries=int(config.get("n_queries", 20)),
                                flip_pcts=config.get("flip_pcts", FLIP_PCTS),
                                label_sets=config.get("label_sets", ("natural", "sul")),
                                seed=int(config.get("seed", 0)), progress=False)
    return items


def call_size(items: list[dict], at_least: int = 16) -> int:
    """Items per scoring call: whole queries, at least ``at_least`` items. A query's items (every flip % and label
    set) share its exemplars, so the shared-prefix scorer computes them once only when they meet in one call; a
    call boundary inside a query computes its exemplars twice (benchmarks/bench_loglik.py, sst2, k = 4, 10 items
    per query: 16 items per call split 3 of 6 queries and computed 18% more tokens than the distinct-prefix
    limit)."""
    if not items:
        return at_least
    first = (items[0].get("dataset"), items[0].get("query_index"))
    group = next((i for i, it in enumerate(items) if (it.get("dataset"), it.get("query_index")) != first), len(items))
    return group * -(-at_least // group)


@register_task
class FlippedLabelICL(Task):
    """Accuracy vs flip % (natural label words and SUL labels), scored by label-word log-likelihood ranking.

    Config: ``datasets`` (default ["sst2"]), ``k`` (exemplars per class, 4; the paper 16), ``n_queries`` (20; the
    paper 100), ``flip_pcts`` ([0, 25, 50, 75, 100]), ``label_sets`` (["natural", "sul"]), ``seed``, or ``items``
    (a built JSONL); ``batch_size`` (items per scoring call / cache flush; default: whole queries, at least 16, see
    :func:`call_size`)."""

    name = "icl_flip"
    version = 1
    options = {"items": str, "datasets": list[str], "k": int, "n_queries": int, "flip_pcts": list[int],
               "label_sets": list[str], "seed": int}

    def run(self, backend: Backend, model: ModelSpec, cache: ItemCache | None) -> TaskResult:
        items = load_items(self.config)
        if not items:
            raise ValueError(f"{self.name}: no items")
        ident = model_identity(backend, model)
        keys = [self.item_key(ident, stable_hash(
            [it["prompt"], it["choices"], it["target"], it["flipped_target"]])) for it in items]

        def compute(idx: list[int]) -> list[dict[str, Any]]:
            reqs = [(items[i]["prompt"], " " + c) for i in idx for c in items[i]["choices"]]
            lls = backend.loglikelihood(reqs, adapter=model.adapter)
            out, pos = [], 0
            for i in idx:
                it = items[i]
                scores = [r.logprob for r in lls[pos:pos + len(it["choices"])]]
                pos += len(it["choices"])
                pred = rank_prediction(scores)
                out.append({"id": it["id"], "dataset": it.get("dataset", ""), "label_set": it["label_set"],
                            "flip_pct": it["flip_pct"], "scores": scores, "prediction": pred,
                            "target": it["target"], "flipped_target": it["flipped_target"],
                            "correct": int(pred == it["target"]), "correct_flipped": int(pred == it["flipped_target"])})
            return out

        # small k can make two flip % identical (k=2: 25% and 50% both flip one per class); score each prompt once so
        # duplicates share one value instead of two that differ by batch-padding float noise
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        uniq = sorted(first.values())
        scored = run_cached(cache, [keys[i] for i in uniq], lambda idx: compute([uniq[j] for j in idx]),
                            batch_size=int(self.config.get("batch_size") or call_size([items[i] for i in uniq])),
                            desc=f"{self.name} [{model.label}]",
                            progress=self.config.get("progress", True))
        by_key = dict(zip((keys[i] for i in uniq), scored))
        records = [{**by_key[k], "id": it["id"], "label_set": it["label_set"], "flip_pct": it["flip_pct"]}
                   for k, it in zip(keys, items)]
        curves: dict[str, Any] = {}
        metrics = {}
        for ls in dict.fromkeys(r["label_set"] for r in records):
            rows = [r for r in records if r["label_set"] == ls]
            true_curve = accuracy_curve((r["flip_pct"], r["prediction"], r["target"]) for r in rows)
            flipped_curve = accuracy_curve((r["flip_pct"], r["prediction"], r["flipped_target"]) for r in rows)
            per_ds = {ds: accuracy_curve((r["flip_pct"], r["prediction"], r["target"]) for r in rows
                                         if r["dataset"] == ds) for ds in dict.fromkeys(r["dataset"] for r in rows)}
            curves[ls] = {"flip_pct": list(true_curve), "accuracy": list(true_curve.values()),
                          "accuracy_flipped_targets": [flipped_curve[p] for p in true_curve],
                          "per_dataset": {ds: list(c.values()) for ds, c in per_ds.items()},
                          "n_per_point": len(rows) // max(1, len(true_curve))}
            # natural labels: the whole curve; SUL: the unflipped point (SUL-ICL proper), the rest lives in extra
            for p in true_curve if ls == "natural" else [p for p in true_curve if p == 0]:
                metrics[f"acc_{ls}_flip{p}"] = mean_metric([r["correct"] for r in rows if r["flip_pct"] == p])
        chance = sorted({round(1 / len(it["choices"]), 4) for it in items})
        return TaskResult(self.name, self.version, model.label, metrics, records,
                          {"curves": curves, "chance": chance, "n_items": len(items)})

    @classmethod
    def plot(cls, results: list[TaskResult], out_dir: Path) -> list[Path]:
        """Accuracy vs flip % per model: one panel per label set; solid = true labels, dotted = flipped targets."""
        plt = pyplot()

        results = [r for r in results if r.extra.get("curves")]
        if not results:
            return []
        label_sets = list(dict.fromkeys(ls for r in results for ls in r.extra["curves"]))
        fig, axes = plt.subplots(1, len(label_sets), figsize=(5 * len(label_sets), 3.8), squeeze=False)
        for ax, ls in zip(axes[0], label_sets):
            for m, r in enumerate(results):
                c = r.extra["curves"].get(ls)
                if not c:
                    continue
                line, = ax.plot(c["flip_pct"], c["accuracy"], marker="o", label=f"{r.model} (true labels)")
                ax.plot(c["flip_pct"], c["accuracy_flipped_targets"], marker="x", linestyle=":",
                        color=line.get_color(), label=f"{r.model} (flipped targets)")
            for ch in results[0].extra.get("chance", []):
                ax.axhline(ch, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xlabel("exemplar labels flipped (%)")
            ax.set_ylabel("accuracy")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{'SUL labels (Foo/Bar…)' if ls == 'sul' else 'natural label words'}")
            ax.legend(fontsize=7)
        fig.suptitle("Flipped-label ICL (Wei et al. 2023)")
        fig.tight_layout()
        path = Path(out_dir) / f"{cls.name}_curve.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        return [path]
