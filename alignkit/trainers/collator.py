"""Preference collator that carries the hallucination flags (and the flip marker) next to TRL's tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

# Per-pair columns kept through TRL's tokenisation and batched as 1-D tensors (one value per pair).
FLAG_COLUMNS = ("h_w", "h_l", "flipped")


@dataclass
class FDPODataCollator(DataCollatorForPreference):
    """TRL's ``DataCollatorForPreference`` plus ``h_w``/``h_l``/``flipped`` as long tensors of shape ``(batch,)``.

    A column is emitted only when every example has it: a batch mixing labelled and unlabelled pairs is an error,
    never a silent default.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        for key in FLAG_COLUMNS:
            present = [key in ex and ex[key] is not None for ex in examples]
            if all(present):
                out[key] = torch.tensor([int(ex[key]) for ex in examples], dtype=torch.long)
            elif any(present):
                raise ValueError(f"column {key!r} is missing on some pairs of this batch; label every pair or none")
        return out
