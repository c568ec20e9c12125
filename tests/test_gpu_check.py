"""scripts/gpu_check.py --dry-run: the GPU check's own code path on the CPU (both trainers launched for one step, their
metrics.json read in the one layout, the quick-suite eval command formed), so the script cannot rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_launches_both_trainers_and_reads_their_metrics(tmp_path):
    out = tmp_path / "gpu_check_out"
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--output", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    runs = {r["trainer"]: r for r in doc["runs"]}
    assert set(runs) == {"fdpo", "f2c"}
    for r in runs.values():
        assert r["ok"] and r["global_step"] == 1 and r["step_s"] > 0 and r["final_loss"] is not None
        assert r["peak_rss_mib"] > 0
    ev = doc["eval_quick"]
    cmd = " ".join(ev["command"])
    assert ev["ran"] is False and "eval --suite quick --backend vllm --model base=smollm2-135m-instruct" in cmd
    md = (out / "gpu_check.md").read_text()
    assert "| fdpo | none |" in md and "| f2c | none |" in md


def test_summarise_reads_the_shared_metrics_layout(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from gpu_check import summarise
    finally:
        sys.path.remove(str(REPO / "scripts"))
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"train": {"train_runtime": 8.0}, "global_step": 4, "peak_memory_mib": 512.0,
                                "peak_rss_mib": 900.0, "final": {"loss": 0.5}, "f2c": {"collapse_events": []}}))
    assert summarise(path, steps=99) == {"step_s": 2.0, "peak_gpu_mib": 512.0, "peak_rss_mib": 900.0,
                                         "final_loss": 0.5, "global_step": 4}
