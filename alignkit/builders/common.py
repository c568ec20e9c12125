"""Helpers shared by the builders: typed configs from YAML/dicts, and small text utilities."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, TypeVar

from alignkit.config import load_config, matches, type_name

T = TypeVar("T")

# Strict where YAML is treacherous: ``"0.3"`` is not a float, ``true`` is not an int; list items are checked, and a
# plain string passes for a ``list[str]`` field because several configs accept one path or name for a one-item list
# (their ``__post_init__`` wraps it).
_fits = partial(matches, strict_lists=True)
_type_name = type_name


def config_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data`` with :func:`alignkit.config.load_config`: an unknown key or a value
    of the wrong type (``rho: "0.3"``) is a ``ValueError`` naming the field, before the builder reads any data.
    (``alignkit build`` checks the YAML file itself first, so its errors also carry the file's line.)"""
    return load_config(cls, dict(data or {}), what=where, unknown=BUILDER_UNKNOWN_KEY, strict_lists=True)


# the message for a key a builder's config class does not declare
BUILDER_UNKNOWN_KEY = "unknown key(s) {key!r}{hint}; known: {known}"


def config_dict(config: Any) -> dict[str, Any]:
    """The config as a plain dict (for the dataset card and its hash)."""
    return dataclasses.asdict(config)


def config_help(cls: type) -> str:
    """One line per field: name, default, help (``alignkit build NAME --show-config``)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")  # type: ignore[misc]
        lines.append(f"  {f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def message_text(value: Any, role: str | None = None) -> str:
    """Text of a string, or of a chat message list (the contents of ``role`` messages, or all, joined)."""
    if isinstance(value, str):
        return value
    msgs = [m for m in value if role is None or m.get("role") == role] or list(value)
    if len(msgs) == 1:
        return str(msgs[0]["content"])
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs)


def replace_response(value: Any, new_text: str) -> Any:
    """``new_text`` in the same shape as ``value``: a string, or the message list with its last assistant turn
    replaced."""
    if isinstance(value, str):
        return new_text
    out = [dict(m) for m in value]
    for m in reversed(out):
        if m.get("role") == "assistant":
            m["content"] = new_text
            return out
    out[-1]["content"] = new_text
    return out
