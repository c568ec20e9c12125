"""Fault tests with real processes: kill -9 a training run and an evaluation run at a seeded random point, rerun,
and check the result equals an uninterrupted run's (eval: equal results apart from the run's provenance
block, byte-identical per-item files; training: weights within 1e-5)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")


def _kill_when(cmd: list[str], ready, timeout: float = 300) -> int:
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true (polled); return how it ended (-9 if killed)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)  # polling interval, not synchronisation: the condition is checked on the files themselves
    proc.wait(timeout=60)
    return proc.returncode


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


# --- training -------------------------------------------------------------------------------------------------

STEPS = 6


def _recipe(tmp: Path, tiny_model: str, out: Path) -> Path:
    rows = [{"prompt": f"Q{i}: colour of item {i}?", "chosen": f"Item {i} is blue.",
             "rejected": f"Item {i} is a red whale.", "h_w": i % 2, "h_l": 1 - i % 2} for i in range(12)]
    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(out),
              "loss_type": "fdpo", "max_steps": STEPS, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
              "lr_scheduler_type": "linear", "max_length": 64, "logging_steps": 1, "report_to": "none",
              "save_strategy": "steps", "save_steps": 1, "seed": 0, "dataloader_pin_memory": False,
              "use_cpu": True, "gradient_checkpointing": False}
    path = tmp / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _checkpoints(out: Path) -> list[int]:
    if not out.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


@pytest.mark.slow
def test_training_killed_and_rerun_matches_uninterrupted(tmp_path, tiny_model, reliability_log):
    from safetensors.torch import load_file

    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    _run([sys.executable, "-m", "alignkit.train", "--config", str(_recipe(tmp_path, tiny_model, ref_out))])
    k = random.Random(7).randint(2, STEPS - 2)  # the seeded random kill point: once step k's checkpoint exists
    cmd = [sys.executable, "-m", "alignkit.train", "--config", str(_recipe(tmp_path, tiny_model, out))]
    rc = _kill_when(cmd, lambda: any(c >= k for c in _checkpoints(out)))
    assert rc == -signal.SIGKILL, "the run finished before the kill point"
    assert not (out / "metrics.json").exists()
    _run(cmd)  # resumes from the newest complete checkpoint
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] and metrics["global_step"] == STEPS
    a, b = load_file(ref_out / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst < 1e-5, worst
    reliability_log.record("fault", f"training killed (SIGKILL) after checkpoint {k}",
                           f"rerun resumed; max weight diff {worst:.1e} (< 1e-5)")


# --- evaluation -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_eval_killed_and_rerun_gives_identical_results(tmp_path, tiny_model, reliability_log):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is the code of box {i}?",
                                         "reference_true": [f"code {i}"], "reference_false": [f"code {i + 1}"]}) + "\n"
                             for i in range(24)))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "fault", "version": 1, "backend": "hf",
                                     "backend_options": {"hf": {"batch_size": 2}},
                                     "tasks": [{"task": "hallucination", "items": str(items), "judge": "reference",
                                                "max_new_tokens": 6, "batch_size": 2}]}))

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "alignkit.cli", "eval", "--suite", str(suite), "--model", f"tiny={tiny_model}",
                "--out", str(out), "--no-progress"]

    ref, out = tmp_path / "ref", tmp_path / "killed"
    _run(cmd(ref))
    cache = out / "cache" / "items.jsonl"
    n_kill = random.Random(11).randint(3, 12)  # kill once this many items are cached

    def cached() -> int:
        try:
            return sum(1 for _ in cache.open("rb"))
        except FileNotFoundError:
            return 0

    rc = _kill_when(cmd(out), lambda: cached() >= n_kill)
    assert rc == -signal.SIGKILL, "the eval finished before the kill point"
    assert not (out / "results.json").exists()
    n_cached_at_kill = cached()
    _run(cmd(out))
    # identical results; only the provenance block (dates, the output-independent run record) may differ
    def results(d: Path) -> dict:
        doc = json.loads((d / "results.json").read_text())
        assert doc.pop("provenance")["date"]
        return doc

    assert results(out) == results(ref)
    item_file = Path("items") / "hallucination__tiny.jsonl"
    assert (out / item_file).read_bytes() == (ref / item_file).read_bytes()
    n_in = sum(1 for raw in items.read_bytes().splitlines() if raw.strip())
    n_out = sum(1 for raw in (out / "items" / "hallucination__tiny.jsonl").read_bytes().splitlines() if raw.strip())
    reliability_log.record("fault", f"evaluation killed (SIGKILL) after {n_kill} cached items",
                           f"rerun reused {n_cached_at_kill} cached items; results equal, per-item file "
                           "byte-identical",
                           rows_in=n_in, rows_out=n_out)


# --- disk full --------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A folder where writes past 64 KiB fail in the kernel, never a patched ``open``: a 64 KiB tmpfs where this
    process may mount one (root, as in CI: a real ENOSPC), else ``RLIMIT_FSIZE`` = 64 KiB around the write (the
    kernel's EFBIG). Yields (folder, how the fault is made, the errno it gives)."""
    import errno
    import resource

    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode == 0
    if mounted:
        try:
            yield mnt, "64 KiB tmpfs (real ENOSPC)", errno.ENOSPC, lambda: None
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))

    try:
        yield mnt, "RLIMIT_FSIZE 64 KiB (real EFBIG; no tmpfs mount allowed here)", errno.EFBIG, limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def test_full_disk_leaves_no_partial_file(small_disk, reliability_log):
    """A dataset write that runs out of space fails with the OS error, leaves the old output intact and no temp
    file behind."""
    import resource

    from alignkit.data import read_jsonl, write_records

    disk, mechanism, expected_errno, limit = small_disk
    target = disk / "out.jsonl"
    old_rows = [{"id": "old", "prompt": "Q?", "chosen": "Yes.", "rejected": "No.", "h_w": 0, "h_l": 1}]
    write_records(target, old_rows)
    old = target.read_bytes()
    big = [dict(old_rows[0], id=f"r{i}", chosen="x" * 1000) for i in range(200)]  # ~200 KB > 64 KiB
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit()
    try:
        with pytest.raises(OSError) as exc:
            write_records(target, big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert exc.value.errno == expected_errno
    assert target.read_bytes() == old
    assert [p.name for p in disk.iterdir()] == ["out.jsonl"]
    kept = read_jsonl(target).records
    reliability_log.record("fault", "disk full during a dataset write",
                           f"OSError {os.strerror(expected_errno)}; old file intact; no temp left",
                           rows_in=len(old_rows), rows_out=len(kept), mechanism=mechanism)
