"""Held-out hallucination: greedy answers judged for factuality (the F-DPO evaluation protocol, Chaduvula et al.,
arXiv 2601.03027 §5: hallucination rate = share of answers judged hallucinated, factuality = mean 0–10 score).

Items come from a JSONL file or a builder spec:

- ``items: PATH`` — one JSON object per line: ``prompt`` (string or chat messages; what the model sees),
  ``reference_true`` (list of gold answers; alias ``gold`` as a string or list), ``reference_false`` (list,
  optional), ``context`` (optional; given to the judge), ``question`` (optional; the judge sees it instead of the
  prompt), ``id`` (optional; defaults to the line number).
- ``builder: {name: factworld, n_test: 40, seed: 0, ...}`` — the held-out split of
  :func:`alignkit.builders.factworld.build_factworld` (keyword arguments passed through).

``judge`` is a :func:`alignkit.judges.get_judge` spec (``reference``, ``vllm:MODEL``, ``openai:URL``,
``ensemble:...``), with ``judge_kwargs``. An item counts as hallucinated when the judge gives a 0–10 score below 5,
or, without a score, when its binary label is 1. Judge failures (status != ok) are counted in ``judge_failures`` and
left out of the rates, never labelled.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

from alignkit.data.cache import ItemCache, run_cached
from alignkit.data.io import iter_jsonl
from alignkit.evals.metrics.stats import mean_metric
from alignkit.evals.tasks.base import Metric, Task, TaskResult, register_task
from alignkit.inference.base import Backend, ModelSpec, SamplingConfig
from alignkit.judges.prompts import RUBRIC_THRESHOLD  # the paper: hallucinated when the 0–10 score is below it
from alignkit.utils import model_identity, stable_hash


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def normalise_item(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Check one raw item and give it the task's field names; ``where`` is 'file:line' for error messages."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: an item must be a JSON object")
    prompt = row.get("prompt")
    if not (isinstance(prompt, str) and prompt.strip()) and not (
            isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt)):
        raise ValueError(f"{where}: field 'prompt' must be a non-empty string or a list of chat messages")
    true = _as_list(row.get("reference_true", row.get("gold")))
    false = _as_list(row.get("reference_false"))
    if not true:
        raise ValueError(f"{where}: field 'reference_true' (or 'gold') must hold at least one answer")
    question = row.get("question") or (prompt if isinstance(prompt, str) else prompt[-1]["content"])
    return {"id": str(row.get("id", where)), "prompt": prompt, "question": question, "reference_true": true,
            "reference_false": false, "context": row.get("context")}


def load_items(config: dict[str, Any]) -> list[dict[str, Any]]:
    if config.get("items") and config.get("builder"):
        raise ValueError("hallucination task: give either 'items' or 'builder', not both")
    if config.get("items"):
        path = Path(config["items"])
        if not path.is_file():
            raise FileNotFoundError(f"hallucination items not found: {path}")
        items = [normalise_item(row, f"{path}:{lineno}") for lineno, row in iter_jsonl(path)]
    elif config.get("builder"):
        spec = dict(config["builder"])
        name = spec.pop("name", "factworld")
        if name != "factworld":
            raise ValueError(f"hallucination task: unknown builder {name!r} (known: factworld)")
        from alignkit.builders.factworld import build_factworld

        spec.setdefault("n_train", 0)
        spec.setdefault("rho", 0.0)
        spec.setdefault("seed", 0)
        _, test = build_factworld(**spec)
        items = [normalise_item(r, f"factworld[{i}]") for i, r in enumerate(test)]
    else:
        raise ValueError("hallucination task needs 'items' (a JSONL path) or 'builder' (e.g. {name: factworld})")
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("hallucination items: duplicate ids")
    limit = config.get("limit")
    return items[:limit] if limit else items


def is_hallucinated(judgement: dict[str, Any]) -> float | None:
    """1.0 / 0.0 from a judgement record, or None when the judge failed."""
    if judgement.get("status") != "ok":
        return None
    if judgement.get("score") is not None:
        return float(judgement["score"] < RUBRIC_THRESHOLD)
    return None if judgement.get("label") is None else float(judgement["label"])


def check_builder(spec: dict[str, Any], where: Callable[[str], str]) -> None:
    """A ``builder:`` spec is checked like a recipe: its keys against ``build_factworld``'s parameters, their types
    against its annotations (``rho: "0.3"`` is an error naming the field, not a TypeError deep in the builder)."""
    import inspect
    import typing

    from alignkit.builders.factworld import build_factworld
    from alignkit.config import did_you_mean, matches, type_name

    name = spec.get("name", "factworld")
    if name != "factworld":
        raise ValueError(f"{where('builder.name')}: field builder.name: unknown builder {name!r} (known: factworld)")
    hints = typing.get_type_hints(build_factworld)
    params = [p for p in inspect.signature(build_factworld).parameters if p != "progress"]
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in params:
            hint = did_you_mean(key, params) or f" (known: {', '.join(params)})"
            raise ValueError(f"{where('builder.' + key)}: field builder.{key}: unknown factworld option{hint}")
        if not matches(value, hints.get(key, Any)):
            raise ValueError(f"{where('builder.' + key)}: field builder.{key}: expected {type_name(hints[key])}, "
                             f"got {type(value).__name__} {value!r}")
    if "n_test" not in spec:
        raise ValueError(f"{where('builder')}: field builder.n_test: the number of held-out items is required")


def _judge_status(judgements: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(j.get("status", "error") for j in judgements).items()))


@register_task
class Hallucination(Task):
    """Config: ``items`` or ``builder`` (see the module docstring), ``judge`` ("reference"), ``judge_kwargs``,
    ``max_new_tokens`` (128), ``limit``, ``batch_size`` (16).

    Answers and verdicts are cached apart: a verdict is keyed on the judge's identity (its model by content, mode,
    prompt version) and the answer, and a transient judge failure (timeout, lost connection, HTTP 5xx) is not cached,
    so a rerun asks the judge again without generating again. Failures are counted (``judge_failures``; per status
    in ``extra["judge_status"]``, shown in report.md), never labelled."""

    name = "hallucination"
    version = 1
    options = {"items": str, "builder": dict, "judge": str, "judge_kwargs": dict, "max_new_tokens": int}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._judge = None

    @classmethod
    def check_config(cls, config: dict[str, Any], where: Callable[[str], str] | None = None) -> None:
        super().check_config(config, where)
        if isinstance(config.get("builder"), dict):
            check_builder(config["builder"], where or (lambda key: f"task {cls.name}"))

    @property
    def judge(self) -> Any:
        if self._judge is None:
            from alignkit.judges import get_judge

            self._judge = get_judge(str(self.config.get("judge", "reference")),
                                    **dict(self.config.get("judge_kwargs") or {}))
        return self._judge

    def run(self, backend: Backend, model: ModelSpec, cache: ItemCache | None) -> TaskResult:
        from alignkit.judges.base import JudgeItem, is_transient

        items = load_items(self.config)
        sampling = SamplingConfig(max_new_tokens=int(self.config.get("max_new_tokens", 128)))
        batch_size = int(self.config.get("batch_size", 16))
        progress = self.config.get("progress", True)
        ident = model_identity(backend, model)
        gen_keys = [self.item_key("answer", ident, sampling.max_new_tokens, stable_hash(it)) for it in items]
        outputs = run_cached(cache, gen_keys, lambda idx: [o.strip() for o in backend.generate(
            [items[i]["prompt"] for i in idx], sampling, adapter=model.adapter)],
            batch_size=batch_size, desc=f"{self.name} [{model.label}]", progress=progress)

        judge = self.judge
        judge_id = getattr(judge, "cache_key", judge.name)
        judge_keys = [self.item_key("verdict", judge_id, stable_hash(it), out) for it, out in zip(items, outputs)]

        def judge_batch(idx: list[int]) -> list[dict[str, Any]]:
            judge_items = [JudgeItem(prompt=items[i]["question"], response=outputs[i],
                                     reference_true=tuple(items[i]["reference_true"]),
                                     reference_false=tuple(items[i]["reference_false"]),
                                     context=items[i]["context"], id=items[i]["id"]) for i in idx]
            judgements = judge.judge(judge_items)
            if len(judgements) != len(judge_items):
                raise RuntimeError(f"judge returned {len(judgements)} judgements for {len(judge_items)} items")
            return [j.as_dict() for j in judgements]

        verdicts = run_cached(cache, judge_keys, judge_batch, batch_size=batch_size,
                              desc=f"{self.name} judge [{model.label}]", progress=progress,
                              keep=lambda j: not is_transient(j))
        records = [{"id": it["id"], "question": it["question"], "output": out, "judgement": j}
                   for it, out, j in zip(items, outputs, verdicts)]
        flags = [is_hallucinated(r["judgement"]) for r in records]
        for r, f in zip(records, flags):
            r["hallucinated"] = f
        ok = [f for f in flags if f is not None]
        scores = [float(r["judgement"]["score"]) for r in records
                  if r["judgement"].get("status") == "ok" and r["judgement"].get("score") is not None]
        failures = len(flags) - len(ok)
        metrics = {"hallucination_rate": mean_metric(ok, higher_is_better=False),
                   "judge_failures": Metric(value=float(failures), n=len(flags), higher_is_better=False)}
        if scores:
            metrics["factuality_score"] = mean_metric(scores)
        return TaskResult(self.name, self.version, model.label, metrics, records,
                          extra={"judge": judge.name, "n_judged": len(ok), "n_failed": failures,
                                 "judge_status": _judge_status(verdicts)})
