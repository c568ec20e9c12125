"""Train from a recipe: ``python -m alignkit.train --config RECIPE.yaml`` (under ``accelerate launch`` or not).

A recipe is one YAML mapping that TRL's parser reads into three dataclasses — :class:`ScriptArguments` (data,
which trainer), the trainer's config class (e.g. ``FDPOConfig``) and TRL's ``ModelConfig`` (model + LoRA/QLoRA).
The ``trainer`` key picks the trainer module from :data:`TRAINERS`; each module exposes ``CONFIG_CLASS`` and
``run(script_args, training_args, model_args) -> dict``. :func:`train_from_config` runs one recipe in-process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.hub import HubDataArguments
from alignkit.registry import Registry

# name -> trainer module (``CONFIG_CLASS`` + ``run``), imported on first use
TRAINERS = Registry("trainer", {"fdpo": "alignkit.trainers.fdpo_trainer", "f2c": "alignkit.trainers.f2c_trainer"})


@dataclass
class ScriptArguments(HubDataArguments):
    """Recipe fields that are neither training nor model arguments (TRL's and the handbook's data keys included)."""

    dataset_path: str = field(
        default=None,
        metadata={"help": "Training data: a .jsonl/.parquet file, a `datasets` save_to_disk folder, or a hub id; "
                          "read with alignkit.data.read_records (validated)."},
    )
    trainer: str = field(default="fdpo", metadata={"help": f"Trainer to run, one of {sorted(TRAINERS)}."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read for a `datasets` folder/hub id."})
    eval_dataset_path: str | None = field(default=None, metadata={"help": "Optional evaluation data (same formats)."})
    eval_split: str = field(default="train", metadata={"help": "Split to read from `eval_dataset_path`."})
    on_invalid: str = field(
        default="error",
        metadata={"help": "'error': stop at the first bad row (file, line, field); 'skip': skip bad rows, write them "
                          "to <output_dir>/train.rejects.jsonl and count them in metrics.json."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Start over: delete the checkpoints (and metrics.json, alignkit_config.yaml) of an earlier "
                          "run in output_dir instead of resuming from them (`alignkit train --overwrite`)."},
    )
    resume: bool = field(
        default=False,
        metadata={"help": "Resume from the newest checkpoint in output_dir even when it was saved with another "
                          "configuration (the differences are logged); by default that is an error "
                          "(`alignkit train --resume`)."},
    )

    @staticmethod
    def value_problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Out-of-range values as ``(field, problem)``; the recipe check reports them with file and line."""
        out: list[tuple[str, str]] = HubDataArguments.value_problems(v)  # dataset_name / dataset_mixture keys
        if v.get("trainer", "fdpo") not in TRAINERS:
            out.append(("trainer", f"unknown trainer {v['trainer']!r}; choose from {sorted(TRAINERS)}"))
        if v.get("on_invalid", "error") not in ("error", "skip"):
            out.append(("on_invalid", f"on_invalid must be 'error' or 'skip', got {v['on_invalid']!r}"))
        for name in ("max_train_samples", "max_eval_samples"):
            if v.get(name) is not None and v[name] < 1:
                out.append((name, f"{name} must be >= 1, got {v[name]}"))
        if v.get("overwrite") and v.get("resume"):
            out.append(("resume", "overwrite (start over) and resume (continue regardless) exclude each other"))
        return out

    def __post_init__(self):
        from alignkit.resources import resolve_data

        # pkg:<dataset>/<file> names data packaged with alignkit (alignkit/resources/data)
        self.dataset_path = resolve_data(self.dataset_path)
        self.eval_dataset_path = resolve_data(self.eval_dataset_path)
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; choose from {sorted(TRAINERS)}")
        self.check_hub_data()  # dataset_name / dataset_mixture (alignkit.data.hub)
        if not self.dataset_path and not self.uses_hub_data:
            raise ValueError("the recipe needs `dataset_path` "
                             "(or TRL's `dataset_name`, the handbook's `dataset_mixture`)")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {self.on_invalid!r}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, problem in self.value_problems(vars(self))[:1]:
            raise ValueError(f"field {name}: {problem}")


def trainer_module(name: str):
    """Import the trainer module registered as ``name``."""
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; choose from {sorted(TRAINERS)}")
    return TRAINERS[name]


def load_recipe(path: str | Path, *, check: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe mapping with ``overrides`` applied; with ``check`` its fields are validated with errors naming the
    file, line and field (an overridden field is reported without a line)."""
    from alignkit.config import read_yaml_mapping, without_overridden

    recipe, lines = read_yaml_mapping(path, "recipe")  # a YAML error or a non-mapping: ConfigError with file:line
    recipe.update(overrides or {})
    if check:
        from alignkit.trainers.recipe import check_recipe

        top = {k: v for k, v in without_overridden(lines, overrides or {}).items() if "." not in k}
        check_recipe(recipe, _dataclass_types(recipe.get("trainer", "fdpo")), source=path, lines=top)
    return recipe


def _dataclass_types(trainer: str):
    from trl import ModelConfig

    return ScriptArguments, trainer_module(trainer).CONFIG_CLASS, ModelConfig


def parse_dict(recipe: dict[str, Any]):
    """(script_args, training_args, model_args) from a recipe mapping; unknown keys are an error."""
    from transformers import HfArgumentParser

    from alignkit.trainers.recipe import check_recipe

    recipe = dict(recipe)
    recipe.pop("env", None)
    dataclass_types = _dataclass_types(recipe.get("trainer", "fdpo"))
    check_recipe(recipe, dataclass_types, check_paths=False)  # paths are checked at launch; parsing needs none
    parser = HfArgumentParser(dataclass_types)
    return parser.parse_dict(recipe, allow_extra_keys=False)


def train_from_config(config: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None, *,
                      callbacks: list | None = None) -> dict:
    """Run one recipe in this process (no accelerate launch). Returns the metrics dict plus ``output_dir``.

    ``callbacks`` (``transformers.TrainerCallback``) are passed to trainers whose ``run`` accepts them."""
    if isinstance(config, (str, Path)):
        recipe = load_recipe(config, check=True, overrides=overrides)
    else:
        recipe = {**config, **(overrides or {})}
    script_args, training_args, model_args = parse_dict(recipe)
    module = trainer_module(script_args.trainer)
    if callbacks:
        return module.run(script_args, training_args, model_args, callbacks=callbacks)
    return module.run(script_args, training_args, model_args)


ERROR_DIR_ENV = "ALIGNKIT_ERROR_DIR"  # set by `alignkit train`: workers leave their one-line errors there


def report_worker_error(exc: BaseException) -> None:
    """A worker's user-facing error (bad data, config or path), as one line instead of a traceback.

    Under ``alignkit train`` (``ALIGNKIT_ERROR_DIR`` set) each rank writes it to ``error-RANK.txt`` and the launcher
    prints it once, however many ranks hit it; under a bare ``accelerate launch`` each rank prints it."""
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    rank = os.environ.get("RANK", "0")
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder and Path(folder).is_dir():
        from alignkit.utils import atomic_write_text  # the launcher never reads half a message

        atomic_write_text(Path(folder) / f"error-{rank}.txt", message)
        return
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    print(f"{prefix}error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict:
    """The worker entry point: a ValueError/OSError (a bad recipe, data file or model path) ends the process with
    one line and exit status 1 (ALIGNKIT_DEBUG=1 keeps the traceback); anything else propagates as usual."""
    try:
        return _main(argv)
    except (ValueError, OSError) as exc:
        if os.environ.get("ALIGNKIT_DEBUG"):
            raise
        report_worker_error(exc)
        raise SystemExit(1) from None


def _main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    trainer = "fdpo"
    if "--config" in argv:
        # checked by `alignkit train` / train_from_config; here CLI flags may still override any field
        trainer = load_recipe(argv[argv.index("--config") + 1]).get("trainer", trainer)
    if "--trainer" in argv:
        trainer = argv[argv.index("--trainer") + 1]
    parser = TrlParser(_dataclass_types(trainer))
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    return trainer_module(script_args.trainer).run(script_args, training_args, model_args)


if __name__ == "__main__":
    main()
