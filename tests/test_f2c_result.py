"""scripts/f2c_result.py end to end on a tiny model: the doc, its JSON and the README block are written; a rerun
resumes (trains nothing); a rerun with other settings trains again instead of reusing the old adapters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_f2c_result_tiny_end_to_end_and_resume(tmp_path, tiny_model):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- f2c:begin -->\nOLD-BLOCK\n<!-- f2c:end -->\noutro\n", encoding="utf-8")
    doc = tmp_path / "docs" / "f2c_result.md"

    def run(max_steps: int) -> str:
        cmd = [sys.executable, "scripts/f2c_result.py", "--out", str(tmp_path / "run"), "--doc", str(doc),
               "--readme", str(readme), "--limit", "4", "--set", f"model_name_or_path={tiny_model}",
               "--set", "consistency_examples=4", "--set", "gradient_accumulation_steps=1",
               "--set", f"max_steps={max_steps}"]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stderr

    assert run(1).count("trained in") == 2  # both variants
    text = doc.read_text(encoding="utf-8")
    assert f"with `{tiny_model}`" in text and "| Agreement P̄ (×100) ↑ |" in text and "| Accuracy (×100) ↑ |" in text
    assert "Predicted classes over all (example, format) pairs" in text and "Collapse (one class ≥ 90%" in text
    assert "**Smaller configuration than the recipe**" in text and "`max_steps: 1`" in text
    res = json.loads(doc.with_suffix(".json").read_text(encoding="utf-8"))
    assert set(res) == {"base", "F²C", "F²C + quota"}
    for label, r in res.items():
        assert {"agreement", "mean_f1", "sigma_f1", "accuracy", "predicted_class_share"} <= set(r)
        assert r["n"] == 4 and sum(r["predicted_class_share"].values()) == pytest.approx(100.0)
        if label != "base":
            assert r["train"]["steps"] == 1
    assert res["F²C + quota"]["recipe_overrides"]["class_balance"] == "quota"
    body = readme.read_text(encoding="utf-8")
    assert body.startswith("intro\n") and body.endswith("outro\n") and "OLD-BLOCK" not in body
    assert "| Agreement P̄ (×100) ↑ |" in body and "Collapse (" in body

    # the same command resumes: nothing is trained again and the doc comes out the same
    assert "trained in" not in run(1)
    assert doc.read_text(encoding="utf-8") == text

    # other settings are another run: the kept adapters are not reused for it
    assert run(2).count("trained in") == 2
    res = json.loads(doc.with_suffix(".json").read_text(encoding="utf-8"))
    assert res["F²C"]["train"]["steps"] == 2 and res["F²C + quota"]["train"]["steps"] == 2
