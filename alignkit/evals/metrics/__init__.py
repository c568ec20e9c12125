"""Metric functions, separate from model calls (pure: lists/arrays in, numbers out).

Each area lives in its own module and is re-exported here with one import line per module.
"""

from alignkit.evals.metrics.icl import accuracy_curve, rank_prediction  # noqa: E402,F401
from alignkit.evals.metrics.sycophancy import number_of_flips, sycophancy_summary, turn_of_flip  # noqa: E402,F401
