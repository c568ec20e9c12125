"""Evaluation tasks. Importing this package registers every task (one import line per task module)."""

from alignkit.evals.tasks import (
    consistency,  # noqa: E402,F401
    hallucination,  # noqa: E402,F401
    icl,  # noqa: E402,F401
    sycophancy,  # noqa: E402,F401
    truthfulqa,  # noqa: E402,F401
)
from alignkit.evals.tasks.base import TASKS, Metric, Task, TaskResult, get_task, register_task  # noqa: F401
