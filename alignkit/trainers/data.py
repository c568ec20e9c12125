"""Training data as the trainers read it: preference pairs for the F-DPO family (:func:`load_split`, a
``datasets.Dataset`` of the training columns) and consistency sets for F²C (:func:`load_consistency_set`, records
with one entry per prompt format; :func:`consistency_dev_split` for its unsupervised dev set)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alignkit.data import read_records, write_rejects
from alignkit.data.io import iter_jsonl, partial_column_rows

logger = logging.getLogger(__name__)
KEEP_COLUMNS = ("prompt", "chosen", "rejected", "h_w", "h_l", "flipped")


def records_to_dataset(records: list[dict], source: str):
    """A ``datasets.Dataset`` of the training columns. Flag columns must be on every row or on none."""
    from datasets import Dataset

    if not records:
        raise ValueError(f"{source}: no valid records to train on")
    columns = {}
    for key in KEEP_COLUMNS:
        have = sum(1 for r in records if r.get(key) is not None)
        if have == len(records):
            columns[key] = [r[key] for r in records]
        elif have and key != "flipped":
            raise ValueError(f"{source}: field '{key}' is set on {have} of {len(records)} rows; set it on all or none")
    if "flipped" in columns:
        columns["flipped"] = [bool(v) for v in columns["flipped"]]
    return Dataset.from_dict(columns)


def load_split(path: str, split: str, *, require_flags: bool, on_invalid: str, max_samples: int | None,
               rejects_to: Path | None) -> tuple[Any, dict]:
    res = read_records(path, on_invalid=on_invalid, require_flags=require_flags, split=split)
    records = res.records[:max_samples] if max_samples else res.records
    if rejects_to is not None:
        write_rejects(rejects_to, res.rejects)
    info = {"source": res.source, "n_read": len(res.records), "n_used": len(records), "n_rejected": res.n_rejected}
    # a `flipped` column set on only some rows is left out of the dataset (see records_to_dataset): count the rows
    info["n_flipped_values_dropped"] = partial_column_rows(records, "flipped")
    if info["n_flipped_values_dropped"]:
        logger.warning("%s: 'flipped' is set on %d of %d rows; that column is ignored",
                       res.source, info["n_flipped_values_dropped"], len(records))
    return records_to_dataset(records, res.source), info



def load_consistency_set(path: str, args: Any, split: str = "train") -> list[dict]:
    """A consistency set (records with ``formats``), built first from raw SuperGLUE JSONL when
    ``args.consistency_templates`` is set (into the output dir; deterministic, so reruns rebuild the same file)."""
    if args.consistency_templates:
        from alignkit.builders.consistency import (
            ConsistencyBuildConfig,
            build_consistency,
        )

        out = Path(args.output_dir) / f"consistency-{Path(path).stem}-{split}.jsonl"
        build_consistency(ConsistencyBuildConfig(
            data=path, templates=args.consistency_templates, output=str(out), split=split,
            n=args.consistency_examples, heldout=args.consistency_heldout, seed=args.seed))
        path = str(out)
    rows = []
    for i, r in iter_jsonl(path):  # DataError (a ValueError) at file:line for a line that is not JSON
        if not isinstance(r, dict) or not isinstance(r.get(args.format_key), list) or not r[args.format_key]:
            raise ValueError(f"{path}:{i}: field {args.format_key!r}: missing or empty (build the set with "
                             "`alignkit build consistency`, or set consistency_templates)")
        rows.append(r)
    return rows


def consistency_dev_split(script_args: Any, args: Any, train: list[dict]) -> tuple[list[dict], list[dict] | None]:
    """(train, dev): the dev set is ``eval_dataset_path`` (split ``eval_split``, built like the training set when
    ``consistency_templates`` is set) or the last ``dev_examples`` training examples; None when neither is set."""
    if script_args.eval_dataset_path:
        if args.dev_examples:
            raise ValueError("set either eval_dataset_path or dev_examples, not both")
        dev = load_consistency_set(script_args.eval_dataset_path, args, script_args.eval_split)
        return train, dev[: script_args.max_eval_samples] if script_args.max_eval_samples else dev
    if args.dev_examples:
        if args.dev_examples >= len(train):
            raise ValueError(f"dev_examples ({args.dev_examples}) must be < the {len(train)} training examples")
        return train[: -args.dev_examples], train[-args.dev_examples:]
    return train, None
