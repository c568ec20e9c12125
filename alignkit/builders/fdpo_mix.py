"""``alignkit build fdpo-mix``: balance preference pairs to target counts per (h_w, h_l) bucket, then flip.

Default targets are the paper's 45k train mix (methods.md §1; Chaduvula et al., arXiv 2601.03027):
(0,0) 15k, (0,1) 10k, (1,0) 10k, (1,1) 10k, multiplied by ``scale``. Sampling per bucket is seeded:

- ``replacement: auto`` (the paper's choice) — without replacement when the bucket has enough rows, otherwise
  every row once plus the remainder drawn with replacement;
- ``never`` — at most the rows available; a shortfall is recorded in the card, not hidden;
- ``always`` — every row drawn with replacement.

A repeated row gets ``id`` suffixed ``#rK`` (K = its 1-based repeat number) and ``resampled: true``, so ids stay
unique. The mix is shuffled with the same seed and, by default, passed through the F-DPO flip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tqdm import tqdm

from alignkit.builders.common import config_dict, config_from_dict

BUCKETS = ("(0,0)", "(0,1)", "(1,0)", "(1,1)")
PAPER_TARGETS = {"(0,0)": 15000, "(0,1)": 10000, "(1,0)": 10000, "(1,1)": 10000}


@dataclass
class FDPOMixConfig:
    inputs: list = field(default_factory=list, metadata={"help": "labelled preference files to mix"})
    output: str = field(default="", metadata={"help": "output .jsonl/.parquet; card and rejects beside it"})
    targets: dict = field(default_factory=lambda: dict(PAPER_TARGETS), metadata={
        "help": "rows per bucket '(h_w,h_l)' before scaling (default: the paper's 10k/10k/15k/10k shape)"})
    scale: float = field(default=1.0, metadata={"help": "multiply every target by this (rounded)"})
    replacement: str = field(default="auto", metadata={"help": "'auto', 'never' or 'always' (see module doc)"})
    seed: int = field(default=0, metadata={"help": "sampling and shuffling seed"})
    flip: bool = field(default=True, metadata={"help": "apply the F-DPO flip to the mix"})
    on_invalid: str = field(default="error", metadata={"help": "bad input rows: 'error' or 'skip' (counted)"})

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            self.inputs = [self.inputs]
        if not self.inputs or not self.output:
            raise ValueError("fdpo-mix config: 'inputs' and 'output' are required")
        self.targets = {str(k).replace(" ", ""): v for k, v in self.targets.items()}
        bad = [k for k in self.targets if k not in BUCKETS]
        if bad:
            raise ValueError(f"fdpo-mix config: unknown bucket(s) {bad}; use {list(BUCKETS)}")
        if any(not isinstance(v, int) or v < 0 for v in self.targets.values()):
            raise ValueError("fdpo-mix config: targets must be non-negative integers")
        if self.scale < 0:
            raise ValueError("fdpo-mix config: scale must be >= 0")
        if self.replacement not in ("auto", "never", "always"):
            raise ValueError(f"fdpo-mix config: replacement must be auto, never or always, got {self.replacement!r}")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError("fdpo-mix config: on_invalid must be 'error' or 'skip'")


CONFIG_CLASS = FDPOMixConfig


def mix(records: list[dict], targets: dict[str, int], *, seed: int, replacement: str = "auto",
        scale: float = 1.0) -> tuple[list[dict], dict]:
    """Balance ``records`` to ``round(target * scale)`` rows per bucket and shuffle. Returns (rows, report)."""
    rng = random.Random(seed)
    pools: dict[str, list[dict]] = {b: [] for b in BUCKETS}
    for r in records:
        pools[f"({r['h_w']},{r['h_l']})"].append(r)
    out: list[dict] = []
    report = {"available": {}, "target": {}, "taken": {}, "resampled": {}, "shortfall": {}}
    for b in BUCKETS:
        pool, t = pools[b], round(targets.get(b, 0) * scale)
        n = len(pool)
        if replacement == "always" and n:
            picked = rng.choices(pool, k=t)
        elif n >= t:
            picked = rng.sample(pool, t)
        elif replacement == "never" or not n:
            picked = list(pool)
        else:
            picked = list(pool) + rng.choices(pool, k=t - n)
        seen: dict[int, int] = {}
        resampled = 0
        for r in picked:
            k = seen.get(id(r), 0)
            seen[id(r)] = k + 1
            row = dict(r)
            if k:
                row["id"] = f"{r.get('id', 'row')}#r{k}"
                row["resampled"] = True
                resampled += 1
            out.append(row)
        report["available"][b], report["target"][b], report["taken"][b] = n, t, len(picked)
        report["resampled"][b], report["shortfall"][b] = resampled, max(0, t - len(picked))
    rng.shuffle(out)
    return out, report


def main(config: dict, *, progress: bool = True) -> dict:
    from alignkit.data.card import write_card
    from alignkit.data.io import read_records, write_records, write_rejects
    from alignkit.data.schema import DataError
    from alignkit.data.transforms import fdpo_flip_counted

    cfg = config_from_dict(FDPOMixConfig, config, "fdpo-mix config")
    records, rejects, first_seen = [], [], {}
    for path in tqdm(cfg.inputs, desc="fdpo-mix: reading", unit="file", disable=not progress):
        res = read_records(path, on_invalid=cfg.on_invalid)  # type: ignore[arg-type]
        rejects += res.rejects
        for r in res.records:
            rid = r.get("id")
            if rid is not None:
                if rid in first_seen:
                    raise DataError(f"id {rid!r} also appears in {first_seen[rid]}", file=str(path), field="id")
                first_seen[rid] = path
            records.append(r)
    rows, report = mix(records, cfg.targets, seed=cfg.seed, replacement=cfg.replacement, scale=cfg.scale)
    if cfg.flip:
        rows, swapped = fdpo_flip_counted(rows)
        report["flip_swapped"] = swapped
    write_records(cfg.output, rows)
    write_rejects(cfg.output, rejects)
    write_card(cfg.output, rows, builder="fdpo-mix", config=config_dict(cfg), rejects=rejects, extra={"mix": report})
    return {"output": cfg.output, "written": len(rows), "shortfall": report["shortfall"],
            "resampled": report["resampled"], "rejected": len(rejects)}
