"""Small shared helpers: atomic file writes, stable hashing, JSON lines."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import, before any worker threads exist


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; rename it over ``path`` only on success.

    The temp file lives in the same folder so the final ``os.replace`` is atomic on POSIX: readers see the
    old file or the new one, never a torn one, and a crash (or ENOSPC) leaves no partial output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual umask permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (a model or adapter folder) whole."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private; caches are meant to be shared
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON atomically (sorted keys keep reruns byte-identical)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def dumps_line(obj: Any) -> str:
    """One JSON line, deterministic (key order as given, no ASCII escaping)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short, stable hex digest of a JSON-serialisable object (config hashes, cache keys)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:n]


def alignkit_home() -> Path:
    """Root of alignkit's caches: ``$ALIGNKIT_HOME`` or ``~/.cache/alignkit``."""
    return Path(os.environ.get("ALIGNKIT_HOME", Path.home() / ".cache" / "alignkit")).expanduser()


# --- cache keys ------------------------------------------------------------------------------------------------------
# Every on-disk cache (eval items, judge verdicts, merged adapters) keys on what its result depends on, built here.
# A model or adapter is identified by its content, not its path: a model retrained into the same folder gets a new
# identity (so it is evaluated again), and a copied adapter keeps its own.

_CONTENT_HASH_MAX = 4 << 20  # files up to 4 MiB (configs, tokenizers, adapter weights) are hashed whole
_SKIP_SUFFIXES = (".md", ".lock", ".log")  # READMEs, lock and log files do not change what the model computes


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A content key for a model or adapter folder (its top-level files; links followed).

    Small files (config.json, adapter_config.json, tokenizer, chat template, adapter weights) are hashed whole;
    large weight files are identified by name, size and modification time (hashing gigabytes per run would cost
    minutes), so retraining into the same folder always changes the key. Hidden files, READMEs, locks and logs are
    left out. Raises when the folder holds no file.
    """
    root = Path(folder)
    parts = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.name.endswith(_SKIP_SUFFIXES) or not p.is_file():
            continue
        st = p.stat()
        if st.st_size <= _CONTENT_HASH_MAX:
            parts.append([p.name, st.st_size, _file_digest(p)])
        else:
            parts.append([p.name, st.st_size, st.st_mtime_ns])
    if not parts:
        raise FileNotFoundError(f"{root}: no model or adapter files to fingerprint")
    return stable_hash(parts, n=24)


def source_identity(spec: str | os.PathLike | None) -> dict[str, str] | None:
    """Identity of a model or adapter: a local folder by content (:func:`folder_fingerprint`); a hub id by the
    snapshot the local Hugging Face cache holds for it (the folder a backend would load, so a new revision pulled
    into the cache is a new identity); any other name by the name alone. None stays None."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"fingerprint": folder_fingerprint(path)}
    snapshot = _hub_snapshot(str(spec))
    if snapshot is not None:
        return {"name": str(spec), "fingerprint": folder_fingerprint(snapshot)}
    return {"name": str(spec)}


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local cache's snapshot folder of a hub model (no network access), or None."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # HFValidationError: not a valid repo id, so identified by name
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_identity(backend: Any, model: Any) -> dict[str, Any]:
    """What a cached eval result depends on, besides the task, its config and the item: the backend kind, the base
    model it loaded (``backend.path``, else ``model.base``), the LoRA adapter (``model.adapter``), by content, and
    the backend's prompt format when it is not the default."""
    ident = {"backend": getattr(backend, "name", type(backend).__name__),
             "base": source_identity(getattr(backend, "path", None) or model.base),
             "adapter": source_identity(model.adapter)}
    # a suite's chat template / system prompt (alignkit.inference.prompt_format) changes what the model reads; the
    # default format adds nothing, so caches written before it existed stay valid
    fmt = getattr(backend, "prompt_format", None)
    fmt_identity = fmt.identity() if fmt is not None else None
    if fmt_identity is not None:
        ident["prompt_format"] = fmt_identity
    return ident


def cache_key(*parts: Any) -> str:
    """The key of one cached result: a stable hash of everything it depends on (task name and version, model
    identity, config, item...). Every cache in alignkit builds its keys with this function."""
    return stable_hash(list(parts), n=24)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend: alignkit only writes plots to files, and must do so
    on a machine without a display (a cluster node, CI) too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
