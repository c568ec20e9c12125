"""TRL and alignment-handbook data keys in alignkit recipes.

A recipe may name its data the way TRL's scripts and the alignment-handbook do, instead of alignkit's
``dataset_path`` (which reads alignkit records as they are):

* TRL's ``ScriptArguments``: ``dataset_name`` (hub id, ``save_to_disk`` folder, data file, or a builder such as
  ``parquet`` with ``dataset_data_files``), ``dataset_config``, ``dataset_train_split``, ``dataset_test_split``,
  ``dataset_streaming``; plus alignkit's ``dataset_revision``, ``dataset_data_files`` and ``dataset_columns``
  (``{alignkit_field: source_column}``).
* the handbook's ``dataset_mixture``::

      dataset_mixture:
        datasets:
          - id: HuggingFaceH4/ultrafeedback_binarized   # anything dataset_name accepts
            config: default
            split: train_prefs
            columns: [prompt, chosen, rejected]          # columns to keep, or a {field: column} mapping
            weight: 0.5                                  # keep this share of the split (shuffled with `seed`)
            revision: main                               # alignkit additions: revision, data_files
        seed: 0
        test_split_size: 0.1                             # evaluation rows split off the mixture

Rows are mapped onto alignkit's record by :mod:`alignkit.data.hub` (implicit prompts as TRL extracts them,
boolean flags, column mappings) and validated as every alignkit input is; errors name ``ID[SPLIT]:ROW``. Evaluation
data follows TRL's scripts: the ``dataset_test_split`` (or the mixture's test part) is read when ``eval_strategy`` is
not ``no``; an explicit ``eval_dataset_path`` wins. With ``dataset_streaming`` rows are normalised and validated as
they stream, and reading stops after ``max_train_samples`` valid rows, so the head of a very large hub set trains
without downloading all of it; the rows read are held in memory for training.

An alignment-handbook DPO recipe becomes an F-DPO run with ``loss_type: fdpo`` once the data carries ``h_w``/``h_l``
(plain DPO data without them: ``missing_flags: zero`` trains it as Δh = 0 everywhere, i.e. plain DPO).

The recipe fields themselves (:class:`~alignkit.data.hub.HubDataArguments`, which alignkit's ``ScriptArguments``
inherits, and their checks) live in :mod:`alignkit.data.hub`, which imports no torch, so that parsing and checking a
recipe stays fast; this module does the reading for :func:`alignkit.trainers.runner.run_training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.hub import HubDataArguments, HubSource, RowStream, parse_mixture

__all__ = ["HubDataArguments", "HubSplits", "hub_splits"]


# -- reading ---------------------------------------------------------------------------------------------------------
def _read(stream: RowStream, limit: int | None) -> list[dict]:
    records = []
    for _, record in stream:
        records.append(record)
        if limit is not None and stream.source.streaming and len(records) >= limit:
            break  # streaming: stop reading once enough valid rows arrived
    return records


def _subsample(source: HubSource, weight: float | None, seed: int):
    """The split, and the 1-based source rows kept: the handbook's ``shuffle(seed).select(range(int(n * weight)))``."""
    from alignkit.data.hub import load_source

    ds = load_source(source)
    if weight is None or source.streaming:
        return ds, None
    ds = ds.add_column("__alignkit_row", list(range(1, len(ds) + 1)))
    ds = ds.shuffle(seed=seed).select(range(int(len(ds) * weight)))
    return ds.remove_columns("__alignkit_row"), list(ds["__alignkit_row"])


def _finish(records: list[dict], streams: list[RowStream], label: str, max_samples: int | None,
            rejects_to: Path | None):
    from alignkit.data import write_rejects
    from alignkit.data.io import partial_column_rows
    from alignkit.trainers.data import records_to_dataset
    from alignkit.utils import stable_hash

    rejects = [r for s in streams for r in s.rejects]
    used = records[:max_samples] if max_samples else records
    if rejects_to is not None:
        write_rejects(rejects_to, rejects)
    info = {"source": label, "n_read": len(records), "n_used": len(used), "n_rejected": len(rejects),
            "fingerprint": stable_hash(used), "n_flipped_values_dropped": partial_column_rows(used, "flipped"),
            "n_flags_filled": sum(s.n_flags_filled for s in streams),
            "sources": [{"source": s.source.label, "n_rows": s.n_rows, "n_rejected": len(s.rejects),
                         "n_flags_filled": s.n_flags_filled} for s in streams]}
    return records_to_dataset(used, label), info


def _stream(source: HubSource, args: Any, require_flags: bool, dataset: Any = None, rows: list[int] | None = None):
    return RowStream(source, on_invalid=args.on_invalid, require_flags=require_flags,
                     missing_flags=args.missing_flags, dataset=dataset, rows=rows)


def _eval_wanted(script_args: Any, training_args: Any) -> bool:
    strategy = getattr(training_args, "eval_strategy", "no")
    return not script_args.eval_dataset_path and str(getattr(strategy, "value", strategy)) != "no"


@dataclass
class HubSplits:
    train: tuple[Any, dict]
    eval: tuple[Any, dict | None] = (None, None)


def hub_splits(script_args: Any, training_args: Any, *, require_flags: bool,
               rejects_dir: Path | None) -> HubSplits | None:
    """The training (and evaluation) datasets of a recipe that names its data with ``dataset_name`` or
    ``dataset_mixture``, as ``(datasets.Dataset, info)`` pairs like :func:`alignkit.trainers.data.load_split`;
    None for a ``dataset_path`` recipe. Rejected rows go to ``rejects_dir/{train,eval}.rejects.jsonl``."""
    if not getattr(script_args, "uses_hub_data", False):
        return None
    script_args.check_hub_data()
    rejects = (lambda kind: rejects_dir / f"{kind}.jsonl") if rejects_dir is not None else (lambda kind: None)
    want_eval = _eval_wanted(script_args, training_args)
    if script_args.dataset_mixture is None:
        common = dict(path=script_args.dataset_name, name=script_args.dataset_config,
                      revision=script_args.dataset_revision, data_files=script_args.dataset_data_files,
                      streaming=script_args.dataset_streaming, columns=script_args.dataset_columns)
        train_stream = _stream(HubSource(split=script_args.dataset_train_split, **common), script_args, require_flags)
        train = _finish(_read(train_stream, script_args.max_train_samples), [train_stream], train_stream.source.label,
                        script_args.max_train_samples, rejects("train"))
        if not want_eval:
            return HubSplits(train)
        eval_stream = _stream(HubSource(split=script_args.dataset_test_split, **common), script_args, require_flags)
        return HubSplits(train, _finish(_read(eval_stream, script_args.max_eval_samples), [eval_stream],
                                        eval_stream.source.label, script_args.max_eval_samples, rejects("eval")))

    mixture = parse_mixture(script_args.dataset_mixture, streaming=script_args.dataset_streaming)
    streams, records = [], []
    for entry in mixture.entries:
        ds, rows = _subsample(entry.source, entry.weight, mixture.seed)
        stream = _stream(entry.source, script_args, require_flags, dataset=ds, rows=rows)
        streams.append(stream)
        records += _read(stream, script_args.max_train_samples)
    label = "dataset_mixture(" + ", ".join(e.source.label for e in mixture.entries) + ")"
    if mixture.test_split_size is None:
        if want_eval:
            raise ValueError(f"eval_strategy is {training_args.eval_strategy!s} but dataset_mixture has no "
                             "test_split_size to take evaluation rows from (set it, or eval_dataset_path)")
        return HubSplits(_finish(records, streams, label, script_args.max_train_samples, rejects("train")))
    from datasets import Dataset

    # the handbook splits the mixture with datasets' train_test_split(test_size, seed); the same call on row indices
    parts = Dataset.from_dict({"i": list(range(len(records)))}).train_test_split(
        test_size=mixture.test_split_size, seed=mixture.seed)
    train_records = [records[i] for i in parts["train"]["i"]]
    eval_records = [records[i] for i in parts["test"]["i"]]
    train = _finish(train_records, streams, label + "[train]", script_args.max_train_samples, rejects("train"))
    if not want_eval:
        train[1]["n_test_rows_held_out"] = len(eval_records)  # split off by test_split_size, not trained on
        return HubSplits(train)
    return HubSplits(train, _finish(eval_records, [], label + "[test]", script_args.max_eval_samples, None))
