"""Item cache (torn last line, corrupt middle line, resume), bootstrap intervals, the report writer and its
task plot hook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from alignkit.data.cache import ItemCache, run_cached
from alignkit.evals.metrics.stats import bootstrap_ci, mean_metric
from alignkit.evals.report import SCHEMA_VERSION, markdown_table, write_report
from alignkit.evals.tasks.base import TASKS, Metric, Task, TaskResult


def test_cache_roundtrip_and_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    c = ItemCache(path)
    c.put_many([("a", {"x": 1}), ("b", [1, 2])])
    c.put("c", "three")
    with open(path, "a") as fh:
        fh.write('{"key": "d", "val')  # a crash mid-write
    c2 = ItemCache(path)
    assert c2.torn_lines == 1 and len(c2) == 3 and c2.get("b") == [1, 2] and "d" not in c2
    c2.put("d", 4)  # the torn tail was truncated away, so the append lands on its own line
    c3 = ItemCache(path)
    assert c3.torn_lines == 0 and c3.get("d") == 4 and len(path.read_text().splitlines()) == 4


def test_cache_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "value": 1}\n{"key": "b", "value": 2}')
    c = ItemCache(path)
    assert c.get("b") == 2 and c.torn_lines == 0
    c.put("c", 3)
    assert ItemCache(path).get("c") == 3


def test_cache_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "value": 1}\nnot json\n{"key": "b", "value": 2}\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2: corrupt cache record"):
        ItemCache(path)


def test_run_cached_computes_only_missing_items(tmp_path):
    cache = ItemCache(tmp_path / "c.jsonl")
    calls: list[list[int]] = []

    def square(idx):
        calls.append(list(idx))
        return [i * i for i in idx]

    keys = [f"k{i}" for i in range(5)]
    assert run_cached(cache, keys[:3], square, batch_size=2, progress=False) == [0, 1, 4]
    assert calls == [[0, 1], [2]]
    calls.clear()
    resumed = ItemCache(tmp_path / "c.jsonl")
    assert run_cached(resumed, keys, square, batch_size=2, progress=False) == [0, 1, 4, 9, 16]
    assert calls == [[3, 4]] and resumed.hits == 3


def test_bootstrap_interval():
    x = np.random.default_rng(1).normal(0.3, 1.0, size=400)
    mean, lo, hi = bootstrap_ci(x, seed=0)
    assert mean == pytest.approx(x.mean())
    assert lo < mean < hi
    # ≈ 1.96 standard errors each side for a mean of normal data
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(x, seed=0) == (mean, lo, hi)  # deterministic per seed
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert all(np.isnan(v) for v in bootstrap_ci([]))
    m = mean_metric([0, 1, 1, 1], higher_is_better=False)
    assert (m.value, m.n, m.higher_is_better) == (0.75, 4, False) and m.ci_low <= 0.75 <= m.ci_high


class _CurveTask(Task):
    """A task that contributes its own figure through the ``plot`` hook (the way the ICL task draws flip curves)."""

    name: ClassVar[str] = "_test_curve_task"

    def run(self, backend, model, cache):  # pragma: no cover - not run here
        raise NotImplementedError

    @classmethod
    def plot(cls, results, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        for r in results:
            ax.plot(r.extra["flip"], r.extra["acc"], label=r.model)
        path = Path(out_dir) / "curve.png"
        fig.savefig(path)
        plt.close(fig)
        return [path]


@pytest.fixture
def curve_task():
    TASKS[_CurveTask.name] = _CurveTask
    yield _CurveTask
    del TASKS[_CurveTask.name]


def _results() -> list[TaskResult]:
    return [
        TaskResult("truthfulqa_mc", 1, "base", {"mc1": Metric(0.25, 0.1, 0.4, 20), "mc2": Metric(0.4, 0.3, 0.5, 20)},
                   items=[{"q": 1, "mc1": 0.0}]),
        TaskResult("truthfulqa_mc", 1, "fdpo", {"mc1": Metric(0.35, 0.2, 0.5, 20), "mc2": Metric(0.5, 0.4, 0.6, 20)},
                   items=[{"q": 1, "mc1": 1.0}]),
        TaskResult(_CurveTask.name, 1, "base", {"acc": Metric(0.6, 0.5, 0.7, 10)},
                   extra={"flip": [0, 50, 100], "acc": [0.8, 0.5, 0.3]}),
    ]


def test_markdown_table_has_one_row_per_metric_and_a_column_per_model():
    table = markdown_table(_results())
    lines = table.strip().splitlines()
    assert lines[0] == "| task | metric | n | base | fdpo |"
    assert "| truthfulqa_mc | mc1 ↑ | 20 | 0.250 [0.100, 0.400] | 0.350 [0.200, 0.500] |" in lines
    assert f"| {_CurveTask.name} | acc ↑ | 10 | 0.600 [0.500, 0.700] | — |" in lines


def test_write_report_outputs_and_plot_hook(tmp_path, curve_task):
    paths = write_report(_results(), tmp_path, suite={"name": "t", "version": 1, "backend": "hf"},
                         models=[{"label": "base", "base": "b", "adapter": None},
                                 {"label": "fdpo", "base": "b", "adapter": "/a"}])
    doc = json.loads(paths["results"].read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["results"]) == 3
    assert doc["results"][1]["metrics"]["mc1"] == {"value": 0.35, "ci_low": 0.2, "ci_high": 0.5, "n": 20,
                                                   "higher_is_better": True}
    items = (tmp_path / doc["results"][1]["items_file"]).read_text().splitlines()
    assert [json.loads(x) for x in items] == [{"q": 1, "mc1": 1.0}]
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == sorted(["truthfulqa_mc_metrics.png", f"{_CurveTask.name}_metrics.png", "curve.png"])
    for p in pngs:
        assert (tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["report"].read_text()
    assert "![curve](plots/curve.png)" in md and "LoRA `/a`" in md
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes left no temp files
