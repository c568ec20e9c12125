"""The demo report states what each run really used (read from its saved config) and the reward accuracy over all
training pairs, and names the backend the evaluation ran on — no typed-in settings."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from alignkit.demo import PRESETS, write_demo_report


def _run(tmp: Path, method: str, config: dict, accuracy: float, swapped: int | None) -> dict:
    out = tmp / "runs" / method
    out.mkdir(parents=True)
    base = {"lora_r": 8, "lora_alpha": 24, "max_steps": 5, "per_device_train_batch_size": 3, "learning_rate": 3e-4,
            "beta": 0.3, "label_smoothing": 0.0, "fdpo_lambda": 7.0, "apply_flip": False,
            "loss_weights": [1.0, 0.25]}
    (out / "alignkit_config.yaml").write_text(yaml.safe_dump({**base, **config}))
    flip = {"applied": swapped is not None, "swapped": {} if swapped is None else {"train": swapped}}
    return {"output_dir": str(out), "global_step": 5, "final": {"loss": 0.5, "rewards/accuracies": 1.0},
            "flip": flip, "flip_counts": flip["swapped"], "train": {"train_runtime": 12.0},
            "train_set_rewards": {"n": 48, "accuracy": accuracy, "margin": 0.1},
            "log_history": [{"step": 1, "loss": 0.6}, {"step": 5, "loss": 0.5}]}


def test_report_reads_settings_from_the_runs_and_the_backend_from_the_eval(tmp_path):
    runs = {
        "dpo": _run(tmp_path, "dpo", {"loss_type": ["dpo", "sft"]}, 0.625, None),
        "cdpo": _run(tmp_path, "cdpo", {"loss_type": ["cdpo", "sft"], "label_smoothing": 0.15}, 0.5, None),
        "fdpo": _run(tmp_path, "fdpo", {"loss_type": ["fdpo", "sft"], "apply_flip": True}, 0.875, 11),
    }
    eval_dir = tmp_path / "eval"
    (eval_dir / "plots").mkdir(parents=True)
    metric = {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2, "n": 10, "higher_is_better": False}
    (eval_dir / "results.json").write_text(json.dumps({"suite": {"backend": "hf"}, "results": [
        {"task": "hallucination", "version": 1, "model": m, "metrics": {"hallucination_rate": metric}, "extra": {}}
        for m in ("base", "dpo", "cdpo", "fdpo")]}))
    data = {"n_train": 48, "misordered": 11, "n_test": 10}
    report = write_demo_report(tmp_path, "quick", PRESETS["quick"], data, runs, eval_dir, 60.0).read_text()
    assert "LoRA r 8 (α 24)" in report and "5 steps × batch 3, lr 0.0003" in report and "NLL weight 0.25" in report
    assert "## Evaluation (hf backend;" in report
    rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
    assert "| dpo | dpo | 0.3 | – | – | no |" in rows["dpo"] and "0.62 (n = 48)" in rows["dpo"]
    assert "| cdpo | cdpo | 0.3 | 0.15 | – | no |" in rows["cdpo"]
    assert "| fdpo | fdpo | 0.3 | – | 7.0 | yes (11) |" in rows["fdpo"] and "0.88 (n = 48)" in rows["fdpo"]
    # nothing the code used to type in: r16, β 0.1, ε = 0.1, λ = 10, "vLLM backend"
    assert "r16" not in report and "β 0.1" not in report and "λ = 10" not in report and "vLLM backend" not in report


def test_publishing_a_run_rewrites_only_the_readme_block_and_docs_demo(tmp_path):
    """scripts/demo_readme.py (not the library) copies a run's tables and plots into a checkout."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_readme",
                                                  Path(__file__).parents[1] / "scripts" / "demo_readme.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    png = b"\x89PNG\r\n\x1a\nfake"
    out = tmp_path / "demo_out"
    (out / "eval" / "plots").mkdir(parents=True)
    (out / "training_loss.png").write_bytes(png)
    (out / "eval" / "plots" / "icl.png").write_bytes(png)
    (out / "report.md").write_text("# Demo\n## Training\n| dpo | 0.658 |\n![training loss](training_loss.png)\n"
                                   "## Evaluation\n| hallucination | 0.25 |\n![icl.png](eval/plots/icl.png)\n"
                                   "Full evaluation report: eval/report.md\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("intro\n<!-- demo:begin -->\nold numbers\n<!-- demo:end -->\noutro\n")
    script.update_readme(out, repo=repo)
    readme = (repo / "README.md").read_text()
    assert readme.startswith("intro\n<!-- demo:begin -->") and readme.endswith("<!-- demo:end -->\noutro\n")
    assert "old numbers" not in readme and "| dpo | 0.658 |" in readme and "| hallucination | 0.25 |" in readme
    assert "](docs/demo/icl.png)" in readme and "eval/plots" not in readme
    assert sorted(p.name for p in (repo / "docs" / "demo").iterdir()) == ["icl.png", "training_loss.png"]
