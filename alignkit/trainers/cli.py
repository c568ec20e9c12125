"""``alignkit train RECIPE.yaml [--accelerate-config FILE] [--num-processes N] [--set KEY=VALUE ...]``.

Builds and runs ``accelerate launch [--config_file FILE] -m alignkit.train --config RECIPE.yaml``, so the two forms
run the same code. Without a visible CUDA device it adds ``--mixed_precision no`` and passes ``--use_cpu true`` to the
workers, so N processes form a gloo group (DeepSpeed then uses its CPU accelerator). ``--set max_steps=5`` overrides a recipe field (passed on as ``--max_steps 5``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml


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
        # torchrun's WORLD_SIZE > 1 they form a real gloo process group (MULTI_CPU, or DeepSpeed on its CPU accelerator).
        cmd += ["--mixed_precision", "no"]
        if not accelerate_config and (num_processes or 1) > 1:
            cmd += ["--multi_gpu"]
        train_args += ["--use_cpu", "true"]
    return cmd + train_args


def _cli_value(text: str):
    """A --set value as the TRL parser will type it: YAML, except that "1e-4" is a float here, not a string."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _train(args: argparse.Namespace) -> int:
    from alignkit.resources import recipe_path

    try:  # a path, or a shipped recipe name (`alignkit recipes` lists them)
        args.recipe = str(recipe_path(args.recipe))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        print(f"error: accelerate config {args.accelerate_config} not found", file=sys.stderr)
        return 2
    extra, overrides = [], {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --set wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        extra += [f"--{key}", value]
        overrides[key] = _cli_value(value)
    from alignkit.train import load_recipe

    try:  # fail here, with file:line:field, rather than inside N accelerate workers
        load_recipe(args.recipe, check=True, overrides=overrides)
    except (ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = launch_command(args.recipe, args.accelerate_config, args.num_processes, extra)
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="recipe YAML, or a shipped recipe name such as smollm2-135m/fdpo (alignkit recipes)")
    p.add_argument("--accelerate-config", default=None, help="accelerate config (accelerate_configs/*.yaml)")
    p.add_argument("--num-processes", type=int, default=None, help="override the config's process count")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field (repeatable)")
    p.set_defaults(func=_train)
