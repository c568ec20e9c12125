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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.builders.common import config_help
    from alignkit.cli.common import debug_enabled, error_line, exit_code
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
        summary = fn(config, progress=not args.quiet)
    except (DataError, FileNotFoundError, ValueError, yaml.YAMLError) as e:
        # The exit-code policy: a config error (unknown key, wrong type, bad value) is 2, bad data or a failure
        # while building is 1; the message is prefixed with the config file it came from.
        if debug_enabled():
            raise
        where = f"{args.config}: " if args.config and not str(e).startswith(str(args.config)) else ""
        print(f"error: {where}{error_line(e)}", file=sys.stderr)
        return exit_code(e)
    print(json.dumps(summary, sort_keys=True))
    return 0
