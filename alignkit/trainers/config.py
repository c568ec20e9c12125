"""Retired path (issue 12): ``alignkit.trainers.fdpo_config``. An alias kept while long-running processes may import
it; nothing in the repository imports it (tests/test_layering.py)."""

from alignkit.trainers.fdpo_config import (  # noqa: F401
                                           EPS_LOSSES,
                                           FLAG_LOSSES,
                                           LOSS_ALIASES,
                                           PAIR_LOSSES,
                                           FDPOConfig,
                                           fdpo_problems,
                                           normalise_loss_type,
                                           training_problems,
)
