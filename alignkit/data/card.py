"""Dataset cards: the JSON written beside every dataset alignkit produces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignkit import __version__
from alignkit.data.transforms import bucket_stats
from alignkit.utils import atomic_write_json, stable_hash


_DATA_SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".parquet")


def card_path(output: str | os.PathLike) -> Path:
    """``train.jsonl`` -> ``train.card.json``; only the data suffix goes, so ``train_eps0.4.jsonl`` keeps its ε."""
    p = Path(output)
    name = p.name
    for suffix in _DATA_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".card.json")


def write_card(output: str | os.PathLike, records: list[dict], *, builder: str, config: dict[str, Any],
               rejects: list[dict] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<output>.card.json``: bucket counts, flips, rejects with reasons, seed and config hash.

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
    }
    if extra:
        card.update(extra)
    return atomic_write_json(card_path(output), card)
