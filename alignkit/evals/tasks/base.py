"""The task interface (lm-evaluation-harness style): declarative, versioned, registered by name.

A task gets a backend and a ModelSpec and returns a TaskResult; per-item results go through an ItemCache (keyed by
task, version, model and item) so a rerun after a crash continues where it stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from alignkit.evals.backends.base import Backend, ModelSpec


@dataclass
class Metric:
    value: float
    ci_low: float | None = None  # 95% interval (bootstrap unless the task says otherwise)
    ci_high: float | None = None
    n: int = 0
    higher_is_better: bool = True


@dataclass
class TaskResult:
    task: str
    version: int
    model: str
    metrics: dict[str, Metric]
    items: list[dict[str, Any]] = field(default_factory=list)  # per-item records (prompt, output, judgement, ...)
    extra: dict[str, Any] = field(default_factory=dict)  # curves etc. for plots (e.g. accuracy per flip %)


class Task(ABC):
    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, **config: Any) -> None:
        self.config = config

    @abstractmethod
    def run(self, backend: Backend, model: ModelSpec, cache: Any) -> TaskResult:
        """Evaluate ``model`` on this task. ``cache`` is an alignkit.evals.cache.ItemCache (or None)."""

    @classmethod
    def plot(cls, results: list[TaskResult], out_dir: Path) -> list[Path]:
        """Task-specific figures for the report (e.g. the flip-% accuracy curve, ToF/NoF histograms), drawn from
        ``TaskResult.extra`` of every model evaluated on this task. Write PNGs under ``out_dir`` (matplotlib, Agg
        backend) and return their paths; the report writer embeds them. Default: none (the writer always draws
        the per-model metric bars itself)."""
        return []


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} registered twice")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, **config: Any) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**config)
