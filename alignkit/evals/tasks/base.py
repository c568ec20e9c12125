"""The task interface (lm-evaluation-harness style): declarative, versioned, registered by name.

A task gets a backend and a ModelSpec and returns a TaskResult; per-item results go through an ItemCache (keyed by
task, version, model and item) so a rerun after a crash continues where it stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from alignkit.inference.base import Backend, ModelSpec
from alignkit.registry import Registry
from alignkit.utils import cache_key


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


# options every task takes; ``progress`` and ``limit`` are also set by the runner
COMMON_OPTIONS: dict[str, Any] = {"limit": int | None, "batch_size": int, "progress": bool}


class Task(ABC):
    name: ClassVar[str]
    version: ClassVar[int] = 1
    # the task's own config keys and their types (besides COMMON_OPTIONS): a suite's task entry is checked against
    # them like a recipe, so a misspelt ``limt: 5`` is an error naming the field instead of a silently full run
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        self.check_config(config)
        self.config = config

    @classmethod
    def check_config(cls, config: dict[str, Any], where: Callable[[str], str] | None = None) -> None:
        """Raise ``ValueError("WHERE: field KEY: ...")`` for an unknown or wrongly typed option; ``where(key)`` gives
        the location (``suite.yaml:LINE``; default: the task name)."""
        from alignkit.config import check_fields

        where = where or (lambda key: f"task {cls.name}")
        check_fields(config, {**COMMON_OPTIONS, **cls.options}, where,
                     unknown=f"unknown option of task {cls.name!r}{{hint}}", list_known=True)

    def item_key(self, *parts: Any) -> str:
        """A cache key for one item: the task's name and version (a new version never reads old results), then
        ``parts`` (model identity, the config that changes results, the item)."""
        return cache_key(self.name, self.version, *parts)

    @abstractmethod
    def run(self, backend: Backend, model: ModelSpec, cache: Any) -> TaskResult:
        """Evaluate ``model`` on this task. ``cache`` is an alignkit.data.cache.ItemCache (or None)."""

    @classmethod
    def plot(cls, results: list[TaskResult], out_dir: Path) -> list[Path]:
        """Task-specific figures for the report (e.g. the flip-% accuracy curve, ToF/NoF histograms), drawn from
        ``TaskResult.extra`` of every model evaluated on this task. Write PNGs under ``out_dir`` (matplotlib, Agg
        backend) and return their paths; the report writer embeds them. Default: none (the writer always draws
        the per-model metric bars itself)."""
        return []


# name -> Task class (alignkit.registry: a second task under a taken name is refused)
TASKS: Registry = Registry("task")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    return TASKS.register(cls.name, cls)


def get_task(name: str, **config: Any) -> Task:
    return TASKS[name](**config)  # an unknown name: KeyError (alignkit.registry.UnknownName) listing the known ones
