"""``alignkit train``: the accelerate launch line it builds, and its errors for missing files (no training here)."""

from __future__ import annotations

import sys

from alignkit.cli import main
from alignkit.trainers.cli import launch_command


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
