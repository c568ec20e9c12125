"""Metric functions, separate from model calls (pure: lists/arrays in, numbers out).

Each area lives in its own module and is re-exported here with one import line per module.
"""

from alignkit.evals.metrics.consistency import (  # noqa: E402,F401
    consistency_summary,
    fleiss_observed_agreement,
    format_predictions,
    per_format_f1,
)
from alignkit.evals.metrics.icl import accuracy_curve, rank_prediction  # noqa: E402,F401
from alignkit.evals.metrics.stats import bootstrap_ci, mean_metric  # noqa: E402,F401
from alignkit.evals.metrics.sycophancy import number_of_flips, sycophancy_summary, turn_of_flip  # noqa: E402,F401
from alignkit.evals.metrics.truthfulqa import mc1_correct, mc2_score, truthful_by_similarity  # noqa: E402,F401
