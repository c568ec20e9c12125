"""Recipe checks that run before anything is launched: unknown keys, wrongly typed values and out-of-range values
(β ≤ 0, a negative learning rate, ε outside its range, zero steps, ...) are reported with the file, the line and
the field; a local model path or data file that does not exist, or a data file without one valid row, is caught
before ``accelerate launch``.

``HfArgumentParser.parse_dict`` rejects unknown keys but not wrong types (a YAML ``learning_rate: 1e-4`` is the
*string* ``"1e-4"`` under YAML 1.1 and would only fail deep inside the optimizer), hence this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping (empty when the text is not a mapping)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` (as loaded from YAML) fits the annotation ``tp``; unknown annotations are accepted."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
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
    if origin in (list, tuple):
        return isinstance(value, (list, tuple, str))  # HF also accepts "a,b" strings for some list fields
    if origin is dict or tp is dict:
        return isinstance(value, (dict, str))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    return True


def _defaults(dataclass_types: tuple[type, ...]) -> dict[str, Any]:
    """Each init field's default value (fields without one are left out)."""
    out: dict[str, Any] = {}
    for dc in dataclass_types:
        for f in dataclasses.fields(dc):
            if not f.init or f.name in out:
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


def value_problems(recipe: dict[str, Any], dataclass_types: tuple[type, ...]) -> list[tuple[str, str]]:
    """``(field, problem)`` for out-of-range values, from each dataclass's ``value_problems`` (the same rules its
    ``__post_init__`` enforces) over the recipe with defaults filled in. A ``TrainingArguments`` subclass without
    its own rules gets the shared ones (learning rate, batch size, steps)."""
    from transformers import TrainingArguments

    from alignkit.trainers.config import training_problems

    values = {**_defaults(dataclass_types), **{k: v for k, v in recipe.items() if k != "env"}}
    problems: list[tuple[str, str]] = []
    for dc in dataclass_types:
        rules = getattr(dc, "value_problems", None)
        if rules is None and isinstance(dc, type) and issubclass(dc, TrainingArguments):
            rules = training_problems
        for problem in rules(values) if rules else []:
            if problem not in problems:
                problems.append(problem)
    return problems


def check_recipe(recipe: dict[str, Any], dataclass_types: tuple[type, ...], *, source: str | Path | None = None,
                 lines: dict[str, int] | None = None, check_paths: bool = True) -> None:
    """Raise ``ValueError("FILE:LINE: field KEY: ...")`` for the first unknown, wrongly typed or out-of-range recipe
    field, and (``check_paths``, at launch) for a local model path or dataset file that does not exist."""
    lines = lines or {}
    fields: dict[str, Any] = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in dataclasses.fields(dc):
            if f.init:
                fields.setdefault(f.name, hints.get(f.name, Any))

    def where(key: str) -> str:
        loc = str(source) if source else "recipe"
        return f"{loc}:{lines[key]}" if key in lines else loc

    for key, value in recipe.items():
        if key == "env":
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            from alignkit.data.hub import RETIRED_FIELDS  # keys of older TRL / handbook recipes

            hint = f" ({RETIRED_FIELDS[key]})" if key in RETIRED_FIELDS else hint
            raise ValueError(f"{where(key)}: field {key}: unknown recipe field{hint}")
        tp = fields[key]
        if not _matches(value, tp):
            hint = ""
            if isinstance(value, str) and "e" in value.lower() and _matches(1.0, tp):
                hint = " (YAML reads 1e-4 as a string; write 1.0e-4)"
            raise ValueError(f"{where(key)}: field {key}: expected {_type_name(tp)}, got {type(value).__name__} "
                             f"{value!r}{hint}")
    problems = value_problems(recipe, dataclass_types)
    if problems:
        # the first in file order; a problem with a field the recipe leaves at its default has no line
        key, problem = min(problems, key=lambda p: lines.get(p[0], float("inf")))
        raise ValueError(f"{where(key)}: field {key}: {problem}")
    if not check_paths:
        return
    model = recipe.get("model_name_or_path")
    if isinstance(model, str) and model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise ValueError(f"{where('model_name_or_path')}: field model_name_or_path: local model path {model} "
                         "does not exist")
    from alignkit.resources import resolve_data

    try:  # pkg:<dataset>/<file> must name an existing packaged file
        data = resolve_data(recipe.get("dataset_path"))
    except FileNotFoundError as exc:
        raise ValueError(f"{where('dataset_path')}: field dataset_path: {exc}") from None
    if isinstance(data, str) and data.endswith((".jsonl", ".json", ".parquet")) and not Path(data).expanduser().exists():
        raise ValueError(f"{where('dataset_path')}: field dataset_path: {data} does not exist (the recipes under "
                         "recipes/ say in their first lines how to build their data)")


def check_data(recipe: dict[str, Any], *, source: str | Path | None = None, lines: dict[str, int] | None = None) -> None:
    """At launch: each local data file or folder of an F-DPO-family recipe is read as the worker will read it, so a bad
    row stops here with ``file:line: field ...`` and a file without one valid row with the recipe's file and line.
    Hub ids are left to the worker (no network at launch); F²C reads another format and is left to its trainer."""
    if recipe.get("trainer", "fdpo") != "fdpo":
        return
    from alignkit.data import read_records
    from alignkit.trainers.config import FLAG_LOSSES, normalise_loss_type

    lines = lines or {}
    require_flags = bool(recipe.get("apply_flip")) or any(
        t in FLAG_LOSSES for t in normalise_loss_type(recipe.get("loss_type", ["fdpo"])))
    for key, split_key in (("dataset_path", "dataset_split"), ("eval_dataset_path", "eval_split")):
        path = recipe.get(key)
        if not isinstance(path, str) or not Path(path).expanduser().exists():
            continue
        res = read_records(Path(path).expanduser(), on_invalid=recipe.get("on_invalid", "error"),
                           require_flags=require_flags, split=recipe.get(split_key, "train"))
        if not res.records:
            loc = f"{source or 'recipe'}:{lines[key]}" if key in lines else str(source or "recipe")
            rejected = f" ({res.n_rejected} rejected)" if res.n_rejected else ""
            raise ValueError(f"{loc}: field {key}: {path} has no valid rows{rejected}; nothing to train on")
