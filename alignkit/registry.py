"""One registry mechanism for everything alignkit looks up by name: eval tasks, judges, builders, trainers, backends.

A :class:`Registry` maps a name to a ``"module:attr"`` target (or ``"module"`` for a whole module), imported only
when the name is first used, so listing names or parsing a command line never imports torch, vLLM or TRL. An
object may also be registered directly (a task class decorated with ``@register_task``); registering the object a
string entry already names is the lazy entry being filled in, while any other second registration of a name is
refused with an error naming both.

This module imports nothing from alignkit, so every layer may hold a registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class UnknownName(KeyError, ValueError):
    """A name no registry entry has. Both a ``KeyError`` (a mapping lookup) and a ``ValueError`` (bad user input)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def _target_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


class Registry(Mapping[str, Any]):
    """``name -> object`` for one kind of thing, filled with ``"module:attr"`` strings and loaded lazily.

    As a mapping, ``registry[name]`` is the loaded object and iteration yields names in registration order (without
    importing anything); :meth:`target` is the ``"module:attr"`` string."""

    def __init__(self, kind: str, entries: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: Any) -> Any:
        """Add ``name``: a ``"module:attr"``/``"module"`` string, or the object itself. Returns ``target``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if isinstance(target, str):
            if name in self._targets:
                raise ValueError(f"{self.kind} {name!r} registered twice: {self._targets[name]} and {target}")
            self._targets[name] = target
            return target
        if name in self._loaded and self._loaded[name] is not target:
            raise ValueError(f"{self.kind} {name!r} registered twice: {self._targets[name]} and {_target_of(target)}")
        if name in self._targets and name not in self._loaded and self._targets[name] != _target_of(target):
            raise ValueError(f"{self.kind} {name!r} registered twice: {self._targets[name]} and {_target_of(target)}")
        self._targets.setdefault(name, _target_of(target))
        self._loaded[name] = target
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a user plug-in's entry, in tests); unknown names are ignored."""
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def pop(self, name: str, default: Any = None) -> Any:
        """Like ``dict.pop``: the loaded object (``default`` for an unknown name), removed."""
        if name not in self._targets:
            return default
        obj = self._loaded.get(name, default)
        self.unregister(name)
        return obj

    def target(self, name: str) -> str:
        """The ``"module:attr"`` string of ``name``."""
        self._check(name)
        return self._targets[name]

    def targets(self) -> dict[str, str]:
        """``{name: "module:attr"}`` without importing anything."""
        return dict(self._targets)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def _check(self, name: str) -> None:
        if name not in self._targets:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose one of {self.names()}")

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[name] if name in self._targets else default

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        if name not in self._loaded:
            module, _, attr = self._targets[name].partition(":")
            obj = importlib.import_module(module)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
            self._loaded.setdefault(name, obj)  # importing the module may have registered the object itself
        return self._loaded[name]

    def __setitem__(self, name: str, obj: Any) -> None:
        self.register(name, obj)

    def __delitem__(self, name: str) -> None:
        self._check(name)
        self.unregister(name)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._targets))

    def __len__(self) -> int:
        return len(self._targets)

    def __str__(self) -> str:  # in messages: "choose one of vllm, hf"
        return ", ".join(self._targets)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._targets!r})"
