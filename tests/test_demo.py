"""`make demo QUICK=1` end to end, as CI runs it: data → DPO / cDPO / F-DPO (LoRA, SmolLM2-135M) → vLLM eval of base
and the three adapters → report with tables and plots; then a rerun that reuses the finished work."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = ["base", "dpo", "cdpo", "fdpo"]
TASKS = ["hallucination", "truthfulqa_mc", "sycophancy_pushback", "icl_flip"]


def _make_demo(out: Path) -> str:
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.run(["make", "demo", "QUICK=1", f"DEMO_OUT={out}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.vllm
def test_quick_demo_end_to_end_and_rerun(tmp_path, shared_data, embedded_model):
    readme_before = (REPO / "README.md").read_bytes()
    out = tmp_path / "demo"
    log = _make_demo(out)
    assert "done in" in log

    # data: 30% of the training pairs misordered, F-DPO flipped exactly those with h_w=1, h_l=0
    card = json.loads((out / "data" / "train.card.json").read_text())
    runs = {m: json.loads((out / "runs" / m / "metrics.json").read_text()) for m in ("dpo", "cdpo", "fdpo")}
    assert all(r["global_step"] == 4 for r in runs.values())
    assert runs["fdpo"]["flip_counts"]["train"] == card["stats"]["buckets"]["(1,0)"] > 0
    assert runs["dpo"]["flip_counts"].get("train", 0) == 0
    for r in runs.values():
        assert (Path(r["output_dir"]) / "adapter_model.safetensors").is_file()

    # evaluation: every model on every task, through the vLLM backend
    doc = json.loads((out / "eval" / "results.json").read_text())
    assert doc["suite"]["backend"] == "vllm"
    assert {(r["task"], r["model"]) for r in doc["results"]} == {(t, m) for t in TASKS for m in MODELS}
    for r in doc["results"]:
        assert all(v["n"] > 0 for v in r["metrics"].values() if isinstance(v, dict) and "n" in v), r
    hal = {r["model"]: r["metrics"]["hallucination_rate"]["value"] for r in doc["results"] if r["task"] == "hallucination"}
    assert all(0.0 <= v <= 1.0 for v in hal.values())
    # the adapters are really evaluated (not the base four times): some per-item output differs from the base's
    items = out / "eval" / "items"
    base_out = (items / "hallucination__base.jsonl").read_text()
    assert any((items / f"hallucination__{m}.jsonl").read_text() != base_out for m in ("dpo", "cdpo", "fdpo"))

    # the report: side-by-side table with measured numbers, plots that are real PNGs
    report = (out / "report.md").read_text()
    assert "| task | metric | n | base | dpo | cdpo | fdpo |" in report
    row = next(line for line in report.splitlines() if line.startswith("| hallucination | hallucination_rate"))
    assert [float(x) for x in re.findall(r"\| (\d\.\d{3}) \[", row)] == pytest.approx([hal[m] for m in MODELS], abs=6e-4)
    pngs = [out / "training_loss.png", *(out / "eval").glob("**/*.png")]
    assert "](eval/plots/" in report and "![training loss](training_loss.png)" in report
    assert len(pngs) >= 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (REPO / "README.md").read_bytes() == readme_before  # only a full run rewrites the README

    # a rerun reuses the trained adapters and the cached eval items and reproduces the results exactly
    first = (out / "eval" / "results.json").read_bytes()
    log2 = _make_demo(out)
    assert log2.count("finished run found") == 3
    assert (out / "eval" / "results.json").read_bytes() == first
