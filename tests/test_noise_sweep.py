"""The noise-robustness experiment end to end on a tiny model: data, equal-budget training, eval, report, plot."""

from __future__ import annotations

import json

import pytest

from alignkit.experiments.noise_sweep import NoiseSweepConfig, aggregate, run_noise_sweep


def test_aggregate_mean_and_range():
    rows = [{"seed": s, "eps": 0.2, "method": "dpo", "hallucination_rate": v} for s, v in [(0, 0.2), (1, 0.4)]]
    rows.append({"seed": 0, "eps": 0.2, "method": "fdpo", "hallucination_rate": None})  # failed eval: not averaged
    (s,) = aggregate(rows)
    assert (s["method"], s["eps"], s["n_seeds"]) == ("dpo", 0.2, 2)
    assert s["mean"] == pytest.approx(0.3) and (s["low"], s["high"]) == (0.2, 0.4)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match=r"eps values must be in \[0, 0.5\)"):
        NoiseSweepConfig(output_dir=str(tmp_path), eps=[0.6])
    with pytest.raises(ValueError, match="no recipe nope.yaml"):
        NoiseSweepConfig(output_dir=str(tmp_path), methods=["nope"])


@pytest.mark.slow
def test_noise_sweep_tiny_end_to_end(tmp_path, tiny_model):
    cfg = NoiseSweepConfig(
        output_dir=str(tmp_path / "sweep"), model=tiny_model, methods=["dpo", "fdpo"], eps=[0.0, 0.4], seeds=[0, 1],
        n_train=8, n_test=6, max_steps=2, backend="hf", backend_options={"batch_size": 8}, max_new_tokens=8,
        overrides={"per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3},
    )
    summary = run_noise_sweep(cfg)
    doc = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert len(doc["runs"]) == 2 * 2 * 2  # seeds x eps x methods
    assert all(0.0 <= r["hallucination_rate"] <= 1.0 and r["n"] == 6 for r in doc["runs"])
    assert {(s["method"], s["eps"]) for s in summary["summary"]} == {("dpo", 0.0), ("dpo", 0.4), ("fdpo", 0.0), ("fdpo", 0.4)}
    png = (tmp_path / "sweep" / "hallucination_vs_noise.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| dpo |" in report and "ε=0.4" in report
    # noise was really injected: 40% of 8 pairs swapped, recorded in the card
    card = json.loads((tmp_path / "sweep" / "data" / "seed0" / "train_eps0.4.card.json").read_text())
    assert card["stats"]["noised"] == 3 and len(card["noised_indices"]) == 3
    # a rerun reuses the finished runs (no retraining) and gives the same numbers
    again = run_noise_sweep(cfg)
    assert again["summary"] == summary["summary"]
