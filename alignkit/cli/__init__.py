"""The ``alignkit`` command: data, build, train, eval, experiment, demo, model and recipes.

One module per sub-command in this package, imported lazily so that ``alignkit data stats`` does not pay for
importing torch, vLLM or TRL.

Each module exposes ``register(subparsers, name, help_text)`` and stores its handler as ``func`` on its parser; the
handler runs under :func:`alignkit.cli.common.run_handler` (exit 2 for usage/config errors, 1 for runtime failures,
a one-line ``error: ...`` without a traceback unless ``--debug``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command -> (module exposing ``register(subparsers, name, help_text)``, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("alignkit.cli.data", "validate, flip, inject noise into, and summarise preference files"),
    "build": ("alignkit.cli.build", "build datasets: factuality labels, variants, fact world, eval sets"),
    "train": ("alignkit.cli.train", "train from a recipe YAML under accelerate launch"),
    "eval": ("alignkit.cli.eval", "run an eval suite over one or more models and write a report"),
    "experiment": ("alignkit.cli.experiment", "multi-run experiments (noise sweep)"),
    "demo": ("alignkit.cli.demo", "the end-to-end demo on the embedded default model"),
    "model": ("alignkit.cli.model", "resolve/prepare models (the embedded default)"),
    "recipes": ("alignkit.cli.recipes", "list the shipped training recipes (alignkit train NAME)"),
}
_COMMANDS = COMMANDS  # the name before the package


def _wanted(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first word that is not a global option)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from alignkit import __version__

    parser = argparse.ArgumentParser(prog="alignkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (sets ALIGNKIT_DEBUG=1 for training workers too)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _wanted(argv)
    for name, (module, help_text) in COMMANDS.items():
        if wanted == name:
            importlib.import_module(module).register(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``alignkit ARGV``; the exit status. Without ``argv`` (the command line) every error is one line; with it
    (a program calling this function) an unexpected exception propagates (:func:`alignkit.cli.common.run_handler`)."""
    from alignkit.cli.common import DEBUG_ENV, run_handler

    command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = os.environ.get(DEBUG_ENV)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # inherited by accelerate's workers (alignkit.train.main keeps the traceback)
    try:
        return run_handler(args.func, args, catch_all=command_line)
    finally:
        if args.debug and previous is None:
            os.environ.pop(DEBUG_ENV, None)


if __name__ == "__main__":
    sys.exit(main())
