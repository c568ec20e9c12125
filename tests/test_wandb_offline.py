"""``report_to: wandb`` (training) and ``alignkit eval --report-to wandb`` in W&B's offline mode: the run folder is
written locally and its transaction log holds the logged metrics, read back record by record.

wandb 0.31 ships no reader for the ``run-<id>.wandb`` file, so :func:`_history` reads it: the LevelDB log format
(32 KiB blocks of chunks, each with a 7-byte header: crc32c, length, type FULL/FIRST/MIDDLE/LAST) behind W&B's
7-byte file header (``:W&B``, magic, version), each record a ``wandb_internal_pb2.Record`` protobuf."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from alignkit.train import train_from_config

BLOCK, HEADER = 32768, 7
FULL, FIRST, LAST = 1, 2, 4


def _records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, chunk, pos = [], b"", HEADER
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding: the end of what was written
            break
        data = raw[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        chunk = data if kind in (FULL, FIRST) else chunk + data
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
    return records


def _history(run_dir: Path) -> list[dict]:
    """The rows ``run.log`` wrote, keys joined with '/' as W&B shows them."""
    (log,) = run_dir.glob("run-*.wandb")
    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in _records(log) if r.WhichOneof("record_type") == "history"]


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "alignkit-test")
    yield wandb_dir
    _close_wandb()  # never leave a run open for the next test


def _close_wandb() -> None:
    """What the end of an `alignkit train` / `alignkit eval` process does (wandb's exit hook): finish the run and
    stop wandb's service, which is when wandb-core writes the transaction log out (finish alone leaves it empty)."""
    import wandb

    wandb.finish()
    wandb.teardown()


def test_report_to_wandb_writes_an_offline_run_with_the_training_metrics(tiny_model, tmp_path, wandb_offline,
                                                                         flagged_pairs):

    train_from_config({
        "model_name_or_path": tiny_model, "dataset_path": str(flagged_pairs),
        "output_dir": str(tmp_path / "run"), "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64,
        "gradient_checkpointing": False, "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
        "report_to": "wandb"})
    _close_wandb()
    (run_dir,) = (wandb_offline / "wandb").glob("offline-run-*")
    rows = _history(run_dir)
    steps = [r["train/global_step"] for r in rows if "train/loss" in r]
    assert steps == [1, 2], rows
    assert all(r["train/loss"] == r["train/loss"] for r in rows if "train/loss" in r)  # finite, not NaN
    keys = set().union(*rows)
    # alignkit's own metrics reach the tracker too, not only TRL's
    assert {"train/rewards/accuracies", "train/fdpo/flipped_pairs"} <= keys, sorted(keys)


def test_eval_report_to_wandb_logs_each_task_and_the_report_table(tmp_path, shared_data, tiny_model, wandb_offline,
                                                                  capsys):
    import yaml

    from alignkit.cli import main

    suite = {"name": "wb", "backend": "hf", "backend_options": {"hf": {"batch_size": 4}},
             "tasks": [{"task": "truthfulqa_mc", "limit": 3,
                        "data": str(shared_data / "truthfulqa" / "truthful_qa_multiple_choice_validation.jsonl")}]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(tmp_path / "suite.yaml"), "--model", f"tiny={tiny_model}", "--out", str(out),
                 "--no-progress", "--report-to", "wandb"]) == 0
    assert "logged to wandb run wb-tiny" in capsys.readouterr().out
    _close_wandb()
    doc = json.loads((out / "results.json").read_text())
    metrics = doc["results"][0]["metrics"]
    (run_dir,) = (wandb_offline / "wandb").glob("offline-run-*")  # WANDB_DIR wins over the eval folder
    (row,) = _history(run_dir)  # one step: scalars, table and report together
    for name in ("mc1", "mc2"):
        assert row[f"truthfulqa_mc/{name}"] == pytest.approx(metrics[name]["value"])
        assert row[f"truthfulqa_mc/{name}/ci_low"] == pytest.approx(metrics[name]["ci_low"])
    assert row["results/_type"] == "table-file" and row["results/nrows"] == len(metrics)
    table = json.loads((run_dir / "files" / row["results/path"]).read_text())
    assert table["columns"] == ["task", "metric", "value", "ci_low", "ci_high", "n"]
    by_metric = {r[1]: r for r in table["data"]}
    assert by_metric["mc1"][0] == "truthfulqa_mc" and by_metric["mc1"][2] == pytest.approx(metrics["mc1"]["value"])
    assert row["report/_type"] == "html-file"
    report = (run_dir / "files" / row["report/path"]).read_text()
    assert "truthfulqa_mc" in report and "mc1" in report
