"""Dataset cards: the JSON written beside every dataset alignkit produces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignkit import __version__
from alignkit.data.io import sidecar_path
from alignkit.data.transforms import bucket_stats
from alignkit.utils import atomic_write_json, stable_hash


def card_path(output: str | os.PathLike) -> Path:
    """``train.jsonl`` -> ``train.card.json``; only the data suffix goes, so ``train_eps0.4.jsonl`` keeps its ε."""
    return sidecar_path(output, "card.json")


def write_card(output: str | os.PathLike, records: list[dict], *, builder: str, config: dict[str, Any],
               rejects: list[dict] | None = None, extra: dict[str, Any] | None = None,
               dropped: dict[str, int] | None = None) -> Path:
    """Write ``<output>.card.json``: bucket counts, flips, rejects with reasons, seed and config hash.

    ``dropped`` counts valid input rows the builder left out on purpose (a bucket filter, a ``limit``), by reason,
    so that rows read = rows written + rejected + dropped can be checked from the card alone.

    Deterministic (no timestamps) so that the same seed and input give byte-identical outputs.
    """
    rejects = rejects or []
    reasons: dict[str, int] = {}
    for r in rejects:
        key = f"{r.get('field') or 'row'}: {r.get('reason')}"
        reasons[key] = reasons.get(key, 0) + 1
    card = {
        "builder": builder,
        "alignkit_version": __version__,
        "output": Path(output).name,
        "seed": config.get("seed"),
        "config": config,
        "config_hash": stable_hash(config),
        "stats": bucket_stats(records),
        "rejected": {"n": len(rejects), "reasons": reasons},
        "dropped": {"n": sum((dropped or {}).values()), "reasons": dict(sorted((dropped or {}).items()))},
    }
    if extra:
        card.update(extra)
    return atomic_write_json(card_path(output), card)
