"""Retired path (issue 12): ``alignkit.trainers.fdpo_trainer``. An alias kept while long-running processes may import
it; nothing in the repository imports it (tests/test_layering.py)."""

from alignkit.trainers.fdpo_trainer import (  # noqa: F401
    CONFIG_CLASS,
    FDPOTrainer,
    misordered_rows,
    run,
)
