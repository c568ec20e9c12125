"""The ``alignkit`` command: a thin dispatcher over each stage's own sub-command module.

Each stage registers its sub-commands in its own ``cli.py`` (``register(subparsers)``), imported lazily so that
``alignkit data stats`` does not pay for importing torch, vLLM or TRL.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module exposing ``register(subparsers)``; each handler is stored as ``func`` on its parser.
_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("alignkit.data.cli", "validate, flip, inject noise into, and summarise preference files"),
    "build": ("alignkit.builders.cli", "build datasets: factuality labels, variants, fact world, eval sets"),
    "train": ("alignkit.trainers.cli", "train from a recipe YAML under accelerate launch"),
    "eval": ("alignkit.evals.cli", "run an eval suite over one or more models and write a report"),
    "experiment": ("alignkit.experiments.cli", "multi-run experiments (noise sweep)"),
    "demo": ("alignkit.demo", "the end-to-end demo on the embedded default model"),
    "model": ("alignkit.models.cli", "resolve/prepare models (the embedded default)"),
    "recipes": ("alignkit.resources.cli", "list the shipped training recipes (alignkit train NAME)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from alignkit import __version__

    parser = argparse.ArgumentParser(prog="alignkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in _COMMANDS else None
    for name, (module, help_text) in _COMMANDS.items():
        if wanted == name:
            importlib.import_module(module).register(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
