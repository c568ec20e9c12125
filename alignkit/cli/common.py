"""What every ``alignkit`` sub-command shares: the ``--set KEY=VALUE`` option, the exit-code policy and the one-line
error report.

Exit codes: 0 success; 2 a usage or config error (a bad flag, file name, recipe/suite/experiment field, override:
:class:`alignkit.config.ConfigError` or :class:`UsageError`), found before any work starts; 1 a failure while the
command runs (bad data rows, a worker that failed, a missing model). Every error is one line, ``error: ...``, on
stderr; ``alignkit --debug ...`` (or ``ALIGNKIT_DEBUG=1``, which training workers read too) shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from alignkit.config import ConfigError, parse_overrides

DEBUG_ENV = "ALIGNKIT_DEBUG"  # also read by the training workers (alignkit.train.main)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ConfigError):
    """A bad command line (flags that exclude each other, a missing file argument): exit status 2."""


def debug_enabled() -> bool:
    return bool(os.environ.get(DEBUG_ENV))


def add_set_argument(p: argparse.ArgumentParser, help_text: str = "override a config key (VALUE parsed as YAML; "
                     "1e-4 is a float; dotted keys reach into nested mappings); repeatable",
                     dest: str = "set", flag: str = "--set") -> None:
    """The one ``--set KEY=VALUE`` option (read with :func:`overrides`)."""
    p.add_argument(flag, dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help_text)


def overrides(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``--set`` items as ``{dotted key: value}`` (:func:`alignkit.config.parse_overrides`); a malformed item is a
    :class:`ConfigError` (exit 2)."""
    return parse_overrides(items, flag)


def exit_code(exc: BaseException) -> int:
    """2 for usage/config errors, 1 for everything else."""
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: the message of an expected error, the type and message of an unexpected one."""
    from alignkit.data.schema import DataError

    expected = (ConfigError, DataError, ValueError, OSError)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError) and not isinstance(exc, ValueError):
        text = f"KeyError: {text}"
    elif not isinstance(exc, expected):
        text = f"{type(exc).__name__}: {text} (alignkit --debug ... shows the traceback)"
    return text


def report(exc: BaseException) -> int:
    """Print ``error: ...`` for ``exc`` on stderr; return its exit code."""
    print(f"error: {error_line(exc)}", file=sys.stderr, flush=True)
    return exit_code(exc)


def run_handler(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace, *, catch_all: bool = True) -> int:
    """Run a sub-command's handler under the exit-code policy (the traceback only with ``--debug``).

    Config/usage errors (exit 2) and bad data (exit 1) are always reported as one line. Any other exception is one
    line too when ``catch_all`` (the command line: the console script, ``python -m alignkit.cli``); a program calling
    ``alignkit.cli.main([...])`` itself gets it raised, with its type and traceback, as from any library call."""
    from alignkit.data.schema import DataError

    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug_enabled() or not catch_all:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, DataError) as exc:
        if debug_enabled():
            raise
        return report(exc)
    except Exception as exc:  # noqa: BLE001 — the command line's last line of defence: one line, not a traceback
        if debug_enabled() or not catch_all:
            raise
        return report(exc)
