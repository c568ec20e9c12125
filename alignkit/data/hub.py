"""Hub-shaped preference data onto alignkit's record (schema.py), loaded with ``datasets``.

Preference sets on the Hugging Face hub rarely have alignkit's exact shape. This module maps the common shapes onto
it *before* the usual validation (:func:`alignkit.data.schema.record_problems`), so a bad row still stops the run
with ``SOURCE:ROW: field 'X': reason`` (or is skipped and written to the rejects file with ``on_invalid: skip``):

* **implicit prompt** (``trl-lib/ultrafeedback_binarized``, ``Anthropic/hh-rlhf``): no ``prompt`` column, or a
  string ``prompt`` beside chat-message ``chosen``/``rejected`` that repeat the user turn
  (``HuggingFaceH4/ultrafeedback_binarized``). The shared leading part of chosen and rejected becomes the prompt —
  TRL's own :func:`trl.data_utils.maybe_extract_prompt`, so alignkit and TRL's DPO trainer split a row identically.
* **column mapping** ``{alignkit_field: source_column}``, e.g. ``{"chosen": "response_a"}``.
* **flags as booleans**: ``h_w``/``h_l`` given as ``true``/``false`` become 1/0.
* **no flags at all** (plain DPO data): fine for dpo/cdpo/rdpo/ipo. F-DPO needs them: by default such a row is an
  error naming the field; ``missing_flags="zero"`` fills ``h_w = h_l = 0`` (every such pair is Δh = 0, where F-DPO
  is plain DPO) and the number of filled rows is reported, never hidden.

Sources are anything ``datasets`` reads: a hub id (with ``name``/config, ``revision``, ``data_files``), a
``save_to_disk`` folder, a local data file (``.parquet``, ``.jsonl``, ``.json``, ``.jsonl.gz``, ``.csv``) or a
builder name with ``data_files`` (``path="parquet", data_files={"train": [...]}``). With ``streaming=True`` rows are
normalised and validated one at a time as they arrive (:class:`RowStream`); errors still name the row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trl.scripts.utils import ScriptArguments as TRLScriptArguments

from alignkit.data.io import ReadResult, _Collector
from alignkit.data.schema import FLAG_FIELDS, DataError

MissingFlags = Literal["error", "zero"]
MISSING_FLAGS = ("error", "zero")
# Fields a `columns` mapping may fill (the record's keys, schema.py).
MAPPABLE_FIELDS = ("prompt", "chosen", "rejected", "h_w", "h_l", "flipped", "id", "source")
# Local data files and the `datasets` builder that reads them.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json",
                 ".csv": "csv", ".csv.gz": "csv"}
_FLAGS_HINT = ("plain DPO data has no hallucination flags: use a dpo-family loss_type (dpo, cdpo, rdpo, ipo), or set "
               "missing_flags: zero to train F-DPO with every unflagged pair counted as Δh = 0")


@dataclass(frozen=True)
class HubSource:
    """One dataset split to read: the arguments of ``datasets.load_dataset`` plus alignkit's column mapping."""

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: Any = None
    streaming: bool = False
    columns: Mapping[str, str] | None = None  # alignkit field -> source column
    keep: tuple[str, ...] | None = None  # the handbook's `columns: [...]`: source columns to keep

    def __post_init__(self):
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"dataset path/id must be a non-empty string, got {self.path!r}")
        if self.columns is not None:
            check_columns(self.columns)

    @property
    def label(self) -> str:
        """How errors name this source: ``id[split]`` (``id:config[split]`` with a config)."""
        name = f"{self.path}:{self.name}" if self.name else self.path
        return f"{name}[{self.split}]"


def check_columns(columns: Mapping[str, str]) -> None:
    """A ``columns`` mapping must send source columns (strings) to distinct alignkit fields."""
    if not isinstance(columns, Mapping):
        raise ValueError(f"columns must map alignkit fields to source columns, got {type(columns).__name__}")
    for target, column in columns.items():
        if target not in MAPPABLE_FIELDS:
            raise ValueError(f"columns: {target!r} is not an alignkit field; map onto one of {list(MAPPABLE_FIELDS)}")
        if not isinstance(column, str) or not column:
            raise ValueError(f"columns: {target} must name a source column (a string), got {column!r}")


def normalise_row(row: Mapping[str, Any], *, columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One hub row as an alignkit record (not yet validated; flags are never invented here, see
    :class:`RowStream`'s ``missing_flags``). Raises :class:`DataError` (field set, no location) for what only this
    step can tell: a mapped column that is missing, an implicit prompt that cannot be found."""
    record = {k: v for k, v in row.items() if v is not None}  # Arrow stores absent optional values as None
    columns = columns or {}
    for target, column in columns.items():
        if column not in record:
            raise DataError(f"column {column!r} (mapped to {target!r} by `columns`) is missing", field=column)
    mapped = {target: record[column] for target, column in columns.items()}  # a snapshot: swaps work too
    for column in set(columns.values()) - set(columns):
        del record[column]  # the source column now lives under its alignkit name
    record.update(mapped)
    implicit = "prompt" not in record or _mixed_prompt(record)
    if implicit and isinstance(record.get("chosen"), (str, list)) and isinstance(record.get("rejected"), (str, list)):
        from trl.data_utils import maybe_extract_prompt

        split = maybe_extract_prompt({k: record[k] for k in ("prompt", "chosen", "rejected") if k in record})
        if split["prompt"]:
            record.update(split)
        elif "prompt" not in record:
            raise DataError("no prompt column, and chosen and rejected share no leading text or messages to take "
                            "it from (TRL's extract_prompt)", field="prompt")
        # else: a string prompt beside completions that do not repeat it; kept as given
    for name in FLAG_FIELDS:
        if isinstance(record.get(name), bool):
            record[name] = int(record[name])
    return record


def _mixed_prompt(record: Mapping[str, Any]) -> bool:
    # HuggingFaceH4/ultrafeedback_binarized: a string prompt beside message lists that repeat the user turn.
    return isinstance(record.get("prompt"), str) and isinstance(record.get("chosen"), list)


def load_source(source: HubSource):
    """The split as a ``datasets.Dataset`` (``IterableDataset`` when streaming), columns selected, not normalised."""
    import datasets

    local = Path(source.path).expanduser()
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        ds = datasets.load_from_disk(str(local))  # a save_to_disk folder (a Dataset or a DatasetDict)
        if isinstance(ds, datasets.DatasetDict):
            if source.split not in ds:
                raise ValueError(f"{source.path}: no split {source.split!r} (splits: {', '.join(ds)})")
            ds = ds[source.split]
        elif source.split != "train":
            raise ValueError(f"{source.path}: a single saved Dataset has one split, 'train'; got {source.split!r}")
        if source.streaming:
            ds = ds.to_iterable_dataset()
    elif local.is_file():
        suffix = "".join(local.suffixes[-2:]) if local.suffix == ".gz" else local.suffix
        builder = FILE_BUILDERS.get(suffix)
        if builder is None:
            raise ValueError(f"{source.path}: unknown data file type {suffix!r} (known: {sorted(FILE_BUILDERS)})")
        if source.split != "train":
            raise ValueError(f"{source.path}: a single data file has one split, 'train'; got {source.split!r} (name "
                             "several files by split with data_files: {SPLIT: FILE})")
        ds = datasets.load_dataset(builder, data_files=str(local), split="train", streaming=source.streaming)
    else:
        ds = datasets.load_dataset(source.path, source.name, split=source.split, revision=source.revision,
                                   data_files=source.data_files, streaming=source.streaming)
    names = ds.column_names
    wanted = set(source.keep or ()) | set((source.columns or {}).values())
    if names is not None:  # an IterableDataset may not know its columns before the first row
        missing = sorted(wanted - set(names))
        if missing:
            raise ValueError(f"{source.label}: no column(s) {missing} (columns: {', '.join(names)})")
    if source.keep is not None:
        ds = ds.select_columns(list(dict.fromkeys([*source.keep, *(source.columns or {}).values()])))
    return ds


@dataclass
class RowStream:
    """Normalised, validated records of a source, produced row by row as ``datasets`` yields them (streaming or
    not). ``on_invalid="error"`` raises :class:`DataError` at the first bad row, named ``SOURCE:ROW``; ``"skip"``
    collects it in :attr:`rejects`. ``rows`` optionally overrides the 1-based row numbers (a subsample)."""

    source: HubSource
    on_invalid: str = "error"
    require_flags: bool = True
    missing_flags: MissingFlags = "error"
    dataset: Any = None  # the loaded split; loaded from `source` when None
    rows: list[int] | None = None
    rejects: list[dict] = field(default_factory=list)
    n_rows: int = 0
    n_flags_filled: int = 0

    def __post_init__(self):
        if self.missing_flags not in MISSING_FLAGS:
            raise ValueError(f"missing_flags must be one of {MISSING_FLAGS}, got {self.missing_flags!r}")
        # io's collector gives rejects their location and honours on_invalid (raise, or keep with the reason)
        self._collector = _Collector(self.source.label, self.on_invalid, self.require_flags)
        self.rejects = self._collector.result.rejects

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        """``(row, record)`` for every valid row; ``row`` is 1-based in the source split."""
        ds = load_source(self.source) if self.dataset is None else self.dataset
        col = self._collector
        for i, raw in enumerate(ds):
            row = self.rows[i] if self.rows is not None else i + 1
            self.n_rows += 1
            try:
                record = normalise_row(raw, columns=self.source.columns)
            except DataError as exc:
                col.reject(row, exc.field, exc.reason, raw)
                continue
            filled = self.missing_flags == "zero" and not any(name in record for name in FLAG_FIELDS)
            if filled:
                record.update({name: 0 for name in FLAG_FIELDS})  # Δh = 0: F-DPO is plain DPO on this pair
            if not col.check(row, record, raw, unit="row", flags_hint=_FLAGS_HINT):
                continue
            self.n_flags_filled += filled
            yield row, record


def read_source(source: HubSource, *, on_invalid: str = "error", require_flags: bool = True,
                missing_flags: MissingFlags = "error", dataset: Any = None, rows: list[int] | None = None,
                ) -> tuple[ReadResult, int]:
    """Read a whole (non-streamed) split into a :class:`~alignkit.data.io.ReadResult`; also returns how many rows
    had their flags filled by ``missing_flags="zero"``."""
    stream = RowStream(source, on_invalid=on_invalid, require_flags=require_flags, missing_flags=missing_flags,
                       dataset=dataset, rows=rows)
    result = ReadResult(records=[], rejects=stream.rejects, source=source.label)
    for row, record in stream:
        result.records.append(record)
        result.lines.append(row)
    return result, stream.n_flags_filled


# -- recipe keys: TRL's ScriptArguments and the handbook's dataset_mixture (read by alignkit.trainers.handbook) --
# Recipe keys of older TRL / alignment-handbook versions that TRL 1.x no longer has: the recipe check's hint.
RETIRED_FIELDS = {
    "torch_dtype": "TRL's ModelConfig calls it 'dtype' now",
    "max_prompt_length": "removed from TRL's DPOConfig: prompt and completion are truncated together to max_length",
    "warmup_ratio": "transformers 5 folded it into warmup_steps: a float in [0, 1) is the ratio",
    "dataset_mixer": "the handbook's older form; write dataset_mixture: {datasets: [{id, split, weight}]}",
    "dataset_splits": "the handbook's older form; give each dataset_mixture entry its split",
}
MIXTURE_KEYS = ("datasets", "seed", "test_split_size")
ENTRY_KEYS = ("id", "config", "split", "columns", "weight", "revision", "data_files")


@dataclass
class HubDataArguments(TRLScriptArguments):
    """TRL's ``ScriptArguments`` (``dataset_name``, ``dataset_config``, ``dataset_train_split``,
    ``dataset_test_split``, ``dataset_streaming``, ``ignore_bias_buffers``) plus the handbook's ``dataset_mixture``
    and alignkit's hub options. alignkit's ``ScriptArguments`` inherits these fields, so recipes and the recipe check
    know them."""

    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of `dataset_name`."})
    dataset_data_files: Any = field(
        default=None,
        metadata={"help": "`data_files` for `dataset_name` (a file, a list, or {split: files}); e.g. dataset_name: "
                          "parquet with dataset_data_files: {train: a.parquet, test: b.parquet}."})
    dataset_columns: dict[str, str] | None = field(
        default=None,
        metadata={"help": "Map source columns onto alignkit fields, {field: column}, e.g. {chosen: response_a, "
                          "rejected: response_b}."})
    dataset_mixture: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "alignment-handbook mixture: {datasets: [{id, config, split, columns, weight, revision, "
                          "data_files}], seed, test_split_size}."})
    missing_flags: str = field(
        default="error",
        metadata={"help": "Rows without h_w/h_l under a loss that needs them (fdpo): 'error' names the row and field; "
                          "'zero' fills h_w = h_l = 0 (Δh = 0: F-DPO is plain DPO on those pairs) and counts them "
                          "in metrics.json. Applies to dataset_name / dataset_mixture data."})

    @property
    def uses_hub_data(self) -> bool:
        """Whether the training data comes from ``dataset_name`` / ``dataset_mixture`` (read by this module)."""
        return bool(self.dataset_name or self.dataset_mixture)

    @staticmethod
    def value_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(field, problem)`` for the data keys; the recipe check reports them with the recipe's file and line."""
        return hub_problems(values)

    def check_hub_data(self) -> None:
        """Raise ``ValueError("field KEY: ...")`` for the first problem with the data keys."""
        problems = hub_problems(vars(self))
        if problems:
            key, problem = problems[0]
            raise ValueError(f"field {key}: {problem}")


def hub_problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    path, name, mixture = v.get("dataset_path"), v.get("dataset_name"), v.get("dataset_mixture")
    if name and mixture:
        out.append(("dataset_mixture", "set dataset_name or dataset_mixture, not both"))
    if path and (name or mixture):
        key = "dataset_name" if name else "dataset_mixture"
        out.append((key, f"set dataset_path (alignkit records) or {key} (hub data), not both"))
    if (name or mixture) and v.get("trainer", "fdpo") != "fdpo":
        out.append(("dataset_name" if name else "dataset_mixture",
                    f"hub data keys feed the F-DPO-family trainer; trainer {v.get('trainer')} reads dataset_path"))
    if v.get("missing_flags", "error") not in MISSING_FLAGS:
        out.append(("missing_flags", f"must be one of {list(MISSING_FLAGS)}, got {v.get('missing_flags')!r}"))
    if v.get("ignore_bias_buffers"):
        out.append(("ignore_bias_buffers", "not supported by alignkit's trainers (a DDP workaround of TRL's "
                                           "scripts); leave it false"))
    if v.get("dataset_columns") is not None:
        try:
            check_columns(v["dataset_columns"])
        except ValueError as exc:
            out.append(("dataset_columns", str(exc)))
    if mixture is not None:
        if name is None and (v.get("dataset_columns") or v.get("dataset_data_files") or v.get("dataset_revision")):
            out.append(("dataset_mixture", "dataset_columns/dataset_data_files/dataset_revision go with dataset_name; "
                                           "in a mixture give columns/data_files/revision per dataset"))
        try:
            parse_mixture(mixture, streaming=bool(v.get("dataset_streaming")))
        except ValueError as exc:
            out.append(("dataset_mixture", str(exc)))
    return out


@dataclass(frozen=True)
class MixtureEntry:
    source: HubSource
    weight: float | None = None


@dataclass(frozen=True)
class Mixture:
    entries: tuple[MixtureEntry, ...]
    seed: int = 0
    test_split_size: float | int | None = None


def parse_mixture(spec: Any, *, streaming: bool = False) -> Mixture:
    """The handbook's ``dataset_mixture`` mapping, checked; ``ValueError`` names the entry and key at fault."""
    if not isinstance(spec, Mapping) or "datasets" not in spec:
        raise ValueError("must be a mapping with a `datasets` list (and optional seed, test_split_size)")
    unknown = sorted(set(spec) - set(MIXTURE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; known: {list(MIXTURE_KEYS)}")
    items = spec["datasets"]
    if not isinstance(items, list) or not items:
        raise ValueError("`datasets` must be a non-empty list of {id, config, split, columns, weight}")
    seed, test_size = spec.get("seed", 0), spec.get("test_split_size")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if test_size is not None and not (
            (isinstance(test_size, float) and 0 < test_size < 1) or (type(test_size) is int and test_size >= 1)):
        raise ValueError(f"test_split_size must be a fraction in (0, 1) or a row count >= 1, got {test_size!r}")
    entries = []
    for i, item in enumerate(items):
        where = f"datasets[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: must be a mapping with at least `id`, got {item!r}")
        unknown = sorted(set(item) - set(ENTRY_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {list(ENTRY_KEYS)}")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"{where}: `id` (hub id, save_to_disk folder or data file) is required")
        columns = item.get("columns")
        keep, mapping = None, None
        if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
            keep = tuple(columns)
        elif isinstance(columns, Mapping):
            mapping = dict(columns)
        elif columns is not None:
            raise ValueError(f"{where}: columns must be a list of columns to keep or a {{field: column}} mapping")
        weight = item.get("weight")
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
                raise ValueError(f"{where}: weight is the share of the split to keep, in (0, 1]; got {weight!r}")
            if streaming:
                raise ValueError(f"{where}: weight needs the split's length; it cannot be used with streaming")
        try:
            source = HubSource(path=item["id"], name=item.get("config"), split=item.get("split", "train"),
                               revision=item.get("revision"), data_files=item.get("data_files"),
                               streaming=streaming, columns=mapping, keep=keep)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        entries.append(MixtureEntry(source, None if weight is None else float(weight)))
    if streaming and test_size is not None:
        raise ValueError("test_split_size needs the mixture's length; it cannot be used with streaming")
    return Mixture(tuple(entries), seed, test_size)
