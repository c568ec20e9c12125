"""One config loader for every YAML alignkit reads: recipes, builder configs, suites (and their per-task options) and
experiments.

:func:`load_config` reads a YAML file (or takes a dict), applies dotted ``--set KEY=VALUE`` overrides, checks every key
against the config dataclass (unknown keys with a "did you mean", wrongly typed values, out-of-range values from the
class's ``value_problems`` rules) and builds the dataclass. Errors are :class:`ConfigError` naming the file, the line
and the field (``recipe.yaml:5: field lerning_rate: ...``); the CLI turns them into one line and exit status 2.

Types are checked strictly where YAML is treacherous: under YAML 1.1 ``learning_rate: 1e-4`` is the *string*
``"1e-4"`` (write ``1.0e-4``), ``rho: "0.3"`` is not a float and ``true`` is not an int. On the command line, where
nobody types YAML, :func:`parse_value` reads ``1e-4`` as the float it looks like.

This module sits at the bottom of the package (it imports nothing from alignkit), so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

Rules = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


class ConfigError(ValueError):
    """A bad config file, field, value or override: a usage error (the CLI exits 2), raised before any work starts."""


# ---------------------------------------------------------------------------------------------------------------------
# YAML: mappings and the lines of their keys


def yaml_lines(text: str) -> dict[str, int]:
    """1-based line of every mapping key in a YAML document, by dotted path (``tasks.0.limit``, ``builder.rho``);
    a list entry's own line is under its index (``tasks.0``). Empty when the document is not a mapping."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    out: dict[str, int] = {}

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    path = f"{prefix}{k.value}"
                    out.setdefault(path, k.start_mark.line + 1)
                    walk(v, path + ".")
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                out.setdefault(f"{prefix}{i}", v.start_mark.line + 1)
                walk(v, f"{prefix}{i}.")

    if isinstance(node, yaml.MappingNode):
        walk(node, "")
    return out


def key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping (empty when the text is not a mapping)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def read_yaml_mapping(path: str | Path, what: str = "config") -> tuple[dict[str, Any], dict[str, int]]:
    """``(mapping, lines)`` of a YAML file that must hold a mapping (an empty file is an empty mapping); ``lines``
    as :func:`yaml_lines`. A missing file stays a ``FileNotFoundError``; a YAML syntax error or a non-mapping
    document is a :class:`ConfigError` naming the file (and the line, for syntax errors)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
        lines = yaml_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if doc is None:
        return {}, {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a {what} must be a YAML mapping, got {type(doc).__name__}")
    return doc, lines


# ---------------------------------------------------------------------------------------------------------------------
# --set KEY=VALUE overrides (the one parser every command uses)

# YAML 1.1 (PyYAML) reads 1e-4 as a string; YAML 1.2 and every user reads it as a float
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_value(text: str) -> Any:
    """A command-line value: YAML (``[0, 1]``, ``true``, ``null``, ``{a: 1}``), except that ``1e-4`` is a float."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
        return float(value)
    return value


def parse_overrides(items: Iterable[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``["a.b=1", "seed=3"]`` -> ``{"a.b": 1, "seed": 3}`` (values by :func:`parse_value`, dotted keys kept for
    :func:`apply_overrides`); a later item wins over an earlier one for the same key."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{flag} wants KEY=VALUE, got {item!r}")
        try:
            out[key] = parse_value(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{flag} {key}: cannot read {raw!r} as a value ({exc})") from None
    return out


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``config`` with each (dotted) override set. A dotted key creates or reaches into nested mappings;
    a number reaches into a list that exists (``tasks.0.limit=5``)."""
    out = dict(config)
    for dotted, value in (overrides or {}).items():
        keys = dotted.split(".")
        node: Any = out
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not (k.isdigit() and int(k) < len(node)):
                    raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i]) or 'the config'} has no entry {k} "
                                      f"(it has {len(node)})")
                k = int(k)  # type: ignore[assignment]
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i])} is not a mapping")
            if last:
                node[k] = value
                break
            child = node[k] if isinstance(node, list) else node.get(k)
            # copies on the way down: the caller's nested dicts and lists stay untouched
            child = {} if child is None else dict(child) if isinstance(child, dict) else \
                list(child) if isinstance(child, list) else child
            node[k] = child
            node = child
    return out


def without_overridden(lines: Mapping[str, int], overrides: Iterable[str]) -> dict[str, int]:
    """``lines`` minus the keys an override replaced (an overridden value has no line in the file)."""
    gone = list(overrides)
    return {k: v for k, v in lines.items() if not any(k == o or k.startswith(o + ".") for o in gone)}


# ---------------------------------------------------------------------------------------------------------------------
# Types


def matches(value: Any, tp: Any, *, strict_lists: bool = False) -> bool:
    """Whether a YAML-loaded ``value`` fits the annotation ``tp``; annotations this checker does not know are left to
    the dataclass. By default a string passes for any list or dict field (HF's argument parser reads ``"a,b"`` and
    JSON strings there); ``strict_lists`` checks list items and accepts a string only for ``list[str]`` (one path or
    name for a one-item list)."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a, strict_lists=strict_lists) for a in args)
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
        if not strict_lists:
            return isinstance(value, (list, tuple, str))
        if isinstance(value, str):
            return not args or args[0] is str
        return isinstance(value, (list, tuple)) and (not args or all(matches(v, args[0], strict_lists=True)
                                                                     for v in value))
    if tp is dict or origin is dict:
        return isinstance(value, dict) or (not strict_lists and isinstance(value, str))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    return True


def type_name(tp: Any) -> str:
    """``float``, ``int | None``, ``one of 'a', 'b'`` for a Literal."""
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if typing.get_args(tp):
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def config_fields(*classes: type) -> dict[str, Any]:
    """Init field name -> resolved annotation over ``classes`` (the first class naming a field wins)."""
    out: dict[str, Any] = {}
    for dc in classes:
        hints = typing.get_type_hints(dc)
        for f in dataclasses.fields(dc):
            if f.init:
                out.setdefault(f.name, hints.get(f.name, Any))
    return out


def config_defaults(*classes: type) -> dict[str, Any]:
    """Each init field's default value (fields without one are left out)."""
    out: dict[str, Any] = {}
    for dc in classes:
        for f in dataclasses.fields(dc):
            if not f.init or f.name in out:
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Checks


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def locator(source: str | Path | None, lines: Mapping[str, int] | None,
            default: str = "config") -> Callable[[str], str]:
    """``where(key)`` -> ``FILE:LINE`` (or ``FILE`` when the key has no line, e.g. an override or a default)."""
    lines = lines or {}
    loc = str(source) if source else default
    return lambda key: f"{loc}:{lines[key]}" if key in lines else loc


def check_fields(data: Mapping[str, Any], fields: Mapping[str, Any], where: Callable[[str], str], *,
                 unknown: str = "unknown field{hint}", strict_lists: bool = False,
                 unknown_hint: Callable[[str], str | None] | None = None, skip: Iterable[str] = (),
                 list_known: bool = False) -> None:
    """Raise ``ConfigError("WHERE: field KEY: ...")`` for the first key of ``data`` that ``fields`` does not declare
    or whose value does not fit its type. ``unknown`` is the unknown-key message, formatted with ``key`` (the name),
    ``keys`` (every unknown name, sorted), ``hint`` (a did-you-mean) and ``known`` (the declared names, sorted);
    ``unknown_hint(key)`` may replace the did-you-mean (e.g. "a field of older TRL"); ``list_known`` lists the known
    names when nothing is close."""
    skip = set(skip)
    unknown_keys = sorted(str(k) for k in data if k not in fields and k not in skip)
    for key, value in data.items():
        if key in skip:
            continue
        if key not in fields:
            special = unknown_hint(key) if unknown_hint else None
            hint = f" ({special})" if special else did_you_mean(key, fields)
            if not hint and list_known:
                hint = f" (known: {', '.join(sorted(fields))})"
            message = unknown.format(key=key, keys=unknown_keys, hint=hint, known=", ".join(sorted(fields)))
            raise ConfigError(f"{where(key)}: field {key}: {message}")
        if isinstance(value, os.PathLike):  # a Path given from Python is a path string
            value = os.fspath(value)
        tp = fields[key]
        if not matches(value, tp, strict_lists=strict_lists):
            hint = ""
            if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()) and matches(1.0, tp):
                hint = " (YAML reads 1e-4 as a string; write 1.0e-4)"
            raise ConfigError(f"{where(key)}: field {key}: expected {type_name(tp)}, got {type(value).__name__} "
                              f"{value!r}{hint}")


def value_problems(data: Mapping[str, Any], classes: Iterable[type], *,
                   rules_for: Callable[[type], Rules | None] | None = None) -> list[tuple[str, str]]:
    """``(field, problem)`` for out-of-range values, from each class's ``value_problems`` (the rules its
    ``__post_init__`` enforces) over ``data`` with the defaults filled in; ``rules_for(cls)`` supplies rules for a
    class without its own."""
    classes = tuple(classes)
    values = {**config_defaults(*classes), **data}
    problems: list[tuple[str, str]] = []
    for dc in classes:
        rules = getattr(dc, "value_problems", None) or (rules_for(dc) if rules_for else None)
        for problem in rules(values) if rules else []:
            if problem not in problems:
                problems.append(problem)
    return problems


def check_config(data: Mapping[str, Any], classes: type | tuple[type, ...], *, source: str | Path | None = None,
                 lines: Mapping[str, int] | None = None, unknown: str = "unknown field{hint}",
                 strict_lists: bool = False, unknown_hint: Callable[[str], str | None] | None = None,
                 rules_for: Callable[[type], Rules | None] | None = None, skip: Iterable[str] = ()) -> None:
    """Check ``data`` against one config dataclass or several (a recipe spans TRL's three): unknown keys, types,
    then value ranges, the first problem in file order. Raises :class:`ConfigError` with ``FILE:LINE: field KEY``."""
    classes = classes if isinstance(classes, tuple) else (classes,)
    lines = lines or {}
    where = locator(source, lines)
    skip = tuple(skip)
    check_fields(data, config_fields(*classes), where, unknown=unknown, strict_lists=strict_lists,
                 unknown_hint=unknown_hint, skip=skip)
    problems = value_problems({k: v for k, v in data.items() if k not in skip}, classes, rules_for=rules_for)
    if problems:
        # the first in file order; a problem with a field left at its default has no line
        key, problem = min(problems, key=lambda p: lines.get(p[0], float("inf")))
        raise ConfigError(f"{where(key)}: field {key}: {problem}")


def load_config(cls: type[T], source: str | Path | Mapping[str, Any] | None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None, *, what: str = "config",
                unknown: str = "unknown field{hint}", strict_lists: bool = False,
                unknown_hint: Callable[[str], str | None] | None = None) -> T:
    """The config dataclass ``cls`` from a YAML file (or a mapping), with overrides applied and every key checked.

    ``overrides`` is a mapping of dotted keys to values or a list of ``KEY=VALUE`` strings (``--set``). Unknown keys,
    wrong types and out-of-range values (``cls.value_problems``), and errors of ``cls.__post_init__`` are a
    :class:`ConfigError` naming the file, the line and the field."""
    if isinstance(source, Mapping):
        data, lines, name = dict(source), {}, what
    elif source is None:
        data, lines, name = {}, {}, what
    else:
        data, lines = read_yaml_mapping(source, what)
        name = str(source)
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    data = apply_overrides(data, overrides)
    lines = without_overridden(lines, overrides or {})
    check_config(data, cls, source=name, lines=lines, unknown=unknown, strict_lists=strict_lists,
                 unknown_hint=unknown_hint)
    try:
        return cls(**data)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc
