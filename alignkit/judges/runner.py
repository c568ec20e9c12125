"""Running a judge over many items with an on-disk cache, so a rerun after a crash skips what is done.

The cache is a JSONL file of ``{"key": ..., "judgement": {...}}`` lines, appended and fsync'ed after every batch.
The key is a hash of (judge identity — model, mode, prompt version —, prompt, response, context, references).
Transient failures (timeouts, HTTP errors, engine crashes) are not cached, so a rerun retries them; parse failures
of a deterministic judge are cached (a rerun would get the same reply). A torn last line — the process was killed
mid-write — is ignored on load (counted) and cut off before the next append; a bad line before the end is an error
naming file and line (:class:`alignkit.data.cache.ItemCache`).
"""

from __future__ import annotations

import os
from collections import Counter

from tqdm import tqdm

from alignkit.data.cache import ItemCache
from alignkit.judges.base import Judge, JudgeItem, Judgement, is_transient
from alignkit.utils import cache_key as _cache_key


def cache_key(judge: Judge, item: JudgeItem) -> str:
    """The judge's identity (``judge.cache_key``: its model by content, mode, prompt version...) and the item."""
    ident = getattr(judge, "cache_key", judge.name)
    return _cache_key("judge", ident, item.prompt, item.response, item.context, list(item.reference_true),
                      list(item.reference_false))


class JudgeCache(ItemCache):
    """The item cache (:class:`alignkit.data.cache.ItemCache`) holding judgements; transient failures are not kept."""

    FIELD = "judgement"

    def get(self, key: str, default: Judgement | None = None) -> Judgement | None:  # type: ignore[override]
        d = super().get(key)
        return Judgement(**d) if d is not None else default

    def put_many(self, pairs: list[tuple[str, Judgement]]) -> None:  # type: ignore[override]
        super().put_many((k, j.as_dict()) for k, j in pairs if not is_transient(j))


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
