"""Per-seed fact-world splits and the noised training files of each (seed, ε, δ)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.experiments.noise_sweep.config import NoiseSweepConfig
from alignkit.utils import stable_hash


@dataclass
class SeedData:
    """One seed's clean training pairs and its validation / test items (disjoint entities from training)."""

    seed: int
    train: list[dict]
    val: list[dict]
    test: list[dict]


def seed_data(cfg: NoiseSweepConfig, seed: int) -> SeedData:
    from alignkit.builders.factworld import build_factworld

    # rho = 0: every pair ordered and correctly flagged; all noise below is injected, and known.
    train, held = build_factworld(cfg.n_train, cfg.n_val + cfg.n_test, rho=0.0, seed=seed)
    return SeedData(seed, train, held[:cfg.n_val], held[cfg.n_val:])


def noised_rows(data: SeedData, eps: float, delta: float) -> tuple[list[dict], list[int], int]:
    """The training rows of (seed, ε, δ): order noise, then judge noise; with the swapped rows and flipped flags."""
    from alignkit.data import inject_noise
    from alignkit.data.transforms import inject_judge_noise

    rows, idx = inject_noise(data.train, eps, data.seed)
    n_flags = 0
    if delta > 0:
        rows, n_flags = inject_judge_noise(rows, delta, data.seed)
    return rows, idx, n_flags


def noisy_train(cfg: NoiseSweepConfig, data: SeedData, eps: float, delta: float, out: Path) -> tuple[Path, list[dict]]:
    """Write the training file of (seed, ε, δ) with its card (an existing identical file is kept); returns the
    file and its rows."""
    from alignkit.data import write_card, write_jsonl

    rows, idx, n_flags = noised_rows(data, eps, delta)
    path = out / "data" / f"seed{data.seed}" / f"train_eps{eps:g}_delta{delta:g}.jsonl"
    key = stable_hash(rows)
    card = path.with_name(path.name[:-len(".jsonl")] + ".card.json")
    if path.is_file() and card.is_file() and json.loads(card.read_text()).get("rows_hash") == key:
        return path, rows
    write_jsonl(path, rows)
    write_card(path, rows, builder="noise-sweep",
               config={"seed": data.seed, "eps": eps, "delta": delta, "n_train": cfg.n_train},
               extra={"noised_indices": idx, "judge_flags_flipped": n_flags, "rows_hash": key})
    return path, rows


# bookkeeping columns the trainers never read: what the noise and the flip did to a row, and the true flags
_BOOKKEEPING = ("noised", "flipped", "judge_noise", "h_w_true", "h_l_true")


def training_view(rows: list[dict], apply_flip: bool) -> tuple[str, int]:
    """(hash of what a trainer trains on, rows the F-DPO flip swaps): the rows after the flip when the method applies
    it, without the bookkeeping columns. Two (ε, δ) cells with equal hashes train on identical data: with perfect
    flags (δ = 0) the flip swaps every order-noised pair back, so F-DPO's data at ε > 0 is its data at ε = 0; with
    judge noise it happens when no flag of a swapped pair was flipped (likely only on tiny training sets)."""
    from alignkit.data.transforms import fdpo_flip_counted

    seen, swapped = fdpo_flip_counted(rows) if apply_flip else (rows, 0)
    return stable_hash([{k: v for k, v in r.items() if k not in _BOOKKEEPING} for r in seen]), swapped


def heldout_pairs(items: list[dict]) -> list[tuple[Any, str, str]]:
    """(prompt, factual answer, contradicting answer) per held-out item."""
    return [(it["prompt"], it["gold"], it["reference_false"][-1]) for it in items]
