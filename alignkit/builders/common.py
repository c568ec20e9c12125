"""Helpers shared by the builders: typed configs from YAML/dicts, and small text utilities."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys are an error naming the key and the known ones."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


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
