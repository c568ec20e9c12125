"""``alignkit train RECIPE.yaml [--accelerate-config FILE] [--num-processes N] [--set KEY=VALUE ...] [--overwrite |
--resume]``.

Checks the recipe (unknown keys, types, value ranges, paths, a data file with at least one valid row) and stops with
``file:line: field ...`` before anything is launched. Then runs ``accelerate launch [--config_file FILE] -m
alignkit.train --config RECIPE.yaml`` (accelerate's launcher, in this process), so the two forms run the same code.
Without a visible CUDA device it adds ``--mixed_precision no`` and passes ``--use_cpu true`` to the workers, so N
processes form a gloo group (DeepSpeed then uses its CPU accelerator). ``--set max_steps=5`` overrides a recipe field
(passed on as ``--max_steps 5``). A worker that fails on a bad recipe, path or data leaves its one-line error for this
launcher, which prints it once (not once per rank, and without the launcher's own traceback) and exits 1;
``alignkit --debug train ...`` (``ALIGNKIT_DEBUG=1``) keeps the workers' tracebacks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from alignkit.cli.common import UsageError, add_set_argument, error_line
from alignkit.config import parse_overrides


def launch_command(recipe: str, accelerate_config: str | None = None, num_processes: int | None = None,
                   extra: list[str] | None = None, cpu: bool | None = None) -> list[str]:
    """The ``accelerate launch`` argv for a recipe (no shell involved)."""
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", str(accelerate_config)]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    train_args = ["-m", "alignkit.train", "--config", str(recipe), *(extra or [])]
    if cpu:
        # Not accelerate's --cpu: it forces the single-process launcher (accelerate only spawns workers through
        # torchrun for MULTI_GPU / DeepSpeed configs, or through mpirun). The workers get use_cpu instead, and with
        # torchrun's WORLD_SIZE > 1 they form a real gloo process group (MULTI_CPU, or DeepSpeed on its CPU
        # accelerator).
        cmd += ["--mixed_precision", "no"]
        if not accelerate_config and (num_processes or 1) > 1:
            cmd += ["--multi_gpu"]
        train_args += ["--use_cpu", "true"]
    return cmd + train_args


def run_launch(cmd: list[str]) -> int:
    """Run ``cmd`` (from :func:`launch_command`) with accelerate's launcher in this process; 0 on success.

    A failed worker is reported once: the distinct one-line errors the workers left in ``ALIGNKIT_ERROR_DIR``
    (:func:`alignkit.train.report_worker_error`), or, for an unexpected crash whose traceback the worker printed
    itself, one line pointing at it. The launcher's own ``CalledProcessError``/``ChildFailedError`` traceback, which
    only repeats that a worker failed, is not printed."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from alignkit.train import ERROR_DIR_ENV

    args = launch_command_parser().parse_args(cmd[3:])  # cmd = [python, -m, accelerate.commands.launch, ...]
    previous = os.environ.get(ERROR_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="alignkit-train-") as errors:
        os.environ[ERROR_DIR_ENV] = errors
        try:
            accelerate_launch(args)
            return 0
        except subprocess.CalledProcessError as exc:
            status = exc.returncode
        except ChildFailedError as exc:
            status = exc.get_first_failure()[1].exitcode
        finally:
            if previous is None:
                os.environ.pop(ERROR_DIR_ENV, None)
            else:
                os.environ[ERROR_DIR_ENV] = previous
        by_message: dict[str, list[str]] = {}
        for f in sorted(Path(errors).glob("error-*.txt"), key=lambda f: int(f.stem.split("-")[1])):
            by_message.setdefault(f.read_text(encoding="utf-8").strip(), []).append(f.stem.split("-")[1])
    if not by_message:
        print(f"error: training failed (worker exit status {status}); its traceback is above", file=sys.stderr)
    for message, ranks in by_message.items():
        where = f" (rank {', '.join(ranks)})" if len(by_message) > 1 else ""
        print(f"error{where}: {message}", file=sys.stderr)
    return 1


def show_fields(trainer: str) -> int:
    """Print the recipe fields alignkit adds (name, default, help) for ``trainer`` (fdpo or f2c), then name the TRL /
    transformers argument classes whose fields a recipe also takes."""
    import dataclasses

    from alignkit.train import ScriptArguments

    if trainer == "f2c":
        from transformers import TrainingArguments as parent

        from alignkit.trainers.f2c_config import F2CConfig as config
    elif trainer == "fdpo":
        from trl import DPOConfig as parent

        from alignkit.trainers.fdpo_config import FDPOConfig as config
    else:
        raise UsageError(f"--show-fields: unknown trainer {trainer!r}; choose fdpo or f2c")
    own = set(vars(config).get("__annotations__", {}))  # declared (or redefined, e.g. loss_type) by alignkit
    sections = [("data and launch (alignkit.train.ScriptArguments)", list(dataclasses.fields(ScriptArguments))),
                (f"{trainer} training ({config.__module__}.{config.__name__}, alignkit's own fields)",
                 [f for f in dataclasses.fields(config) if f.name in own])]
    for title, fields in sections:
        print(f"# {title}")
        for f in fields:
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = repr(f.default_factory())  # type: ignore[misc]
            else:
                default = "(required)"
            print(f"{f.name} = {default}\n    {f.metadata.get('help', '')}")
        print()
    print(f"# also every field of {parent.__module__}.{parent.__name__} (learning_rate, max_steps, ...) and of "
          "trl.ModelConfig (model_name_or_path, use_peft, lora_r, ...): see their documentation")
    return 0


def _train(args: argparse.Namespace) -> int:
    from alignkit.resources import recipe_path

    if args.show_fields:
        return show_fields(args.show_fields)
    if not args.recipe:
        raise UsageError("a recipe is required (a YAML path or a shipped name; `alignkit recipes` lists them)")

    try:  # a path, or a shipped recipe name (`alignkit recipes` lists them)
        args.recipe = str(recipe_path(args.recipe))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        raise UsageError(f"accelerate config {args.accelerate_config} not found")
    overrides = parse_overrides(args.set, "--set")  # a malformed item is a usage error (exit 2)
    extra: list[str] = []
    for item in args.set:
        key, _, raw = item.partition("=")
        if "." in key:  # recipe fields are flat: TRL's parser could not receive a nested override
            raise UsageError(f"--set {key.strip()}: recipe fields are top-level keys (no dotted paths)")
        extra += [f"--{key.strip()}", raw]  # the workers' TRL parser types the raw text itself
    if args.overwrite and args.resume:
        raise UsageError("--overwrite (start over) and --resume (continue regardless) exclude each other")
    for flag in ("overwrite", "resume"):
        if getattr(args, flag):
            extra += [f"--{flag}", "true"]
            overrides[flag] = True
    from alignkit.train import load_recipe
    from alignkit.trainers.recipe import check_data, key_lines

    try:  # fail here, with file:line:field, rather than inside N accelerate workers
        recipe = load_recipe(args.recipe, check=True, overrides=overrides)
        lines = {k: v for k, v in key_lines(Path(args.recipe).read_text(encoding="utf-8")).items()
                 if k not in overrides}
        check_data(recipe, source=args.recipe, lines=lines)
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise UsageError(error_line(exc)) from exc
    cmd = launch_command(args.recipe, args.accelerate_config, args.num_processes, extra)
    print("+ " + " ".join(cmd), flush=True)
    return run_launch(cmd)


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    # the usage line spans the docstring's first two lines; the epilog says where the recipe fields are listed
    p = sub.add_parser(name, help=help_text, description="Train from a recipe: " + " ".join(
        __doc__.split("\n\n")[0].replace("``", "").split()),
        epilog="A recipe holds TRL's fields under TRL's names (DPOConfig, ModelConfig, ScriptArguments; "
               "alignment-handbook recipes too) and alignkit's own: list those, with defaults and help, with "
               "`alignkit train --show-fields [fdpo|f2c]`.")
    p.add_argument("recipe", nargs="?", default=None,
                   help="recipe YAML, or a shipped recipe name such as smollm2-135m/fdpo (alignkit recipes)")
    p.add_argument("--show-fields", nargs="?", const="fdpo", default=None, metavar="TRAINER",
                   help="list the recipe fields alignkit adds, with defaults and help, for fdpo (default) or f2c")
    p.add_argument("--accelerate-config", default=None, help="accelerate config (accelerate_configs/*.yaml)")
    p.add_argument("--num-processes", type=int, default=None, help="override the config's process count")
    add_set_argument(p, "override a recipe field, e.g. --set max_steps=5 (VALUE parsed as YAML; 1e-4 is a float); "
                        "repeatable")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: delete the checkpoints of an earlier run in output_dir instead of resuming")
    p.add_argument("--resume", action="store_true",
                   help="resume from output_dir's newest checkpoint even if it was saved with another configuration")
    p.set_defaults(func=_train)
