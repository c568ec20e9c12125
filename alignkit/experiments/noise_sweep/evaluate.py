"""Held-out scoring of one model: pair log-likelihoods, greedy answers judged by the reference judge, and
the degeneracy guards on those answers; cached per model."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from alignkit.experiments.noise_sweep.config import DegeneracyConfig, NoiseSweepConfig
from alignkit.experiments.noise_sweep.data import heldout_pairs
from alignkit.utils import atomic_write_json, stable_hash

# 2: pair log-likelihoods from the backend's shared-prefix scorer (equal to the full computation within 1e-4)
EVAL_VERSION = 2
_WORD = re.compile(r"\w+|[^\w\s]")


def degeneracy_stats(outputs: list[str]) -> dict[str, float]:
    """Mean length in words, corpus distinct-2 (unique word bigrams / all bigrams), share of empty answers and of
    looping answers (some word 4-gram occurs twice)."""
    toks = [_WORD.findall(o.lower()) for o in outputs]
    bigrams = [tuple(t[i:i + 2]) for t in toks for i in range(len(t) - 1)]

    def loops(t: list[str]) -> bool:
        grams = [tuple(t[i:i + 4]) for i in range(len(t) - 3)]
        return len(grams) != len(set(grams))

    n = max(len(outputs), 1)
    return {"mean_length": statistics.fmean(len(o.split()) for o in outputs) if outputs else 0.0,
            "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
            "empty": sum(1 for o in outputs if not o.strip()) / n,
            "repeated": sum(1 for t in toks if loops(t)) / n}


def degenerate_reasons(stats: dict[str, float], base: dict[str, float], bounds: DegeneracyConfig) -> list[str]:
    reasons = []
    if stats["empty"] > bounds.max_empty:
        reasons.append(f"empty {stats['empty']:.2f} > {bounds.max_empty}")
    if stats["repeated"] > bounds.max_repeated:
        reasons.append(f"repeated {stats['repeated']:.2f} > {bounds.max_repeated}")
    if stats["distinct_2"] < bounds.min_distinct2_ratio * base["distinct_2"]:
        reasons.append(f"distinct-2 {stats['distinct_2']:.2f} < {bounds.min_distinct2_ratio} × base")
    lo, hi = bounds.length_ratio
    if not lo * base["mean_length"] <= stats["mean_length"] <= hi * base["mean_length"]:
        reasons.append(f"mean length {stats['mean_length']:.1f} outside [{lo}, {hi}] × base")
    return reasons


class Evaluator:
    """Scores the base and adapters on a fixed item set with one backend; caches per-item results as JSON files."""

    def __init__(self, cfg: NoiseSweepConfig, base_path: str) -> None:
        self.cfg = cfg
        self.base_path = base_path
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from alignkit.inference import get_backend

            self._backend = get_backend(self.cfg.backend, self.base_path, **self.cfg.backend_options)
        return self._backend

    def forget(self, adapter: str) -> None:
        """After an adapter is scored: the hf backend is dropped (rebuilt on the next call, seconds for a small
        model), so a hundred adapters never pile up in one peft model; a vLLM engine is kept."""
        if self.cfg.backend == "hf":
            self.close()

    def _requests(self, items: list[dict]) -> list[tuple[str, str]]:
        """(context, answer) pairs: a chat prompt rendered with the chat template, as generation sees it."""
        tok = self.backend.tokenizer
        reqs = []
        for prompt, good, bad in heldout_pairs(items):
            ctx = prompt if isinstance(prompt, str) else tok.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True)
            reqs += [(ctx, good), (ctx, bad)]
        return reqs

    def logprobs(self, items: list[dict], adapter: str | None) -> list[list[float]]:
        """[log P(factual | prompt), log P(hallucinated | prompt)] per item, tokenised as lm-evaluation-harness does
        (:func:`alignkit.inference.encode_pair`). The hf backend's shared-prefix scorer computes each prompt once
        for its two answers, and the chat template's system turn once for all items."""
        res = self.backend.loglikelihood(self._requests(items), adapter=adapter)
        return [[res[2 * i].logprob, res[2 * i + 1].logprob] for i in range(len(items))]

    def answers(self, items: list[dict], n: int, adapter: str | None) -> tuple[list[str], list[float | None]]:
        from alignkit.evals.tasks.hallucination import is_hallucinated
        from alignkit.inference.base import SamplingConfig
        from alignkit.judges import get_judge
        from alignkit.judges.base import JudgeItem

        chosen = items[:n]
        outs = [o.strip() for o in self.backend.generate([it["prompt"] for it in chosen],
                                                         SamplingConfig(max_new_tokens=self.cfg.max_new_tokens),
                                                         adapter=adapter)]
        judged = get_judge("reference").judge([
            JudgeItem(prompt=it["question"], response=o, reference_true=tuple(it["reference_true"]),
                      reference_false=tuple(it["reference_false"]), context=it["context"], id=it["id"])
            for it, o in zip(chosen, outs)])
        return outs, [is_hallucinated(j.as_dict()) for j in judged]

    def settings_key(self, items: list[dict], n_generate: int) -> str:
        """What an evaluation depends on besides the model's weights: items, generation and scoring settings, the
        base model's name and the evaluation code's version."""
        return stable_hash([EVAL_VERSION, [it["id"] for it in items], n_generate, self.cfg.max_new_tokens,
                            self.cfg.backend, self.cfg.backend_options, self.cfg.model])

    def evaluate(self, path: Path, items: list[dict], n_generate: int, adapter: str | None,
                 ref: list[list[float]] | None) -> dict[str, Any]:
        """Per-item scores of one model, cached in ``path`` (keyed by the settings and the adapter's files)."""
        from alignkit.inference import adapter_fingerprint

        key = stable_hash([self.settings_key(items, n_generate), adapter_fingerprint(adapter), self.base_path])
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("key") == key:
                if ref is not None:  # scores derived from the cached log-probabilities follow the current code
                    doc.update(per_item_scores(doc["logprobs"], ref))
                return doc
        lp = self.logprobs(items, adapter)
        outs, halluc = self.answers(items, n_generate, adapter)
        doc = {"key": key, "adapter": adapter, "logprobs": lp, "outputs": outs, "hallucinated": halluc}
        if ref is not None:
            doc.update(per_item_scores(lp, ref))
        atomic_write_json(path, doc)
        if adapter is not None:
            self.forget(adapter)
        return doc

    def close(self) -> None:
        if self._backend is not None and hasattr(self._backend, "close"):
            self._backend.close()
        self._backend = None


def per_item_scores(policy: list[list[float]], ref: list[list[float]]) -> dict[str, list[float]]:
    """reward_correct: 1 / ½ / 0 as the implicit reward ranks the factual answer above / level with / below the
    hallucinated one; reward_margin: by how much, in nats (the implicit reward of the factual answer minus that of the
    hallucinated one; it keeps ranking runs where the accuracy sits at 1.0); loglik_correct: the ranking by the
    policy's own log-likelihoods."""
    def rank(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    return {"reward_correct": [rank(p[0] - r[0], p[1] - r[1]) for p, r in zip(policy, ref)],
            "reward_margin": [(p[0] - r[0]) - (p[1] - r[1]) for p, r in zip(policy, ref)],
            "loglik_correct": [rank(p[0], p[1]) for p in policy]}
