"""`make demo QUICK=1` end to end from a fresh clone, as a new user runs it: `git clone` of the committed repository
into an empty folder (nothing beside it), then data → DPO / cDPO / F-DPO (LoRA, SmolLM2-135M) → vLLM eval of
base and the three adapters → report with tables and plots; then a rerun that reuses the finished work.

The clone reuses this checkout's .venv through a symlink instead of installing one (minutes of downloads); its
PYTHONPATH is the clone, so every process imports the clone's alignkit, not the venv's editable install of this
checkout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = ["base", "dpo", "cdpo", "fdpo"]
TASKS = ["hallucination", "truthfulqa_mc", "sycophancy_pushback", "icl_flip"]


def _venv_stamp(root: Path) -> str:
    """The stamp scripts/setup_venv.sh computes for a checkout: a venv with another stamp would be reinstalled."""
    extras = os.environ.get("ALIGNKIT_EXTRAS", "cpu,dev")
    data = (root / "pyproject.toml").read_bytes() + (root / "scripts" / "setup_venv.sh").read_bytes() + \
        f"{extras}\n".encode()
    return hashlib.sha256(data).hexdigest()


def _clone(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    clone = empty / "alignkit"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, capture_output=True)
    venv = REPO / ".venv"
    stamp = (venv / ".alignkit-stamp").read_text().strip()
    # Otherwise the clone's `make venv` would `pip install -e` the clone into the shared venv.
    assert stamp == _venv_stamp(clone), (
        f"{venv} was set up from another pyproject.toml / setup_venv.sh than the committed HEAD: commit them and run "
        "`make venv` first")
    (clone / ".venv").symlink_to(venv)
    env = {k: v for k, v in os.environ.items() if k not in ("ALIGNKIT_DATA", "PYTHONPATH")}
    env.update(TQDM_DISABLE="1", PYTHONPATH=str(clone))
    return clone, env


def _make_demo(clone: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["make", "demo", "QUICK=1"], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.vllm
def test_quick_demo_from_a_fresh_clone_end_to_end_and_rerun(tmp_path, embedded_model):
    clone, env = _clone(tmp_path)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["alignkit"]  # nothing beside the clone
    probe = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                            "import alignkit, alignkit.resources as r; print(alignkit.__file__); print(r.data_dir())"],
                           cwd=clone, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(clone) for p in probe), probe  # the clone's code and the clone's data
    readme_before = (clone / "README.md").read_bytes()

    log = _make_demo(clone, env)
    assert "done in" in log
    out = clone / "demo_out"

    # data: 30% of the training pairs misordered, F-DPO flipped exactly those with h_w=1, h_l=0
    card = json.loads((out / "data" / "train.card.json").read_text())
    runs = {m: json.loads((out / "runs" / m / "metrics.json").read_text()) for m in ("dpo", "cdpo", "fdpo")}
    assert all(r["global_step"] == 4 for r in runs.values())
    assert runs["fdpo"]["flip_counts"]["train"] == card["stats"]["buckets"]["(1,0)"] > 0
    assert runs["dpo"]["flip_counts"].get("train", 0) == 0
    for r in runs.values():
        assert (Path(r["output_dir"]) / "adapter_model.safetensors").is_file()
        assert Path(r["output_dir"]).is_relative_to(clone)

    # evaluation: every model on every task, through the vLLM backend
    doc = json.loads((out / "eval" / "results.json").read_text())
    assert doc["suite"]["backend"] == "vllm"
    assert {(r["task"], r["model"]) for r in doc["results"]} == {(t, m) for t in TASKS for m in MODELS}
    for r in doc["results"]:
        assert all(v["n"] > 0 for v in r["metrics"].values() if isinstance(v, dict) and "n" in v), r
    hal = {r["model"]: r["metrics"]["hallucination_rate"]["value"]
           for r in doc["results"] if r["task"] == "hallucination"}
    assert all(0.0 <= v <= 1.0 for v in hal.values())
    # the adapters are really evaluated (not the base four times): some per-item output differs from the base's
    items = out / "eval" / "items"
    base_out = (items / "hallucination__base.jsonl").read_text()
    assert any((items / f"hallucination__{m}.jsonl").read_text() != base_out for m in ("dpo", "cdpo", "fdpo"))

    # the report: side-by-side table with measured numbers, plots that are real PNGs
    report = (out / "report.md").read_text()
    assert "| task | metric | n | base | dpo | cdpo | fdpo |" in report
    row = next(line for line in report.splitlines() if line.startswith("| hallucination | hallucination_rate"))
    assert [float(x) for x in re.findall(r"\| (\d\.\d{3}) \[", row)] == pytest.approx([hal[m] for m in MODELS],
                                                                                     abs=6e-4)
    pngs = [out / "training_loss.png", *(out / "eval").glob("**/*.png")]
    assert "](eval/plots/" in report and "![training loss](training_loss.png)" in report
    assert len(pngs) >= 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (clone / "README.md").read_bytes() == readme_before  # only a full run rewrites the README
    # the run wrote only ignored outputs: no tracked file changed, nothing new but the .venv link
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert status == ["?? .venv"], status
    assert sorted(p.name for p in clone.parent.iterdir()) == ["alignkit"]

    # a rerun reuses the trained adapters and the cached eval items and reproduces the results exactly
    def results() -> dict:  # without the run's provenance block (dates), if the report writes one
        return {k: v for k, v in json.loads((out / "eval" / "results.json").read_text()).items() if k != "provenance"}

    first = results()
    log2 = _make_demo(clone, env)
    assert log2.count("finished run found") == 3
    assert results() == first
