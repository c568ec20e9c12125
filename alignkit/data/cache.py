"""The one append-only per-item cache (eval tasks and judges): a JSONL file, a record per line, keyed on content,
fsync'd per batch.

A rerun after a crash reads what was written and only computes the missing items. A crash mid-write can leave a torn
last line; it is dropped on open (and counted in ``torn_lines``) and truncated away so appends stay line-aligned.
A complete last record that only lacks its newline is kept (the newline is added). A malformed line anywhere else is
not a crash artefact, so it raises :class:`~alignkit.data.schema.DataError` with the file and line number.

Keys come from :func:`alignkit.utils.cache_key` (task name and version, model identity by content, config, item). A
cache opened with a ``scope`` (the eval runner passes the backend options that change results, e.g. ``dtype``) folds
it into every key, so one output folder rerun with other settings recomputes instead of mixing results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from alignkit.data.schema import DataError
from alignkit.utils import cache_key, dumps_line


class ItemCache:
    """``key -> value`` records ``{"key": ..., FIELD: ...}``; subclasses name the value field (the judge cache keeps
    ``"judgement"`` so caches written before stay readable)."""

    FIELD = "value"

    def __init__(self, path: str | os.PathLike, scope: Any = None) -> None:
        self.path = Path(path)
        self.scope = scope
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, Any] = {}
        self.torn_lines = 0
        self.hits = 0
        self._load()

    @staticmethod
    def key(*parts: Any) -> str:
        """A stable key from JSON-serialisable parts (task, version, model identity, config hash, item id...)."""
        return cache_key(*parts)

    def _scoped(self, key: str) -> str:
        return key if self.scope is None else cache_key(self.scope, key)

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good_end = 0  # byte offset just after the last complete, valid line
        offset = 0
        for lineno, line in enumerate(lines, 1):
            is_last = lineno == len(lines)
            end = offset + len(line) + (0 if is_last else 1)
            if line.strip():
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "key" not in rec or self.FIELD not in rec:
                        raise ValueError(f"record needs 'key' and {self.FIELD!r}")
                except ValueError as exc:
                    if is_last or all(not rest.strip() for rest in lines[lineno:]):
                        self.torn_lines += 1
                        break
                    raise DataError(f"corrupt cache record ({exc})", file=str(self.path), line=lineno) from exc
                if is_last:  # valid JSON but no newline yet: keep it and finish the line
                    self._data[rec["key"]] = rec[self.FIELD]
                    good_end = -1
                    break
                self._data[rec["key"]] = rec[self.FIELD]
            good_end = end
            offset = end
        if good_end == -1:
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
        elif good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def __contains__(self, key: str) -> bool:
        return self._scoped(key) in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        key = self._scoped(key)
        if key in self._data:
            self.hits += 1
            return self._data[key]
        return default

    def put_many(self, records: Iterable[tuple[str, Any]]) -> None:
        """Append a batch of (key, value) records and fsync once."""
        lines = []
        for key, value in records:
            key = self._scoped(key)
            self._data[key] = value
            lines.append(dumps_line({"key": key, self.FIELD: value}) + "\n")
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])


def run_cached(cache: "ItemCache | None", keys: list[str], compute: Any, *, batch_size: int = 16,
               desc: str = "items", progress: bool = True, keep: Any = None) -> list[Any]:
    """Values for ``keys`` (in order): cached ones are read back, the others are computed by
    ``compute(indices) -> list[value]`` in batches of ``batch_size`` and appended (one fsync per batch), behind a
    tqdm bar. Tasks use this so a crash loses at most one batch. ``keep(value) -> bool``: values it rejects (a
    transient judge error) are returned but not cached, so a rerun computes them again."""
    from tqdm.auto import tqdm

    values: list[Any] = [None] * len(keys)
    todo = []
    for i, k in enumerate(keys):
        if cache is not None and k in cache:
            values[i] = cache.get(k)
        else:
            todo.append(i)
    with tqdm(total=len(keys), initial=len(keys) - len(todo), desc=desc, disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            out = compute(idx)
            if len(out) != len(idx):
                raise RuntimeError(f"{desc}: compute returned {len(out)} values for {len(idx)} items")
            for i, v in zip(idx, out):
                values[i] = v
            if cache is not None:
                cache.put_many((keys[i], v) for i, v in zip(idx, out) if keep is None or keep(v))
            bar.update(len(idx))
    return values
