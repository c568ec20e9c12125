"""Imports inside alignkit run one way, bottom to top (docs/architecture.md): a package may import its own layer and
the layers below it, never one above. Read from the source with ``ast`` (module-level and function-level imports
alike), so a later change that reaches upward fails here rather than as an import cycle at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "alignkit"

# bottom to top; each entry is alignkit's top-level modules/packages in that layer
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "utils", "config", "registry", "resources", "metrics"),
    ("data",),
    ("models", "inference"),
    ("losses", "judges"),
    ("builders",),
    ("trainers", "train"),  # train.py: the `accelerate launch -m alignkit.train` entry
    ("evals",),
    ("experiments",),
    ("demo",),
    ("cli", "__main__"),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# old module paths (issue 12): nothing may import them, and each is gone from disk unless listed in SHIMS
RETIRED = ("alignkit.evals.backends", "alignkit.evals.cache", "alignkit.trainers.config", "alignkit.trainers.fdpo",
           "alignkit.trainers.f2c")
# retired paths still on disk as pure aliases while long-running processes may import them; to be deleted
SHIMS: set[str] = set()

# modules a trainer must not import even though they sit in its layer: the launch script is above the library
FORBIDDEN = {("trainers", "alignkit.train")}


def within(module: str, names) -> bool:
    """``module`` is one of ``names`` or inside one (``alignkit.trainers.f2c_config`` is not inside ``…f2c``)."""
    return any(module == n or module.startswith(n + ".") for n in names)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top(module: str) -> str:
    """``alignkit.evals.tasks.icl`` -> ``evals``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every alignkit module ``path`` imports, anywhere in the file: (line, absolute module name)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module == "alignkit":  # `from alignkit import evals` imports the package evals
                found += [(node.lineno, f"alignkit.{a.name}") for a in node.names
                          if (root / a.name).is_dir() or (root / f"{a.name}.py").is_file()]
    return [(line, m) for line, m in found if m == "alignkit" or m.startswith("alignkit.")]


def library_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if not within(module_name(p), SHIMS))


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())}
    assert names - set(RANK) == set(), "add the new package to LAYERS (and to docs/architecture.md)"


def test_imports_only_go_down():
    upward = []
    for path in library_files():
        src = top(module_name(path))
        for line, module in imported_modules(path):
            dst = top(module)
            if RANK[dst] > RANK[src] or (src, module) in FORBIDDEN or within(module, SHIMS):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} imports {module}")
    assert upward == []


def test_nothing_imports_a_retired_path():
    repo = ROOT.parent
    files = [p for d in ("alignkit", "tests", "scripts", "benchmarks") for p in sorted((repo / d).rglob("*.py"))
             if not within(module_name(p), SHIMS)]
    old = [f"{p.relative_to(repo)}:{line}: {m}" for p in files for line, m in imported_modules(p)
           if within(m, RETIRED)]
    assert old == []
    for retired in set(RETIRED) - SHIMS:
        base = repo.joinpath(*retired.split("."))
        assert not base.is_dir() and not base.with_suffix(".py").is_file(), f"{retired} was retired; delete it"


def test_shims_only_alias():
    """A shim re-exports the new module's objects and holds no code of its own."""
    for shim in SHIMS:
        folder = ROOT.parent.joinpath(*shim.split("."))
        files = sorted(folder.glob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
        for path in [p for p in files if p.is_file()]:
            tree = ast.parse(path.read_text())
            kinds = {type(n).__name__ for n in tree.body} - {"Expr", "Import", "ImportFrom", "Assign"}
            assert kinds == set(), f"{path}: {kinds}"


@pytest.mark.parametrize("source, expected", [
    ("from alignkit.evals.runner import run_suite\n", "alignkit.evals.runner"),
    ("def f():\n    from alignkit.trainers import fdpo\n", "alignkit.trainers"),
    ("import alignkit.cli.common as c\n", "alignkit.cli.common"),
    ("from ..evals import report\n", "alignkit.evals"),
    ("from alignkit import utils, __version__\n", "alignkit.utils"),
])
def test_the_graph_sees_every_import_form(tmp_path, source, expected):
    """The checker itself: module-level, function-level, dotted and relative imports are all seen."""
    root = tmp_path / "alignkit"
    (root / "judges").mkdir(parents=True)
    (root / "utils.py").write_text("")
    path = root / "judges" / "x.py"
    path.write_text(source)
    assert expected in [m for _, m in imported_modules(path, root)]
