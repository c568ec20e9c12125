"""Files that ship with alignkit: benchmark data, training recipes, eval suites and builder configs.

Everything alignkit reads by default lives either inside this package or in the repository's top-level folders, so
a bare ``git clone`` or a ``pip install`` works without anything beside it:

- **data** — ``alignkit/resources/data/<dataset>/`` (each folder with ``PROVENANCE.md`` and, where one exists, the
  licence). :func:`data_path` finds a file in it; ``$ALIGNKIT_DATA`` points the lookup at another folder with the
  same layout. Config values may name packaged files as ``pkg:<dataset>/<file>`` (e.g.
  ``dataset_path: pkg:consistency/rte.jsonl``); :func:`resolve_data` turns such a value into a real path and leaves
  every other value (a path, a hub id, ``hub``) untouched, and every loader calls it.
- **recipes, suites, builder configs** — canonical in the checkout's ``recipes/``, ``evals/`` and ``data_builders/``;
  a wheel carries them as ``alignkit/resources/{recipes,suites,builder_configs}`` (pyproject ``package-dir``).
  :func:`recipe_path`, :func:`suite_path` and :func:`builder_config_path` accept a path or a name
  (``smollm2-135m/fdpo``, ``quick``, ``factworld``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

DATA_ENV = "ALIGNKIT_DATA"
PKG_PREFIX = "pkg:"

_HERE = Path(__file__).resolve().parent
# In a checkout alignkit/ sits next to recipes/, evals/, data_builders/; in a wheel those are copied into this package.
_CHECKOUT = _HERE.parents[1]

# kind -> (folder inside this package in a wheel, folder in a checkout)
_KINDS: dict[str, tuple[str, str]] = {
    "recipe": ("recipes", "recipes"),
    "suite": ("suites", "evals"),
    "builder config": ("builder_configs", "data_builders"),
}


def data_dir() -> Path:
    """The data folder: ``$ALIGNKIT_DATA`` when set, else the data packaged with alignkit."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else _HERE / "data"


def data_path(relative: str) -> Path:
    """A packaged data file or folder, e.g. ``data_path("truthfulqa/TruthfulQA.csv")``; a clear error when absent."""
    root = data_dir()
    path = root / relative
    if not path.exists():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        where = f"${DATA_ENV}={root}" if os.environ.get(DATA_ENV) else str(root)
        raise FileNotFoundError(f"data {relative!r} not found in {where} "
                                f"(datasets there: {', '.join(known) or 'none'})")
    return path


def resolve_data(value):
    """``pkg:<dataset>/<file>`` -> the packaged file's path (a str); any other value is returned unchanged."""
    if isinstance(value, str) and value.startswith(PKG_PREFIX):
        return str(data_path(value[len(PKG_PREFIX):].lstrip("/")))
    return value


def resource_dir(kind: str) -> Path:
    """Where the shipped recipes / suites / builder configs are: inside the installed package, else the checkout."""
    packaged, checkout = _KINDS[kind]
    inside = _HERE / packaged
    return inside if inside.is_dir() else _CHECKOUT / checkout


def _names(kind: str) -> list[str]:
    root = resource_dir(kind)
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def list_recipes() -> list[str]:
    """Recipe names (``<model>/<method>``, ``experiments/…``)."""
    return _names("recipe")


def list_suites() -> list[str]:
    return _names("suite")


def list_builder_configs() -> list[str]:
    return _names("builder config")


def _resolve(kind: str, spec: str | os.PathLike) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    root = resource_dir(kind)
    name = path.as_posix()
    # a checkout-relative spelling ("recipes/smollm2-135m/fdpo.yaml") is accepted from any working directory
    prefix = _KINDS[kind][1] + "/"
    name = name[len(prefix):] if name.startswith(prefix) else name
    name = name[:-5] if name.endswith(".yaml") else name
    for candidate in (name, name.replace("-", "_")):  # builder names use '-', their YAML files '_'
        found = root / f"{candidate}.yaml"
        if found.is_file():
            return found
    names = _names(kind)
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; shipped: {', '.join(names)}"
    raise FileNotFoundError(f"{kind} {spec} not found: neither a file nor a shipped {kind} name in {root}{hint}")


def recipe_path(spec: str | os.PathLike) -> Path:
    """A recipe file path, or a shipped recipe name such as ``smollm2-135m/fdpo``."""
    return _resolve("recipe", spec)


def suite_path(spec: str | os.PathLike) -> Path:
    """A suite file path, or a shipped suite name such as ``quick``."""
    return _resolve("suite", spec)


def builder_config_path(spec: str | os.PathLike) -> Path:
    """A builder config file path, or a shipped config name such as ``factworld`` / ``fdpo-mix``."""
    return _resolve("builder config", spec)


def describe(path: Path) -> str:
    """The first comment line of a shipped YAML (its one-line description), without the '#'."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""
