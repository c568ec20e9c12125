"""A run stopped after step k and resumed from its checkpoint ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from alignkit.train import train_from_config

STOP_AT, TOTAL = 3, 6
# fp32 on CPU, dropout off, optimizer/scheduler/RNG state restored: differences are at float-rounding level.
ATOL = 1e-6


class StopAt(TrainerCallback):
    """Simulates an interruption: ends training right after step ``k`` (its checkpoint is saved first)."""

    def __init__(self, k: int):
        self.k = k

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.k:
            control.should_training_stop = True
        return control


def _rows(n: int = 8) -> list[dict]:
    flags = [(1, 0), (0, 1), (0, 0), (1, 1)]
    return [{"prompt": f"Q{i}: name the number after {i}.", "chosen": f" {i + 1}.", "rejected": f" {i + 3}, surely.",
             "h_w": flags[i % 4][0], "h_l": flags[i % 4][1]} for i in range(n)]


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    recipe = {"model_name_or_path": tiny_model, "dataset_path": str(data), "max_steps": TOTAL,
              "per_device_train_batch_size": 2, "learning_rate": 1e-3, "lr_scheduler_type": "linear",
              "max_length": 64, "gradient_checkpointing": False, "report_to": "none", "save_strategy": "steps",
              "save_steps": STOP_AT, "logging_steps": 1, "fdpo_lambda": 1.0, "use_cpu": True, "seed": 7,
              "dataloader_pin_memory": False}
    full = tmp_path / "full"
    train_from_config(recipe, {"output_dir": str(full)})

    part = tmp_path / "part"
    first = train_from_config(recipe, {"output_dir": str(part)}, callbacks=[StopAt(STOP_AT)])
    assert first["global_step"] == STOP_AT and (part / f"checkpoint-{STOP_AT}").is_dir()
    second = train_from_config(recipe, {"output_dir": str(part)})  # rerun: resumes from the newest checkpoint
    assert second["resumed_from"] == str(part / f"checkpoint-{STOP_AT}") and second["global_step"] == TOTAL

    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    init = load_file(Path(tiny_model) / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3  # it trained
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= ATOL, worst
    # the per-step losses after the resume point agree too
    la = [h["loss"] for h in first["log_history"] if "loss" in h]
    lb = [h["loss"] for h in json.loads((full / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert la == pytest.approx(lb[:STOP_AT], abs=1e-6)
    assert torch.isfinite(torch.tensor(lb)).all()


def test_incomplete_checkpoints_are_not_resumed_from(tmp_path):
    """A checkpoint cut off mid-save (no or torn trainer_state.json, written last by the Trainer) is skipped."""
    from alignkit.trainers.runner import resolve_checkpoint

    def ckpt(step: int, state: str | None) -> Path:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (d / "trainer_state.json").write_text(state)
        return d

    assert resolve_checkpoint(None, str(tmp_path)) is None
    good = ckpt(2, json.dumps({"global_step": 2}))
    ckpt(4, None)  # killed before the state file
    ckpt(6, '{"global_step": 6, "log_hist')  # torn state file
    assert resolve_checkpoint(None, str(tmp_path)) == str(good)
    assert resolve_checkpoint("last", str(tmp_path)) == str(good)
    assert resolve_checkpoint(str(tmp_path / "checkpoint-4"), str(tmp_path)) == str(tmp_path / "checkpoint-4")


def _recipe(tmp_path: Path, tiny_model: str, rows: list[dict]) -> dict:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(tmp_path / "run"),
            "max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "max_length": 64,
            "gradient_checkpointing": False, "report_to": "none", "save_strategy": "steps", "save_steps": 2,
            "logging_steps": 1, "fdpo_lambda": 1.0, "use_cpu": True, "seed": 7, "dataloader_pin_memory": False}


def test_resume_refuses_a_checkpoint_of_another_configuration(tiny_model, tmp_path, caplog):
    recipe = _recipe(tmp_path, tiny_model, _rows(4))
    run = Path(recipe["output_dir"])
    first = train_from_config(recipe)
    assert first["resumed_from"] is None and (run / "checkpoint-2").is_dir()
    weights = (run / "model.safetensors").read_bytes()

    # what legitimately changes on a resume (logging, checkpoint cadence) resumes, visibly at WARNING
    caplog.clear()
    with caplog.at_level("WARNING", logger="alignkit.trainers.runner"):
        again = train_from_config(recipe, {"logging_steps": 5, "save_total_limit": 3})
    assert again["resumed_from"] == str(run / "checkpoint-2")
    assert any(r.levelname == "WARNING" and "resuming from checkpoint-2" in r.getMessage() for r in caplog.records)

    # a recipe edit: stop before training, name the changed fields and the way out; nothing in the folder changes
    with pytest.raises(ValueError) as err:
        train_from_config(recipe, {"learning_rate": 2e-3, "beta": 0.2})
    msg = str(err.value)
    assert "checkpoint-2" in msg and "learning_rate: 0.001 -> 0.002" in msg and "beta: 0.1 -> 0.2" in msg
    assert "--overwrite" in msg and "--resume" in msg and "logging_steps" not in msg
    assert (run / "model.safetensors").read_bytes() == weights
    assert "learning_rate: 0.001" in (run / "alignkit_config.yaml").read_text()

    # the same recipe over rebuilt data is another run too
    changed = [dict(r, chosen=r["chosen"] + " Sure.") for r in _rows(4)]
    Path(recipe["dataset_path"]).write_text("".join(json.dumps(r) + "\n" for r in changed), encoding="utf-8")
    with pytest.raises(ValueError, match="training_rows"):
        train_from_config(recipe)

    # --resume continues regardless (the differences are logged); --overwrite starts over
    forced = train_from_config(recipe, {"resume": True, "learning_rate": 2e-3})
    assert forced["resumed_from"] == str(run / "checkpoint-2") and forced["global_step"] == 2
    fresh = train_from_config(recipe, {"overwrite": True, "learning_rate": 2e-3})
    assert fresh["resumed_from"] is None and fresh["global_step"] == 2
    losses = [h["loss"] for h in fresh["log_history"] if "loss" in h]
    assert len(losses) == 2  # trained both steps again
    # the new checkpoint carries the new fingerprint: a rerun with the new values resumes without complaint
    assert train_from_config(recipe, {"learning_rate": 2e-3})["resumed_from"] == str(run / "checkpoint-2")
    with pytest.raises(ValueError, match="exclude each other"):
        train_from_config(recipe, {"overwrite": True, "resume": True})


def test_fingerprint_leaves_out_only_the_resume_safe_fields():
    from alignkit.trainers.runner import config_changes, fingerprint_config

    config = {"learning_rate": 1e-3, "beta": 0.1, "logging_steps": 1, "save_steps": 2, "output_dir": "a",
              "report_to": [], "eval_steps": 5, "resume_from_checkpoint": None, "seed": 1}
    fp = fingerprint_config(config, "rows")
    assert fp == {"learning_rate": 1e-3, "beta": 0.1, "seed": 1, "training_rows": "rows"}
    assert config_changes(fp, {**fp, "seed": 2, "new": 1}) == ["new: <unset> -> 1", "seed: 1 -> 2"]
