"""``alignkit train``: the accelerate launch line it builds; missing files, bad values and data without a valid row
stop before launch in one line with file:line:field; a worker's own error is reported once (one real launch)."""

from __future__ import annotations

import sys

import pytest

from alignkit.cli import main
from alignkit.cli.train import launch_command


def test_launch_command_wraps_accelerate_and_the_train_module():
    cmd = launch_command("recipes/smollm2-135m/fdpo.yaml", "accelerate_configs/zero3.yaml", 2, ["--max_steps", "5"],
                         cpu=True)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == "accelerate_configs/zero3.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    # accelerate's --cpu would force its single-process launcher: the workers get use_cpu instead
    assert "--cpu" not in cmd and cmd[cmd.index("--mixed_precision") + 1] == "no"
    tail = cmd[cmd.index("-m", 3):]
    assert tail == ["-m", "alignkit.train", "--config", "recipes/smollm2-135m/fdpo.yaml", "--max_steps", "5",
                    "--use_cpu", "true"]
    assert "--multi_gpu" in launch_command("r.yaml", None, 2, cpu=True)  # torchrun workers without a config file
    gpu = launch_command("r.yaml", cpu=False)
    assert "--cpu" not in gpu and "--config_file" not in gpu


def test_missing_recipe_or_config_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset_path: x.jsonl\n")
    assert main(["train", str(recipe), "--accelerate-config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err
    assert main(["train", str(recipe), "--set", "max_steps"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unknown_recipe_key_and_trainer_are_errors(tmp_path):
    import pytest

    from alignkit.train import parse_dict, trainer_module

    with pytest.raises(ValueError, match="not_a_field"):
        parse_dict({"dataset_path": "x.jsonl", "output_dir": str(tmp_path), "not_a_field": 1})
    with pytest.raises(ValueError, match="unknown trainer"):
        trainer_module("ppo")
    with pytest.raises(ValueError, match="dataset_path"):
        parse_dict({"output_dir": str(tmp_path)})


# --- bad values stop before launch, in one line; a failing worker's error is reported once -------------------------

def _write_recipe(tmp_path, tiny_model, rows: list[dict] | None = None, **fields) -> tuple:
    import json

    import yaml

    data = tmp_path / "pairs.jsonl"
    if rows is None:
        rows = [{"prompt": f"Q{i}?", "chosen": f"A{i}.", "rejected": f"B{i}.", "h_w": i % 2, "h_l": 1 - i % 2}
                for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = {"model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(tmp_path / "run"),
              "max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64, "report_to": "none",
              "save_strategy": "no", "learning_rate": 1e-3, **fields}
    path = tmp_path / "r.yaml"
    text = yaml.safe_dump(recipe, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    lines = {line.split(":", 1)[0]: i for i, line in enumerate(text.splitlines(), start=1)}
    return path, lines


def _no_launch(monkeypatch):
    import alignkit.cli.train as tcli

    launched = []
    monkeypatch.setattr(tcli, "run_launch", lambda cmd: launched.append(cmd) or 0)
    return launched


@pytest.mark.parametrize("fields, key", [
    ({"beta": 0.0}, "beta"),
    ({"learning_rate": -1.0e-4}, "learning_rate"),
    ({"fdpo_lambda": -0.5}, "fdpo_lambda"),
    ({"loss_type": "cdpo", "label_smoothing": 0.0}, "label_smoothing"),
    ({"loss_type": "rdpo", "label_smoothing": 0.5}, "label_smoothing"),
    ({"loss_type": "dpo", "label_smoothing": 0.2}, "label_smoothing"),
    ({"max_steps": 0}, "max_steps"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
    ({"use_liger_kernel": True}, "use_liger_kernel"),
    ({"max_train_samples": 0}, "max_train_samples"),
])
def test_bad_values_stop_before_launch_with_file_line_field(tmp_path, tiny_model, capsys, monkeypatch, fields, key):
    launched = _no_launch(monkeypatch)
    path, lines = _write_recipe(tmp_path, tiny_model, **fields)
    assert main(["train", str(path)]) == 2 and not launched
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}:{lines[key]}: field {key}: "), err


def test_a_value_left_at_its_default_is_named_without_a_line(tmp_path, tiny_model, capsys, monkeypatch):
    launched = _no_launch(monkeypatch)
    path, _ = _write_recipe(tmp_path, tiny_model, loss_type="cdpo")  # ε defaults to 0: plain DPO under another name
    assert main(["train", str(path)]) == 2 and not launched
    assert capsys.readouterr().err.startswith(f"error: {path}: field label_smoothing: cdpo needs label_smoothing")
    # an override from the command line is checked the same way
    good, _ = _write_recipe(tmp_path, tiny_model)
    assert main(["train", str(good), "--set", "beta=-1"]) == 2 and not launched
    assert "field beta: β must be > 0" in capsys.readouterr().err


def test_a_data_file_without_valid_rows_stops_before_launch(tmp_path, tiny_model, capsys, monkeypatch):
    launched = _no_launch(monkeypatch)
    path, lines = _write_recipe(tmp_path, tiny_model, rows=[])
    assert main(["train", str(path)]) == 2 and not launched
    err = capsys.readouterr().err
    assert f"{path}:{lines['dataset_path']}: field dataset_path: " in err and "has no valid rows" in err
    bad = [{"prompt": "Q?", "chosen": "A.", "rejected": "B.", "h_w": 2, "h_l": 0}]
    path, lines = _write_recipe(tmp_path, tiny_model, rows=bad, on_invalid="skip")
    assert main(["train", str(path)]) == 2 and not launched
    assert "has no valid rows (1 rejected)" in capsys.readouterr().err
    path, _ = _write_recipe(tmp_path, tiny_model, rows=bad)  # on_invalid error: the bad row, located
    assert main(["train", str(path)]) == 2 and not launched
    assert "pairs.jsonl:1: field 'h_w'" in capsys.readouterr().err
    path, _ = _write_recipe(tmp_path, tiny_model)
    assert main(["train", str(path), "--overwrite"]) == 0 and launched  # a good recipe does launch
    assert launched[-1][launched[-1].index("--overwrite") + 1] == "true"  # passed on to the workers
    assert main(["train", str(path), "--overwrite", "--resume"]) == 2


@pytest.mark.slow
def test_a_failing_worker_is_reported_once_without_the_launcher_traceback(tmp_path, tiny_model, capfd, monkeypatch):
    # a hub model that cannot be fetched (offline) passes every launch-time check and fails inside the worker
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    path, _ = _write_recipe(tmp_path, tiny_model, model_name_or_path="alignkit-test/no-such-model")
    assert main(["train", str(path)]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "CalledProcessError" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "alignkit-test/no-such-model" in errors[0], err[-3000:]
