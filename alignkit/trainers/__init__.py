"""Trainers: ``FDPOTrainer``/``FDPOConfig`` (F-DPO family on TRL's DPOTrainer) and, lazily, ``F2CTrainer``/``F2CConfig``."""

from __future__ import annotations

import importlib
from typing import Any

from alignkit.trainers.collator import FDPODataCollator
from alignkit.trainers.config import FDPOConfig
from alignkit.trainers.fdpo import FDPOTrainer

__all__ = ["F2CConfig", "F2CTrainer", "FDPOConfig", "FDPODataCollator", "FDPOTrainer"]
_LAZY = {"F2CTrainer": "alignkit.trainers.f2c", "F2CConfig": "alignkit.trainers.f2c"}


def __getattr__(name: str) -> Any:
    # F2C is imported on first use, so the F-DPO side works whether or not f2c.py is present.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
