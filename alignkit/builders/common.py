"""Helpers shared by the builders: typed configs from YAML/dicts, and small text utilities."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _fits(value: Any, tp: Any) -> bool:
    """Whether a YAML-loaded ``value`` fits the annotation ``tp``. Strict where YAML is treacherous: ``"0.3"`` is
    not a float, ``true`` is not an int. A plain string passes for a list field because several configs accept
    one path or name for a one-item list (their ``__post_init__`` wraps it)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp in (list, tuple) or origin in (list, tuple):
        if isinstance(value, str):
            return not args or args[0] is str
        return isinstance(value, (list, tuple)) and (not args or all(_fits(v, args[0]) for v in value))
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    return True  # an annotation this checker does not know: the dataclass validates it


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if not typing.get_args(tp) else str(tp).replace("typing.", "")


def config_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data``, checked like a recipe: an unknown key or a value of the wrong type
    (``rho: "0.3"``) is a ``ValueError`` naming the field, before the builder reads any data."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        tp = hints.get(key, Any)
        if not _fits(value, tp):
            raise ValueError(f"{where}: field {key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
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
