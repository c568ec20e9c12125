"""CLI habits users bring from other tools: --version, listing what is registered."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

import alignkit


def test_version_flag_prints_the_installed_version():
    out = subprocess.run([sys.executable, "-m", "alignkit.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"alignkit {alignkit.__version__}"
    assert alignkit.__version__ == metadata.version("alignkit")  # one version, not two that drift


def _tiny_suite(tmp_path, shared_data):
    import yaml

    suite = {"name": "habits", "version": 1, "backend": "hf", "backend_options": {"hf": {"batch_size": 4}},
             "tasks": [{"task": "truthfulqa_mc", "limit": 3, "batch_size": 4,
                        "data": str(shared_data / "truthfulqa" / "truthful_qa_multiple_choice_validation.jsonl")}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_list_tasks_names_every_registered_task_with_its_version(capsys):
    from alignkit.cli import main
    from alignkit.evals.tasks import TASKS

    assert main(["eval", "--list-tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(TASKS)
    for name, cls in TASKS.items():
        assert any(line.split()[:2] == [name, f"v{cls.version}"] for line in lines), name


def test_include_path_registers_user_tasks(tmp_path, capsys):
    from alignkit.cli import main
    from alignkit.evals.tasks import TASKS

    user = tmp_path / "my_tasks"
    user.mkdir()
    (user / "answer_len.py").write_text(
        "from alignkit.evals.tasks.base import Task, TaskResult, register_task\n\n\n"
        "@register_task\nclass AnswerLength(Task):\n    \"\"\"A user task from --include-path.\"\"\"\n\n"
        "    name = 'user_answer_length'\n    version = 3\n\n"
        "    def run(self, backend, model, cache):\n"
        "        return TaskResult(self.name, self.version, model.label, {})\n")
    try:
        assert main(["eval", "--include-path", str(user), "--list-tasks"]) == 0
        assert any(line.split()[:2] == ["user_answer_length", "v3"] for line in capsys.readouterr().out.splitlines())
    finally:
        TASKS.pop("user_answer_length", None)


def test_eval_writes_lm_eval_layout_and_tensorboard_events(tmp_path, shared_data, tiny_model, capsys):
    import json

    from lm_eval.utils import make_table
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from alignkit.cli import main

    out = tmp_path / "out"
    assert main(["eval", "--suite", str(_tiny_suite(tmp_path, shared_data)), "--model", f"tiny={tiny_model}",
                 "--out", str(out), "--no-progress", "--output-format", "lm-eval", "--report-to", "tensorboard"]) == 0
    doc = json.loads((out / "results.json").read_text())
    prov = doc["provenance"]
    assert prov["versions"]["transformers"] and prov["backend"]["name"] == "hf"
    assert prov["tasks"][0]["task"] == "truthfulqa_mc" and prov["tasks"][0]["config"]["limit"] == 3
    assert prov["models"][0]["chat_template_sha256"]  # the SmolLM2 tokenizer ships a chat template
    lm = json.loads((out / "lm_eval" / "tiny" / "results.json").read_text())
    mc1 = next(r for r in doc["results"] if r["task"] == "truthfulqa_mc")["metrics"]["mc1"]["value"]
    assert lm["results"]["truthfulqa_mc"]["mc1,none"] == mc1
    assert "truthfulqa_mc" in make_table(lm)
    acc = EventAccumulator(str(out / "tensorboard" / "tiny"))
    acc.Reload()
    assert "truthfulqa_mc/mc1" in acc.Tags()["scalars"]
    assert acc.Scalars("truthfulqa_mc/mc1")[0].value == pytest.approx(mc1)


def test_report_to_a_missing_tracker_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from alignkit.evals.tracking import report_results

    # None in sys.modules makes `import wandb` fail as if it were not installed (wandb is in the dev extra), without
    # leaving a half-imported wandb behind for later tests the way a failing __import__ hook would
    monkeypatch.setitem(sys.modules, "wandb", None)
    doc = {"suite": {"name": "s"}, "results": [{"task": "t", "model": "m", "metrics": {"a": {"value": 1.0}}}]}
    with pytest.raises(RuntimeError, match=r"wandb.*not installed.*alignkit\[track\]"):
        report_results(doc, "", tmp_path, ["wandb"])


def test_train_show_fields_lists_alignkit_recipe_fields(capsys):
    from alignkit.cli import main

    assert main(["train", "--show-fields"]) == 0
    out = capsys.readouterr().out
    for name in ("dataset_path", "fdpo_lambda", "apply_flip", "loss_type"):
        assert f"\n{name} = " in out, name
    assert "trl.trainer.dpo_config.DPOConfig" in out or "DPOConfig" in out
    assert main(["train", "--show-fields", "f2c"]) == 0
    f2c = capsys.readouterr().out
    assert "\nalpha_noncons = 1.0" in f2c and "\ncollapse_threshold = " in f2c and "fdpo_lambda" not in f2c


def test_train_without_a_recipe_is_a_usage_error(capsys):
    from alignkit.cli import main

    assert main(["train"]) == 2
    assert "a recipe is required" in capsys.readouterr().err


def test_train_help_points_to_show_fields(capsys):
    from alignkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "alignkit train RECIPE.yaml [--accelerate-config FILE]" in out and "[--overwrite | --resume]" in out
    assert "list those, with defaults and help, with `alignkit train --show-fields [fdpo|f2c]`" in out
