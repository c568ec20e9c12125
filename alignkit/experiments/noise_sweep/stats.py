"""Cell summaries: means over seeds with bootstrap intervals over items."""

from __future__ import annotations

import statistics
from typing import Any

from alignkit.experiments.noise_sweep.config import NoiseSweepConfig
from alignkit.experiments.noise_sweep.evaluate import degeneracy_stats


def seeds_bootstrap(per_seed: list[list[float]], *, n_resamples: int, confidence: float, seed: int = 0,
                    ) -> dict[str, Any]:
    """Mean over seeds of the per-seed item means, its percentile-bootstrap interval with items resampled within
    each seed (scipy.stats.bootstrap, independent samples), and the range of the per-seed means."""
    import numpy as np
    from scipy.stats import bootstrap

    samples = [np.asarray(s, dtype=float) for s in per_seed if len(s)]
    if not samples:
        return {"mean": None, "low": None, "high": None, "seed_min": None, "seed_max": None, "n_seeds": 0, "n": 0}
    means = [float(s.mean()) for s in samples]
    mean = statistics.fmean(means)
    if all(len(s) > 1 and float(s.min()) == float(s.max()) for s in samples) or any(len(s) < 2 for s in samples):
        low = high = mean  # no item variation (scipy refuses a degenerate sample)
    else:
        def stat(*xs: Any, axis: int = -1) -> Any:
            return np.mean([x.mean(axis=axis) for x in xs], axis=0)

        res = bootstrap(tuple(samples), stat, n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", vectorized=True, paired=False, random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"mean": mean, "low": low, "high": high, "seed_min": min(means), "seed_max": max(means),
            "n_seeds": len(samples), "n": int(sum(len(s) for s in samples))}


METRICS = {  # name -> (per-item field, higher is better, label)
    "reward_acc": ("reward_correct", True, "held-out preference accuracy (implicit reward)"),
    "reward_margin": ("reward_margin", True, "held-out implicit reward margin (nats, factual − hallucinated)"),
    "loglik_acc": ("loglik_correct", True, "held-out log-likelihood ranking accuracy"),
    "hallucination_rate": ("hallucinated", False, "hallucination rate of generated answers"),
}


def summarise_cell(docs: list[dict[str, Any]], cfg: NoiseSweepConfig) -> dict[str, Any]:
    """Metrics of one (method, ε, δ) cell from its per-seed evaluation docs."""
    out: dict[str, Any] = {}
    for name, (fld, _, _) in METRICS.items():
        per_seed = [[v for v in d.get(fld, []) if v is not None] for d in docs]
        out[name] = seeds_bootstrap(per_seed, n_resamples=cfg.n_resamples, confidence=cfg.confidence)
    out["judge_failures"] = sum(sum(1 for v in d["hallucinated"] if v is None) for d in docs)
    stats = [degeneracy_stats(d["outputs"]) for d in docs]
    out["degeneracy"] = {k: statistics.fmean(s[k] for s in stats) for k in stats[0]} if stats else {}
    return out


def single_interval(values: list[float], cfg: NoiseSweepConfig) -> dict[str, Any]:
    return seeds_bootstrap([values], n_resamples=cfg.n_resamples, confidence=cfg.confidence)
