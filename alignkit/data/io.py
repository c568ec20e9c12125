"""Readers and writers for preference records: JSONL, Parquet, and ``datasets`` (saved dir or hub id).

Reading validates every row. ``on_invalid="error"`` (the default) raises :class:`DataError` naming file, line and
field; ``on_invalid="skip"`` keeps going, and returns the rejected rows with their reasons so the caller can write
them beside its output (:func:`write_rejects`) and count them in the dataset card. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from alignkit.data.schema import FLAG_FIELDS, DataError, record_problems
from alignkit.utils import atomic_path, dumps_line

OnInvalid = Literal["error", "skip"]
MAX_ROW_BYTES = 8 * 1024 * 1024  # a row this large is almost surely a concatenation or binary junk
_BOM = b"\xef\xbb\xbf"  # Windows editors and Excel start UTF-8 files with it; it is not part of the first row
DATA_SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".parquet")


def sidecar_path(output: str | os.PathLike, kind: str) -> Path:
    """The file written beside ``output``: ``train.jsonl`` -> ``train.<kind>``. Only the data suffix is removed,
    so ``train_eps0.4.jsonl`` and ``train_eps0.jsonl`` get distinct sidecars (cards, rejects, caches, reviews)."""
    p = Path(output)
    name = p.name
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(f"{name}.{kind}")


@dataclass
class ReadResult:
    records: list[dict]
    rejects: list[dict] = field(default_factory=list)  # {"file","line","field","reason","raw"}
    source: str = ""
    lines: list[int] = field(default_factory=list)  # input line (JSONL) or 1-based row number of each record

    @property
    def n_rows(self) -> int:
        """Rows read (valid + rejected); blank JSONL lines are not rows."""
        return len(self.records) + len(self.rejects)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)


class _Collector:
    def __init__(self, file: str, on_invalid: OnInvalid, require_flags: bool):
        if on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        self.file, self.on_invalid, self.require_flags = file, on_invalid, require_flags
        self.result = ReadResult(records=[], source=file)
        self._ids: dict[str, int] = {}

    def reject(self, line: int, field_name: str | None, reason: str, raw: Any) -> None:
        err = DataError(reason, file=self.file, line=line, field=field_name)
        if self.on_invalid == "error":
            raise err
        row = err.as_dict()
        row["raw"] = raw if isinstance(raw, str) else dumps_line(raw)
        if len(row["raw"]) > 2000:
            row["raw"] = row["raw"][:2000] + "…"
        self.result.rejects.append(row)

    def check(self, line: int, record: Any, raw: Any, *, unit: str = "line", flags_hint: str | None = None) -> bool:
        """Reject ``record`` (schema problem, or an id seen before) and return False, or remember its id and return
        True. ``unit`` names positions in the duplicate message ("line" in a file, "row" in a dataset split);
        ``flags_hint`` is added to a missing-flag reason (how to run without flags)."""
        problems = record_problems(record, require_flags=self.require_flags)
        if problems:
            problem = problems[0]
            reason = problem.reason
            if flags_hint and problem.field in FLAG_FIELDS and reason == "missing":
                reason = f"missing ({flags_hint})"
            self.reject(line, problem.field, reason, raw)
            return False
        rid = record.get("id")
        if rid is not None:
            if rid in self._ids:
                self.reject(line, "id", f"duplicate id {rid!r} (first seen on {unit} {self._ids[rid]})", raw)
                return False
            self._ids[rid] = line
        return True

    def add(self, line: int, record: Any, raw: Any) -> None:
        if not self.check(line, record, raw):
            return
        self.result.records.append(record)
        self.result.lines.append(line)


def iter_jsonl(path: str | os.PathLike, *, on_invalid: Literal["error", "yield"] = "error",
               source: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of a JSONL file, 1-based, in order.

    A line that is not JSON raises :class:`DataError` naming ``file:line`` (``source``, default the path), or with
    ``on_invalid="yield"`` is yielded as ``(line, DataError)`` so a caller that skips bad rows can count them. A
    UTF-8 BOM before the first line is not part of it (editors on Windows write one). What a value must contain is
    the caller's check; this only reads.
    """
    where = str(path) if source is None else source
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                value: Any = json.loads(text)
            except json.JSONDecodeError as e:
                value = DataError(f"invalid JSON: {e.msg} (column {e.colno})", file=where, line=lineno)
            except RecursionError:  # the parser recurses once per nesting level; no row is nested this deep
                value = DataError("invalid JSON: nested too deeply", file=where, line=lineno)
            if isinstance(value, DataError) and on_invalid == "error":
                raise value
            yield lineno, value


def read_jsonl(path: str | os.PathLike, *, on_invalid: OnInvalid = "error", require_flags: bool = True,
               max_row_bytes: int = MAX_ROW_BYTES) -> ReadResult:
    """Read and validate a JSONL file of preference records (blank lines are ignored)."""
    path = str(path)
    col = _Collector(path, on_invalid, require_flags)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if len(raw) > max_row_bytes:
                col.reject(lineno, None, f"row is {len(raw)} bytes, over the {max_row_bytes}-byte limit",
                           raw[:200].decode("utf-8", "replace"))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                col.reject(lineno, None, f"invalid UTF-8 at byte {e.start}", raw.decode("utf-8", "replace"))
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                col.reject(lineno, None, f"invalid JSON: {e.msg} (column {e.colno})", text.rstrip("\n"))
                continue
            except RecursionError:  # the parser recurses once per nesting level; no record is nested this deep
                col.reject(lineno, None, "invalid JSON: nested too deeply", text.rstrip("\n"))
                continue
            col.add(lineno, obj, text.rstrip("\n"))
    return col.result


def _rows_to_result(rows: Iterable[dict], source: str, on_invalid: OnInvalid, require_flags: bool) -> ReadResult:
    col = _Collector(source, on_invalid, require_flags)
    for i, row in enumerate(rows, start=1):
        col.add(i, _clean_arrow(row), row)
    return col.result


def _clean_arrow(row: dict) -> dict:
    # Arrow stores missing optional keys as None; drop them so validation sees "missing", not "wrong type".
    return {k: v for k, v in row.items() if v is not None}


def read_parquet(path: str | os.PathLike, *, on_invalid: OnInvalid = "error", require_flags: bool = True) -> ReadResult:
    """Read a Parquet file; 'line' in errors is the 1-based row number."""
    import pyarrow.parquet as pq

    rows = pq.read_table(str(path)).to_pylist()
    return _rows_to_result(rows, str(path), on_invalid, require_flags)


def read_hf_dataset(name_or_dir: str, *, split: str = "train", on_invalid: OnInvalid = "error",
                    require_flags: bool = True) -> ReadResult:
    """Read a ``datasets`` dataset: a ``save_to_disk`` folder, or a hub id (needs network access to the hub)."""
    import datasets

    if Path(name_or_dir).is_dir():
        ds = datasets.load_from_disk(name_or_dir)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(name_or_dir, split=split)
    return _rows_to_result(ds.to_list(), f"{name_or_dir}[{split}]", on_invalid, require_flags)


def read_records(path: str | os.PathLike, *, on_invalid: OnInvalid = "error", require_flags: bool = True,
                 split: str = "train") -> ReadResult:
    """Read preference records from ``.jsonl``/``.json`` lines, ``.parquet``, or a ``datasets`` dir / hub id."""
    p = Path(path)
    if p.suffix in (".jsonl", ".json") or (p.is_file() and p.suffix not in (".parquet",)):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        return read_jsonl(p, on_invalid=on_invalid, require_flags=require_flags)
    if p.suffix == ".parquet":
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        return read_parquet(p, on_invalid=on_invalid, require_flags=require_flags)
    return read_hf_dataset(str(path), split=split, on_invalid=on_invalid, require_flags=require_flags)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write records as JSONL atomically (temp file + rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(dumps_line(r) + "\n")
    return Path(path)


def write_parquet(path: str | os.PathLike, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(records), str(tmp))
    return Path(path)


def write_records(path: str | os.PathLike, records: list[dict]) -> Path:
    """Write by extension: ``.parquet`` or JSONL (anything else)."""
    if Path(path).suffix == ".parquet":
        return write_parquet(path, records)
    return write_jsonl(path, records)


def rejects_path(output: str | os.PathLike) -> Path:
    """``train_eps0.4.jsonl`` -> ``train_eps0.4.rejects.jsonl``."""
    return sidecar_path(output, "rejects.jsonl")


def partial_column_rows(records: list[dict], key: str) -> int:
    """How many rows carry ``key`` when not every row does (0 when all or none do): the rows whose value a
    column-wise consumer (a ``datasets.Dataset``) has to drop, so that the caller can count them."""
    have = sum(1 for r in records if r.get(key) is not None)
    return have if have < len(records) else 0


def write_rejects(output: str | os.PathLike, rejects: list[dict]) -> Path | None:
    """Write rejected rows with their reasons beside ``output`` (nothing if there are none)."""
    if not rejects:
        rejects_path(output).unlink(missing_ok=True)
        return None
    return write_jsonl(rejects_path(output), rejects)
