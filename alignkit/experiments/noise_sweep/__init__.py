"""The noise-robustness experiment: how each method holds up under two independent kinds of label noise.

Noise (per seed, on clean fact-world pairs where every chosen answer is factual and every rejected one hallucinated):

- **order noise ε** — a seeded share ε of the pairs has chosen/rejected swapped, the hallucination flags travelling
  with their responses (:func:`alignkit.data.inject_noise`), as when annotators misorder a pair a judge labelled;
- **judge noise δ** — after that, every ``h_w``/``h_l`` flag is flipped independently with probability δ
  (:func:`alignkit.data.transforms.inject_judge_noise`, true flags kept per row), as an imperfect hallucination judge
  would. Only the methods that read the flags (F-DPO and "DPO + flip") see it; the others are trained once per
  (seed, ε) and appear unchanged in every δ panel.

Methods (equal budget: one recipe, the same steps, batch and learning rate): ``dpo``, ``cdpo@true`` / ``rdpo@true``
(ε of the loss set to the injected ε — an oracle no real user has; at ε = 0 they are plain DPO and reuse its run),
``cdpo@0.1`` / ``rdpo@0.1`` (a fixed ε), ``ipo``, ``fdpo`` (flip + margin λ) and ``dpo+flip`` (flip, λ = 0: the
F-DPO paper's ablation that separates the flip from the margin).

Held-out metrics (test items never trained or calibrated on):

(a) **preference accuracy** — share of held-out clean pairs (factual vs contradicting answer) whose implicit reward
    log π(y|x) − log π_ref(y|x) ranks the factual answer higher (ties count ½; the reference is the base, i.e. the
    adapter disabled). Log-likelihoods only. ``loglik_acc``, the policy's own log-likelihood ranking, is reported
    beside it because the base's implicit reward is 0 everywhere (accuracy ½ by definition), and ``reward_margin``,
    the mean reward gap in nats, because the accuracy saturates at 1.0 on easy pairs;
(b) **hallucination rate** of greedy answers to held-out questions (reference judge);
(c) **degeneracy guards** on the same answers: mean length (words), distinct-2, share of empty and of repeated
    (looping) outputs.

Cells are means over seeds; intervals are percentile bootstraps (``scipy.stats.bootstrap``) over items, resampled
within each seed; the seed-to-seed range is reported beside them. Before any comparison a calibration on a
validation split picks the learning rate and steps (see :func:`calibrate`).

Everything lands under ``output_dir``; finished data, runs and evaluations are reused by a rerun (resumable). With
``record_dir`` the small per-run results are also kept apart from the adapters, so a committed record resumes the
sweep on another machine. Cells whose training data is identical (F-DPO and DPO + flip at δ = 0: the flip undoes
every order swap) are trained once and say so (``same_training_as`` in ``results.json``).

Modules: ``config`` (methods, YAML fields), ``data`` (splits, noised training files), ``evaluate`` (held-out scoring
and degeneracy guards), ``stats`` (cell summaries, bootstrap intervals), ``sweep`` (training runs, calibration, the
sweep), ``report`` (plots, report.md).
"""

from alignkit.experiments.noise_sweep.config import (
    CalibrationConfig,
    DegeneracyConfig,
    NoiseSweepConfig,
    check_method,
    method_keys,
    reads_flags,
)
from alignkit.experiments.noise_sweep.data import SeedData, heldout_pairs, noisy_train, seed_data, training_view
from alignkit.experiments.noise_sweep.evaluate import Evaluator, degeneracy_stats, degenerate_reasons, per_item_scores
from alignkit.experiments.noise_sweep.report import plot_metric, write_report
from alignkit.experiments.noise_sweep.stats import METRICS, seeds_bootstrap, single_interval, summarise_cell
from alignkit.experiments.noise_sweep.sweep import (
    RESULTS_VERSION,
    Record,
    calibrate,
    count_runs,
    run_noise_sweep,
    scored_base,
    scored_run,
    sweep_plan,
    train_key,
    train_run,
)

__all__ = [
    "METRICS", "RESULTS_VERSION", "CalibrationConfig", "DegeneracyConfig", "Evaluator", "NoiseSweepConfig", "Record",
    "SeedData",
    "calibrate", "check_method", "count_runs", "degeneracy_stats", "degenerate_reasons", "heldout_pairs",
    "method_keys", "noisy_train", "per_item_scores", "plot_metric", "reads_flags", "run_noise_sweep", "seed_data",
    "scored_base", "scored_run", "seeds_bootstrap", "single_interval", "summarise_cell", "sweep_plan", "train_key",
    "train_run", "training_view", "write_report",
]
