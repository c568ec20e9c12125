"""Transforms on preference records: the F-DPO label flip, seeded label-noise injection, bucket statistics.

All transforms return new lists of new dicts (inputs are never mutated) and keep every extra key.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from alignkit.data.schema import bucket


def swap_pair(record: dict) -> dict:
    """Swap (chosen, rejected, h_w, h_l) -> (rejected, chosen, h_l, h_w). An involution: applied twice it is a no-op."""
    out = dict(record)
    out["chosen"], out["rejected"] = record["rejected"], record["chosen"]
    if "h_w" in record or "h_l" in record:
        out["h_w"], out["h_l"] = record.get("h_l"), record.get("h_w")
        out = {k: v for k, v in out.items() if not (k in ("h_w", "h_l") and v is None)}
    if "h_w_true" in record:  # judge-noise records (inject_judge_noise): the true flags travel with their responses
        out["h_w_true"], out["h_l_true"] = record["h_l_true"], record["h_w_true"]
        noise = record["judge_noise"]
        out["judge_noise"] = {"h_w": noise["h_l"], "h_l": noise["h_w"]}
    return out


def fdpo_flip_counted(records: list[dict]) -> tuple[list[dict], int]:
    """F-DPO phase 1 (methods.md §1; Chaduvula et al., arXiv 2601.03027): swap exactly the pairs whose preferred
    response is the hallucinated one (h_w=1, h_l=0) and mark them ``flipped: true``; every other row is kept as is
    (``flipped`` set, false unless it already said true). Returns the rows and how many were swapped.

    The rule reads the flags only, never whether a ``flipped`` column exists: a row that says ``"flipped": false``
    but is still (1, 0) is swapped. Idempotent by construction: a swapped row is (0, 1), so a second pass swaps
    nothing. Rows without flags are kept unchanged. This is the one flip used by ``alignkit data flip``, the
    builders and the trainer.
    """
    out, swapped = [], 0
    for r in records:
        if r.get("h_w") is not None and r.get("h_l") is not None and bucket(r) == (1, 0):
            s = swap_pair(r)
            s["flipped"] = True
            swapped += 1
        else:
            s = dict(r)
            s["flipped"] = bool(r.get("flipped", False))
        out.append(s)
    return out, swapped


def fdpo_flip(records: list[dict]) -> list[dict]:
    """:func:`fdpo_flip_counted` without the count."""
    return fdpo_flip_counted(records)[0]


def inject_noise(records: list[dict], eps: float, seed: int) -> tuple[list[dict], list[int]]:
    """Swap chosen/rejected (and their flags) on exactly ``round(eps * n)`` rows chosen with ``seed``.

    Returns the new records (each with ``noised: bool``) and the sorted indices of the swapped rows, so a
    robustness study knows which labels it corrupted.
    """
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1], got {eps}")
    n = len(records)
    k = round(eps * n)
    idx = sorted(random.Random(seed).sample(range(n), k))
    chosen = set(idx)
    out = []
    for i, r in enumerate(records):
        s = swap_pair(r) if i in chosen else dict(r)
        s["noised"] = i in chosen
        out.append(s)
    return out, idx


def bucket_stats(records: list[dict]) -> dict[str, Any]:
    """Counts per (h_w, h_l) bucket, flips, noise swaps, and format, for dataset cards and ``alignkit data stats``."""
    buckets: Counter[str] = Counter()
    unlabelled = 0
    for r in records:
        if "h_w" in r and "h_l" in r:
            hw, hl = bucket(r)
            buckets[f"({hw},{hl})"] += 1
        else:
            unlabelled += 1
    return {
        "n": len(records),
        "buckets": {b: buckets.get(b, 0) for b in ("(0,0)", "(0,1)", "(1,0)", "(1,1)")},
        "unlabelled": unlabelled,
        "flipped": sum(1 for r in records if r.get("flipped")),
        "noised": sum(1 for r in records if r.get("noised")),
        "conversational": sum(1 for r in records if isinstance(r.get("chosen"), list)),
        "delta_h_1": sum(1 for r in records if r.get("h_l", 0) - r.get("h_w", 0) == 1),
    }


def inject_judge_noise(records: list[dict], delta: float, seed: int) -> tuple[list[dict], int]:
    """Simulate an imperfect hallucination judge: flip each ``h_w`` and each ``h_l`` flag independently with
    probability ``delta`` (one seeded draw per flag, in row order).

    Unlike :func:`inject_noise` (which swaps whole pairs, flags included), this corrupts only the labels a
    flag-reading method such as F-DPO sees. Every returned row keeps its original flags in ``h_w_true``/``h_l_true``
    and records which flags were flipped in ``judge_noise`` (``{"h_w": bool, "h_l": bool}``). Returns the rows and
    the number of flags flipped. Rows must carry both flags; applying it twice is refused (the noise would compound).
    """
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1], got {delta}")
    # Its own stream: the same seed gives the same order-noise swaps whatever delta is, and vice versa.
    rng = random.Random(f"judge-noise:{seed}")
    out, n_flipped = [], 0
    for i, r in enumerate(records):
        if "h_w" not in r or "h_l" not in r:
            raise ValueError(f"row {i}: judge noise needs both h_w and h_l")
        if "h_w_true" in r or "h_l_true" in r:
            raise ValueError(f"row {i}: judge noise was already applied (h_w_true/h_l_true present)")
        flip_w, flip_l = rng.random() < delta, rng.random() < delta
        s = dict(r)
        s["h_w_true"], s["h_l_true"] = int(r["h_w"]), int(r["h_l"])
        s["h_w"], s["h_l"] = int(r["h_w"]) ^ flip_w, int(r["h_l"]) ^ flip_l
        s["judge_noise"] = {"h_w": flip_w, "h_l": flip_l}
        n_flipped += flip_w + flip_l
        out.append(s)
    return out, n_flipped
