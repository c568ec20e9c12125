"""Recipes in TRL / alignment-handbook form train a tiny model: the handbook's ``dataset_mixture`` over a local
``save_to_disk`` folder and TRL's ``dataset_name`` over parquet files stand in for hub ids (no network here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, DatasetDict

from alignkit.train import train_from_config

# (h_w, h_l) of the handbook-form rows; bools as hub sets store them
FLAGS = [(True, False), (False, True), (False, False), (True, True)]


def h4_rows(n: int, offset: int = 0) -> list[dict]:
    """Rows shaped like HuggingFaceH4/ultrafeedback_binarized, plus factuality flags given as booleans."""
    rows = []
    for i in range(offset, offset + n):
        q = f"Q{i}: what is {i} plus {i + 1}?"
        hw, hl = FLAGS[i % len(FLAGS)]
        rows.append({"prompt": q, "prompt_id": f"id{i}",
                     "chosen": [{"role": "user", "content": q},
                                {"role": "assistant", "content": f"It is {2 * i + 1}."}],
                     "rejected": [{"role": "user", "content": q},
                                  {"role": "assistant", "content": f"It is {2 * i + 7}, clearly."}],
                     "messages": [{"role": "user", "content": q}], "score_chosen": 8.0, "score_rejected": 2.0,
                     "h_w": hw, "h_l": hl})
    return rows


def handbook_recipe(model: str, data: Path, out: Path) -> dict:
    """An alignment-handbook DPO recipe (zephyr-7b-beta's keys, scaled down), with `loss_type: fdpo` added."""
    return {
        "model_name_or_path": model, "dtype": "float32",
        "dataset_mixture": {
            "datasets": [{"id": str(data), "config": "default", "split": "train_prefs",
                          "columns": ["prompt", "chosen", "rejected", "h_w", "h_l"], "weight": 0.75}],
            "seed": 0, "test_split_size": 0.25},
        "dataset_num_proc": 1,
        "bf16": False, "beta": 0.01, "do_eval": True, "eval_strategy": "steps", "eval_steps": 2,
        "gradient_accumulation_steps": 1, "gradient_checkpointing": False, "learning_rate": 5.0e-4,
        "log_level": "info", "logging_steps": 1, "lr_scheduler_type": "cosine", "max_length": 64,
        "max_steps": 2, "optim": "adamw_torch", "output_dir": str(out), "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2, "push_to_hub": False, "save_strategy": "no", "seed": 42,
        "warmup_steps": 0.1, "report_to": "none", "use_cpu": True,
        "loss_type": "fdpo",  # the one line that turns the handbook's DPO recipe into F-DPO
    }


def test_handbook_mixture_recipe_trains_fdpo(tiny_model, tmp_path):
    data = tmp_path / "uf_h4"
    DatasetDict({"train_prefs": Dataset.from_list(h4_rows(16)),
                 "test_prefs": Dataset.from_list(h4_rows(4, offset=100))}).save_to_disk(str(data))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(yaml.safe_dump(handbook_recipe(tiny_model, data, tmp_path / "run")))

    metrics = train_from_config(recipe)  # the recipe check first, then the run

    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # weight 0.75 keeps int(16 * 0.75) = 12 rows (the handbook's shuffle(seed).select); test_split_size 0.25 -> 3
    train, evaluation = on_disk["data"]["train"], on_disk["data"]["eval"]
    assert (train["n_used"], evaluation["n_used"]) == (9, 3)
    assert train["sources"] == [{"source": f"{data}:default[train_prefs]", "n_rows": 12, "n_rejected": 0,
                                 "n_flags_filled": 0}]
    assert on_disk["global_step"] == 2 and metrics["output_dir"] == str(tmp_path / "run")
    assert "eval" in on_disk and any("eval_loss" in h for h in on_disk["log_history"])
    # the flip swapped exactly the training rows with h_w=1, h_l=0 (given as True/False)
    from datasets import load_from_disk

    kept = load_from_disk(str(data))["train_prefs"].shuffle(seed=0).select(range(12))
    expected = Dataset.from_dict({"i": list(range(12))}).train_test_split(test_size=0.25, seed=0)
    flips = sum(1 for i in expected["train"]["i"] if (kept[i]["h_w"], kept[i]["h_l"]) == (True, False))
    assert on_disk["flip_counts"]["train"] == flips
    config = yaml.safe_load((tmp_path / "run" / "alignkit_config.yaml").read_text())
    assert config["loss_type"] == ["fdpo"] and config["dataset_mixture"]["datasets"][0]["weight"] == 0.75


def trl_lib_rows(n: int) -> list[dict]:
    """Rows shaped like trl-lib/ultrafeedback_binarized (implicit prompt, no flags)."""
    return [{"chosen": [{"role": "user", "content": f"Name prime {i}."},
                        {"role": "assistant", "content": f"Prime {i} is fine."}],
             "rejected": [{"role": "user", "content": f"Name prime {i}."},
                          {"role": "assistant", "content": f"I refuse {i}."}],
             "score_chosen": 7.0, "score_rejected": 1.0} for i in range(n)]


def trl_recipe(model: str, files: dict, out: Path, **extra) -> dict:
    return {"model_name_or_path": model, "dataset_name": "parquet", "dataset_data_files": files,
            "dataset_train_split": "train", "dataset_test_split": "test", "output_dir": str(out),
            "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64, "gradient_checkpointing": False,
            "report_to": "none", "save_strategy": "no", "logging_steps": 1, "learning_rate": 1e-3, "use_cpu": True,
            **extra}


def test_trl_dataset_name_recipe_with_plain_dpo_data(tiny_model, tmp_path):
    train_file, test_file = tmp_path / "train.parquet", tmp_path / "test.parquet"
    Dataset.from_list(trl_lib_rows(6)).to_parquet(str(train_file))
    Dataset.from_list(trl_lib_rows(2)).to_parquet(str(test_file))
    files = {"train": str(train_file), "test": str(test_file)}

    dpo = train_from_config(trl_recipe(tiny_model, files, tmp_path / "dpo", loss_type="sigmoid"))
    assert dpo["global_step"] == 2 and dpo["data"]["train"]["n_used"] == 6 and dpo["data"]["eval"] is None
    assert dpo["data"]["train"]["source"] == "parquet[train]"

    # F-DPO needs the flags: the row and field are named, with the way out
    with pytest.raises(ValueError, match=r"parquet\[train\]:1: field 'h_w': missing \(plain DPO data"):
        train_from_config(trl_recipe(tiny_model, files, tmp_path / "fdpo", loss_type="fdpo"))
    filled = train_from_config(trl_recipe(tiny_model, files, tmp_path / "fdpo", loss_type="fdpo",
                                          missing_flags="zero", eval_strategy="steps", eval_steps=2))
    assert filled["data"]["train"]["n_flags_filled"] == 6 and filled["flip_counts"]["train"] == 0
    assert filled["data"]["eval"]["n_used"] == 2 and filled["data"]["eval"]["source"] == "parquet[test]"

    # streaming: rows are validated as they arrive and reading stops after max_train_samples valid rows
    streamed = train_from_config(trl_recipe(tiny_model, files, tmp_path / "stream", loss_type="dpo",
                                            dataset_streaming=True, max_train_samples=4))
    assert streamed["data"]["train"]["n_used"] == 4 and streamed["data"]["train"]["sources"][0]["n_rows"] == 4
    assert streamed["global_step"] == 2


def test_accelerate_worker_parser_reads_a_handbook_recipe(tmp_path):
    """`accelerate launch -m alignkit.train --config R` parses with TRL's parser: the mixture arrives as a mapping."""
    from trl import TrlParser

    from alignkit.train import _dataclass_types

    recipe = handbook_recipe("some/model", tmp_path / "data", tmp_path / "run")
    path = tmp_path / "config_full.yaml"
    path.write_text(yaml.safe_dump(recipe))
    script_args, training_args, model_args = TrlParser(_dataclass_types("fdpo")).parse_args_and_config(
        ["--config", str(path)])
    assert script_args.dataset_mixture == recipe["dataset_mixture"] and script_args.uses_hub_data
    assert training_args.pair_loss == "fdpo" and training_args.beta == 0.01 and model_args.dtype == "float32"
