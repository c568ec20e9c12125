"""Experiment tracking for training: `report_to: tensorboard` in a recipe writes TensorBoard event files with the
trainer's scalars (TRL's and alignkit's Δh-split metrics), read back with TensorBoard's own reader."""

from __future__ import annotations

from alignkit.train import train_from_config


def test_report_to_tensorboard_writes_event_files(tiny_model, tmp_path, flagged_pairs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_from_config({
        "model_name_or_path": tiny_model, "dataset_path": str(flagged_pairs),
        "output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64,
        "gradient_checkpointing": False, "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
        "report_to": "tensorboard"})
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {out}"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert all(v.value == v.value for v in acc.Scalars("train/loss"))  # finite, not NaN
    # alignkit's own metrics reach the tracker too, not only TRL's
    assert {"train/rewards/accuracies", "train/fdpo/flipped_pairs"} <= tags, sorted(tags)
