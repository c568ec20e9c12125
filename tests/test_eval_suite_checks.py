"""Suites are checked like recipes and the eval output stays where it belongs (issue 11, item 10): a misspelt task
option or a wrongly typed builder option is an error naming the file, line and field; the default ``--out`` cannot
leave ``runs/eval/``; task plots are written through the atomic-write helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.evals.runner import Suite
from alignkit.evals.tasks import get_task


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    return p


def test_misspelt_task_option_names_file_line_and_field(tmp_path):
    p = _write(tmp_path, "name: s\ntasks:\n  - task: truthfulqa_mc\n    limt: 5\n")
    with pytest.raises(ValueError) as e:
        Suite.from_yaml(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:4: tasks[0] (truthfulqa_mc): field limt: unknown option")
    assert "did you mean 'limit'?" in msg


def test_wrong_types_name_the_field(tmp_path):
    p = _write(tmp_path, "name: s\ntasks:\n  - task: icl_flip\n    k: four\n")
    with pytest.raises(ValueError, match=r"suite\.yaml:4: .*field k: expected int, got str 'four'"):
        Suite.from_yaml(p)
    p = _write(tmp_path, "name: s\ntasks:\n  - task: hallucination\n    builder:\n      n_test: 5\n"
                         "      rho: \"0.3\"\n")
    with pytest.raises(ValueError, match=r"suite\.yaml:6: .*field builder\.rho: expected float, got str '0\.3'"):
        Suite.from_yaml(p)
    p = _write(tmp_path, "name: s\ntasks:\n  - task: hallucination\n    builder: {n_tset: 5}\n")
    with pytest.raises(ValueError, match=r"field builder\.n_tset: unknown factworld option \(did you mean 'n_test'"):
        Suite.from_yaml(p)


def test_misspelt_suite_key_and_programmatic_task(tmp_path):
    p = _write(tmp_path, "name: s\nbackend_option: {}\ntasks:\n  - task: truthfulqa_mc\n")
    with pytest.raises(ValueError, match=r"suite\.yaml:2: field backend_option: .*did you mean 'backend_options'"):
        Suite.from_yaml(p)
    with pytest.raises(ValueError, match="field max_new_tokns: unknown option of task 'truthfulqa_gen' "
                                         r"\(did you mean 'max_new_tokens'\?\)"):
        get_task("truthfulqa_gen", max_new_tokns=8)


def test_shipped_suites_pass_the_checks():
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "evals").glob("*.yaml")):
        assert Suite.from_yaml(path).tasks, path


@pytest.mark.parametrize("name, expected", [
    ("../../x", "x"), ("/etc/passwd", "etc_passwd"), ("..", "suite"), ("quick", "quick"), ("a b/c", "a_b_c"),
])
def test_default_out_dir_stays_under_runs_eval(name, expected, tmp_path):
    from alignkit.cli.eval import default_out_dir

    out = default_out_dir(name)
    assert out == Path("runs") / "eval" / expected
    root = (tmp_path / "runs" / "eval").resolve()
    assert (tmp_path / out).resolve().parent == root


def test_task_plots_are_written_atomically(tmp_path, monkeypatch):
    """icl_flip and sycophancy plots go through alignkit.utils.atomic_path (no torn PNG after a crash)."""
    from alignkit.evals.tasks import icl, sycophancy
    from alignkit.evals.tasks.base import TaskResult
    from alignkit.utils import atomic_path

    used: list[Path] = []

    def recording(path, suffix=""):
        used.append(Path(path))
        return atomic_path(path, suffix)

    monkeypatch.setattr(icl, "atomic_path", recording)
    monkeypatch.setattr(sycophancy, "atomic_path", recording)
    curve = {"natural": {"flip_pct": [0, 100], "accuracy": [0.9, 0.2], "accuracy_flipped_targets": [0.1, 0.8]}}
    icl_paths = icl.FlippedLabelICL.plot([TaskResult("icl_flip", 1, "m", {}, extra={"curves": curve,
                                                                                      "chance": [0.5]})], tmp_path)
    syc = TaskResult("sycophancy_pushback", 1, "m", {}, extra={"tof": [5, 2, 0], "nof": [0, 1, 2],
                                                              "strategy": "plain", "judge": "reference"})
    syc_paths = sycophancy.SycophancyPushback.plot([syc], tmp_path)
    assert used == icl_paths + syc_paths and len(used) == 2
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in used)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in used)  # no temp files left


def test_choice_options_name_their_choices(tmp_path):
    p = _write(tmp_path, "name: s\ntasks:\n  - task: sycophancy_debate\n    strategy: flattery\n")
    with pytest.raises(ValueError, match=r"suite\.yaml:4: .*field strategy: expected one of 'plain', "):
        Suite.from_yaml(p)
    with pytest.raises(ValueError, match="field similarity: expected one of 'rougeL', 'bleu', got str 'rouge'"):
        get_task("truthfulqa_gen", similarity="rouge")
