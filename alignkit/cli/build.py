"""``alignkit build NAME --config FILE.yaml [--set key=value ...]``: run a registered dataset builder
(:data:`alignkit.builders.BUILDERS`; the registry contract is in :mod:`alignkit.builders`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from alignkit.builders import BUILDERS, config_class, resolve
from alignkit.cli.common import add_set_argument, overrides
from alignkit.config import apply_overrides, read_yaml_mapping

__all__ = ["BUILDERS", "load_config", "register", "resolve", "run"]


def load_config(path: str | None, sets: list[str] | None = None, **shorthands: Any) -> dict:
    """The builder config: YAML mapping from ``path`` (or empty), then ``--set`` overrides, then shorthands."""
    config = read_yaml_mapping(path)[0] if path else {}
    config = apply_overrides(config, overrides(sets))
    return apply_overrides(config, {k: v for k, v in shorthands.items() if v is not None})


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.add_argument("builder", choices=BUILDERS.names(), help="which builder to run")
    p.add_argument("--config", "-c", help="YAML config file, or a shipped config name (factworld, fdpo_mix, icl, ...; "
                                           "data_builders/ in a checkout)")
    add_set_argument(p, dest="overrides")
    p.add_argument("--output", "-o", help="shorthand for --set output=PATH")
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--show-config", action="store_true", help="print the builder's config fields and exit")
    p.add_argument("--push-to-hub", metavar="REPO",
                   help="after the build, push its data files (with their cards and rejects) to the hub dataset "
                        "repo REPO (user/name), with a README.md dataset card generated from the alignkit cards")
    p.add_argument("--hub-private", action="store_true", help="create the dataset repo as private")
    p.add_argument("--hub-token", help="hub token (default: HF_TOKEN or the `hf auth login` token)")
    p.add_argument("--hub-license", help="license for the dataset card's metadata (e.g. cc-by-4.0); not guessed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.builders.common import config_help
    from alignkit.cli.common import debug_enabled, error_line, exit_code
    from alignkit.data.hub_push import HubPushError
    from alignkit.data.schema import DataError
    from alignkit.resources import builder_config_path

    try:
        fn = resolve(args.builder)
        if args.show_config:
            cls = config_class(args.builder)
            print(config_help(cls) if cls else "(this builder documents no config class)")
            return 0
        config_file = str(builder_config_path(args.config)) if args.config else None  # a path or a shipped name
        config = load_config(config_file, args.overrides, output=args.output, seed=args.seed)
        if args.push_to_hub:
            check_repo_id(args.push_to_hub)  # before the build, not after it
        summary = fn(config, progress=not args.quiet)
        if args.push_to_hub:
            summary["hub"] = push_build(args, config)
    except (DataError, FileNotFoundError, ValueError, yaml.YAMLError, HubPushError) as e:
        # The exit-code policy: a config error (unknown key, wrong type, bad value) is 2, bad data or a failure
        # while building is 1; the message is prefixed with the config file it came from.
        if debug_enabled():
            raise
        from_config = args.config and not isinstance(e, HubPushError) and not str(e).startswith(str(args.config))
        where = f"{args.config}: " if from_config else ""
        print(f"error: {where}{error_line(e)}", file=sys.stderr)
        return exit_code(e)
    print(json.dumps(summary, sort_keys=True))
    return 0


def build_location(builder: str, config: dict) -> str:
    """Where the builder wrote its data: its ``output_dir`` or ``output`` (a file, or truthfulqa-pairs' folder),
    as configured or else the config class's default."""
    import dataclasses

    from alignkit.builders import config_class

    cls = config_class(builder)
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING} \
        if cls is not None and dataclasses.is_dataclass(cls) else {}
    for key in ("output_dir", "output"):
        value = config.get(key, defaults.get(key))
        if value:
            return str(value)
    raise ValueError(f"--push-to-hub: builder {builder} names no output or output_dir to push")


def check_repo_id(repo_id: str) -> None:
    """A malformed ``--push-to-hub`` repo id is a usage error (exit 2), found before anything is built."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from alignkit.cli.common import UsageError

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UsageError(f"--push-to-hub {repo_id!r}: not a hub repo id (user/name): {exc}") from None


def push_build(args: argparse.Namespace, config: dict) -> dict:
    """``--push-to-hub REPO``: the build's files and a generated dataset card, pushed as one commit."""
    from alignkit.data.hub_push import push_dataset

    command = f"alignkit build {args.builder}" + (f" --config {args.config}" if args.config else "") + "".join(
        f" --set {s}" for s in args.overrides)
    out = push_dataset(build_location(args.builder, config), args.push_to_hub, token=args.hub_token,
                       private=True if args.hub_private else None, license=args.hub_license, builder=args.builder,
                       command=command)
    print(f"pushed {len(out['files'])} files to https://huggingface.co/datasets/{out['repo_id']}", file=sys.stderr)
    return out
