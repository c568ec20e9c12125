"""Recipe checks that run before anything is launched: unknown keys, wrongly typed values and out-of-range values
(β ≤ 0, a negative learning rate, ε outside its range, zero steps, ...) are reported with the file, the line and
the field; a local model path or data file that does not exist, or a data file without one valid row, is caught
before ``accelerate launch``.

``HfArgumentParser.parse_dict`` rejects unknown keys but not wrong types (a YAML ``learning_rate: 1e-4`` is the
*string* ``"1e-4"`` under YAML 1.1 and would only fail deep inside the optimizer), hence this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.config import ConfigError, check_config, config_defaults, key_lines, matches, type_name
from alignkit.config import value_problems as _config_value_problems

__all__ = ["check_data", "check_recipe", "key_lines", "value_problems"]

_matches = matches  # the names this module had before alignkit.config held the checks
_type_name = type_name
_defaults = config_defaults


def _training_rules(dc: type):
    """A ``TrainingArguments`` subclass without its own rules gets the shared ones (learning rate, batch size,
    steps)."""
    from transformers import TrainingArguments

    from alignkit.trainers.fdpo_config import training_problems

    return training_problems if isinstance(dc, type) and issubclass(dc, TrainingArguments) else None


def value_problems(recipe: dict[str, Any], dataclass_types: tuple[type, ...]) -> list[tuple[str, str]]:
    """``(field, problem)`` for out-of-range values, from each dataclass's ``value_problems`` (the same rules its
    ``__post_init__`` enforces) over the recipe with defaults filled in."""
    return _config_value_problems({k: v for k, v in recipe.items() if k != "env"}, dataclass_types,
                                  rules_for=_training_rules)


def _retired_hint(key: str) -> str | None:
    from alignkit.data.hub import RETIRED_FIELDS  # keys of older TRL / handbook recipes

    return RETIRED_FIELDS.get(key)


def check_recipe(recipe: dict[str, Any], dataclass_types: tuple[type, ...], *, source: str | Path | None = None,
                 lines: dict[str, int] | None = None, check_paths: bool = True) -> None:
    """Raise ``ValueError("FILE:LINE: field KEY: ...")`` (a :class:`alignkit.config.ConfigError`) for the first
    unknown, wrongly typed or out-of-range recipe field, and (``check_paths``, at launch) for a local model path or
    dataset file that does not exist. The checks are :func:`alignkit.config.check_config`'s, over TRL's three
    dataclasses at once; ``env`` (the launcher's environment block) is not a dataclass field."""
    lines = lines or {}
    check_config(recipe, tuple(dataclass_types), source=source or "recipe", lines=lines,
                 unknown="unknown recipe field{hint}", unknown_hint=_retired_hint, rules_for=_training_rules,
                 skip=("env",))
    if not check_paths:
        return

    def where(key: str) -> str:
        loc = str(source) if source else "recipe"
        return f"{loc}:{lines[key]}" if key in lines else loc

    model = recipe.get("model_name_or_path")
    if isinstance(model, str) and model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise ConfigError(f"{where('model_name_or_path')}: field model_name_or_path: local model path {model} "
                          "does not exist")
    from alignkit.resources import resolve_data

    try:  # pkg:<dataset>/<file> must name an existing packaged file
        data = resolve_data(recipe.get("dataset_path"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{where('dataset_path')}: field dataset_path: {exc}") from None
    if (isinstance(data, str) and data.endswith((".jsonl", ".json", ".parquet"))
            and not Path(data).expanduser().exists()):
        raise ConfigError(f"{where('dataset_path')}: field dataset_path: {data} does not exist (the recipes under "
                          "recipes/ say in their first lines how to build their data)")


def check_data(recipe: dict[str, Any], *, source: str | Path | None = None,
               lines: dict[str, int] | None = None) -> None:
    """At launch: each local data file or folder of an F-DPO-family recipe is read as the worker will read it, so a bad
    row stops here with ``file:line: field ...`` and a file without one valid row with the recipe's file and line.
    Hub ids are left to the worker (no network at launch); F²C reads another format and is left to its trainer."""
    if recipe.get("trainer", "fdpo") != "fdpo":
        return
    from alignkit.data import read_records
    from alignkit.trainers.fdpo_config import FLAG_LOSSES, normalise_loss_type

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
