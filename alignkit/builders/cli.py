"""``alignkit build NAME --config FILE.yaml [--set key=value ...]``: run a registered dataset builder.

Registry contract — adding a builder is one line in :data:`BUILDERS`, ``"name": "module.path:function"``:

- the function is called as ``function(config: dict, *, progress: bool = True) -> dict``;
- ``config`` is the YAML file's mapping (``yaml.safe_load``), with ``--set key=value`` overrides applied on top
  (values parsed as YAML, dotted keys reach into nested mappings) and ``--output``/``--seed`` shorthands;
- the function validates the dict itself (a config dataclass with ``help`` metadata, unknown keys rejected —
  see :func:`alignkit.builders.common.config_from_dict`), writes its outputs atomically with a dataset card
  beside them, and returns a small JSON-serialisable summary that the CLI prints;
- bad input raises ``DataError`` (file, line, field) or ``ValueError``; the CLI prints it and exits 1.

A module may also expose ``CONFIG_CLASS`` (its dataclass) so that ``--show-config`` can list its fields.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Callable

import yaml

BUILDERS: dict[str, str] = {
    "factworld": "alignkit.builders.factworld:main",
    "factuality": "alignkit.builders.factuality:main",
    "hallucinate": "alignkit.builders.hallucinate:main",
    "fdpo-mix": "alignkit.builders.fdpo_mix:main",
    "consistency": "alignkit.builders.consistency:main",
    "truthfulqa-pairs": "alignkit.builders.truthfulqa:main",
    "icl": "alignkit.builders.icl:main",
    "sycophancy": "alignkit.builders.sycophancy:main",
}


def resolve(name: str) -> Callable[..., dict]:
    if name not in BUILDERS:
        raise ValueError(f"unknown builder {name!r}; known: {', '.join(sorted(BUILDERS))}")
    module, _, func = BUILDERS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _set(config: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = config
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: '{k}' is not a mapping")
    node[keys[-1]] = value


def load_config(path: str | None, overrides: list[str] | None = None, **shorthands: Any) -> dict:
    """The builder config: YAML mapping from ``path`` (or empty), then ``--set`` overrides, then shorthands."""
    config: dict = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the config must be a YAML mapping, got {type(loaded).__name__}")
        config = loaded or {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        _set(config, key.strip(), yaml.safe_load(raw))
    for k, v in shorthands.items():
        if v is not None:
            config[k] = v
    return config


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.add_argument("builder", choices=sorted(BUILDERS), help="which builder to run")
    p.add_argument("--config", "-c", help="YAML config file, or a shipped config name (factworld, fdpo_mix, icl, ...; "
                                           "data_builders/ in a checkout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; dotted keys for nested mappings); repeatable")
    p.add_argument("--output", "-o", help="shorthand for --set output=PATH")
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--show-config", action="store_true", help="print the builder's config fields and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.data.schema import DataError
    from alignkit.resources import builder_config_path

    try:
        fn = resolve(args.builder)
        if args.show_config:
            from alignkit.builders.common import config_help

            cls = getattr(importlib.import_module(BUILDERS[args.builder].split(":")[0]), "CONFIG_CLASS", None)
            print(config_help(cls) if cls else "(this builder documents no config class)")
            return 0
        config_file = str(builder_config_path(args.config)) if args.config else None  # a path or a shipped name
        config = load_config(config_file, args.overrides, output=args.output, seed=args.seed)
        summary = fn(config, progress=not args.quiet)
    except (DataError, FileNotFoundError, ValueError, yaml.YAMLError) as e:
        where = f"{args.config}: " if args.config and not str(e).startswith(str(args.config)) else ""
        print(f"error: {where}{e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0
