"""Distributed set-up shared by every alignkit trainer run (F-DPO, F²C)."""

from __future__ import annotations

import os


def deepspeed_launched() -> bool:
    """True when ``accelerate launch`` was given a DeepSpeed config (it exports ACCELERATE_USE_DEEPSPEED)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def init_deepspeed_comm() -> bool:
    """Initialise DeepSpeed's communication group before any model is loaded; call it first thing in a run.

    Why: under ZeRO-3, ``from_pretrained`` (policy and reference model) runs inside ``deepspeed.zero.Init``. If
    DeepSpeed's comm group is not initialised yet, its config falls back to world_size 1 and fails the batch-size
    assertion (architecture.md, "measured facts"). Initialising it up front — gloo on CPU, NCCL on GPU — fixes it.
    Returns True when it initialised (or found) the group, False when the run is not a DeepSpeed one.
    """
    if not deepspeed_launched():
        return False
    import deepspeed
    import torch

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    backend = "nccl" if torch.cuda.is_available() and not use_cpu else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    return True
