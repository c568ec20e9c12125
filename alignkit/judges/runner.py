"""Running a judge over many items with an on-disk cache, so a rerun after a crash skips what is done.

The cache is a JSONL file of ``{"key": ..., "judgement": {...}}`` lines, appended and fsync'ed after every batch.
The key is a hash of (judge identity — model, mode, prompt version —, prompt, response, context, references).
Transient failures (timeouts, HTTP errors, engine crashes) are not cached, so a rerun retries them; parse failures
of a deterministic judge are cached (a rerun would get the same reply). A torn last line — the process was killed
mid-write — is ignored on load and cut off before the next append.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from alignkit.judges.base import Judge, JudgeItem, Judgement, is_transient
from alignkit.utils import cache_key as _cache_key
from alignkit.utils import dumps_line


def cache_key(judge: Judge, item: JudgeItem) -> str:
    """The judge's identity (``judge.cache_key``: its model by content, mode, prompt version...) and the item."""
    ident = getattr(judge, "cache_key", judge.name)
    return _cache_key("judge", ident, item.prompt, item.response, item.context, list(item.reference_true),
                      list(item.reference_false))


class JudgeCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.torn_lines = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn")
                row = json.loads(line)
                self.entries[row["key"]] = row["judgement"]
            except (ValueError, KeyError, TypeError):
                # Only the tail can be torn (appends are line-sized and fsync'ed); keep the valid prefix.
                self.torn_lines += 1
                break
            good_end += len(line)
        if good_end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def get(self, key: str) -> Judgement | None:
        d = self.entries.get(key)
        return Judgement(**d) if d is not None else None

    def put_many(self, pairs: list[tuple[str, Judgement]]) -> None:
        rows = [(k, j) for k, j in pairs if not is_transient(j)]
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for k, j in rows:
                d = j.as_dict()
                self.entries[k] = d
                fh.write(dumps_line({"key": k, "judgement": d}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_judge(judge: Judge, items: list[JudgeItem], *, cache: JudgeCache | str | os.PathLike | None = None,
              batch_size: int = 64, progress: bool = True, desc: str | None = None) -> tuple[list[Judgement], dict]:
    """Judge ``items`` in batches through ``cache``. Returns the judgements (in order) and run statistics
    (``cached``, ``judged``, counts per status). Duplicate items are judged once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if cache is not None and not isinstance(cache, JudgeCache):
        cache = JudgeCache(cache)
    keys = [cache_key(judge, it) for it in items]
    results: dict[str, Judgement] = {}
    if cache is not None:
        for k in keys:
            hit = cache.get(k)
            if hit is not None:
                results[k] = hit
    cached = len(results)
    todo: list[tuple[str, JudgeItem]] = []
    seen = set(results)
    for k, it in zip(keys, items):
        if k not in seen:
            seen.add(k)
            todo.append((k, it))
    bar = tqdm(total=len(seen), initial=cached, desc=desc or f"judging ({judge.name})", unit="item",
               disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        out = judge.judge([it for _, it in batch])
        if len(out) != len(batch):
            raise RuntimeError(f"judge {judge.name} returned {len(out)} judgements for {len(batch)} items")
        pairs = list(zip([k for k, _ in batch], out))
        if cache is not None:
            cache.put_many(pairs)
        results.update(pairs)
        bar.update(len(batch))
    bar.close()
    judgements = [results[k] for k in keys]
    stats = {"cached": cached, "judged": len(todo),
             "status": dict(sorted(Counter(j.status for j in judgements).items())),
             "torn_cache_lines": cache.torn_lines if cache is not None else 0}
    return judgements, stats
