"""Trainers, shaped like TRL's: ``FDPOConfig``/``FDPOTrainer`` (F-DPO family on TRL's DPOTrainer, in
``fdpo_config``/``fdpo_trainer``) and, lazily, ``F2CConfig``/``F2CTrainer`` (``f2c_config``/``f2c_trainer``); one
recipe run for both in ``runner.run_training``."""

from __future__ import annotations

import importlib
from typing import Any

from alignkit.trainers.collator import FDPODataCollator
from alignkit.trainers.fdpo_config import FDPOConfig
from alignkit.trainers.fdpo_trainer import FDPOTrainer

__all__ = ["F2CConfig", "F2CTrainer", "FDPOConfig", "FDPODataCollator", "FDPOTrainer"]
_LAZY = {"F2CTrainer": "alignkit.trainers.f2c_trainer", "F2CConfig": "alignkit.trainers.f2c_config"}


def __getattr__(name: str) -> Any:
    # F2C is imported on first use: importing the F-DPO side does not pay for it.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
