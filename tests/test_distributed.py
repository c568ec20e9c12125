"""Real multi-process F-DPO runs on CPU with a tiny model: 2-process DDP, DeepSpeed ZeRO-2 and ZeRO-3 (gloo).

Each run goes through ``accelerate launch -m alignkit.train --config RECIPE.yaml`` with the repo's accelerate
configs, then checks finite losses, a falling loss, and that the saved model reloads and differs from the start.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from alignkit.cli.train import launch_command

REPO = Path(__file__).resolve().parents[1]
STEPS = 8


def _rows() -> list[dict]:
    # 4 pairs = one global batch (2 processes x 2), so every step sees the same data and the loss must fall
    flags = [(1, 0), (0, 1), (0, 0), (0, 1)]
    return [{"prompt": f"Q{i}: what colour is item {i}?", "chosen": f" Item {i} is blue.",
             "rejected": f" Item {i} is a red {i * 7} metre whale.", "h_w": hw, "h_l": hl}
            for i, (hw, hl) in enumerate(flags)]


def _run(config: str, tmp_path: Path, tiny_model: str) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    out = tmp_path / "out"
    recipe = {"model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(out),
              "loss_type": "fdpo", "fdpo_lambda": 1.0, "max_steps": STEPS, "per_device_train_batch_size": 2,
              "learning_rate": 1e-3, "lr_scheduler_type": "constant", "max_length": 64, "logging_steps": 1,
              "gradient_checkpointing": False, "report_to": "none", "save_strategy": "no", "seed": 0,
              "dataloader_pin_memory": False}
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    cmd = launch_command(str(recipe_path), str(REPO / "accelerate_configs" / config), num_processes=2, cpu=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def _check(out: Path, tiny_model: str) -> None:
    from transformers import AutoModelForCausalLM

    metrics = json.loads((out / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["log_history"] if "loss" in h]
    assert metrics["world_size"] == 2  # two ranks in one process group, not two independent runs
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.05, losses
    assert metrics["flip_counts"] == {"train": 1}
    assert (out / "alignkit_config.yaml").is_file()
    trained = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    start = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    sd_t, sd_s = trained.state_dict(), start.state_dict()
    assert sd_t.keys() == sd_s.keys()
    for k in sd_t:  # complete weights (ZeRO-3 gathered on save), not empty shards
        assert sd_t[k].shape == sd_s[k].shape and torch.isfinite(sd_t[k]).all(), k
    assert max((sd_t[k] - sd_s[k]).abs().max().item() for k in sd_t) > 1e-3
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(trained(input_ids=ids).logits).all()


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("config", ["cpu_ddp.yaml", "zero2.yaml", "zero3.yaml"])
def test_two_process_fdpo(config, tmp_path, tiny_model):
    _check(_run(config, tmp_path, tiny_model), tiny_model)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero3_sizes_fill_only_unset_keys(stage, tiny_model):
    """ZeRO-3 buffer sizes follow the model's hidden size (128 here), a user's own value stays, ZeRO-2 is untouched."""
    from types import SimpleNamespace

    from alignkit.trainers.runner import apply_zero3_sizes

    zero = {"stage": stage, "stage3_prefetch_bucket_size": 5}
    args = SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config={"zero_optimization": zero}))
    added = apply_zero3_sizes(args, tiny_model)
    if stage == 2:
        assert added == {} and zero == {"stage": 2, "stage3_prefetch_bucket_size": 5}
        return
    assert added == {"reduce_bucket_size": 128 * 128, "stage3_param_persistence_threshold": 1280}
    assert zero == {"stage": 3, "stage3_prefetch_bucket_size": 5, **added}
    assert apply_zero3_sizes(SimpleNamespace(deepspeed_plugin=None), tiny_model) == {}
