"""Static checks over the library and scripts: safe YAML, no shell=True, no remote code by default, atomic writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for folder in ("alignkit", "data_builders", "evals", "benchmarks", "scripts")
    for p in (REPO / folder).rglob("*.py")
)
# Files allowed to open files for writing directly: the atomic-write helpers themselves.
WRITE_ALLOWED = {"alignkit/utils.py"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


@pytest.fixture(scope="module")
def trees():
    assert SOURCES, "no sources found"
    return {str(p.relative_to(REPO)): ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for p in SOURCES}


def test_yaml_is_always_safe(trees, reliability_log):
    bad = []
    for path, tree in trees.items():
        for call in _calls(tree):
            name = _name(call.func)
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
                loader = _kw(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
                # yaml.load with a SafeLoader subclass defined in the same file is fine (PromptSource templates
                # need custom tags)
                if loader is None or not _is_safe_loader(tree, ast.unparse(loader)):
                    bad.append(f"{path}:{call.lineno} {ast.unparse(call)[:80]}")
    assert not bad, "unsafe YAML loading:\n" + "\n".join(bad)
    reliability_log.record("security", "YAML loading", f"safe loaders only ({len(trees)} files scanned)")


def _is_safe_loader(tree: ast.AST, name: str) -> bool:
    if name in ("yaml.SafeLoader", "yaml.CSafeLoader", "SafeLoader"):
        return True
    return any(isinstance(n, ast.ClassDef) and n.name == name
               and any(ast.unparse(b) in ("yaml.SafeLoader", "SafeLoader", "yaml.CSafeLoader") for b in n.bases)
               for n in ast.walk(tree))


def test_no_shell_true(trees, reliability_log):
    bad = [f"{path}:{c.lineno}" for path, tree in trees.items() for c in _calls(tree)
           if isinstance(_kw(c, "shell"), ast.Constant) and _kw(c, "shell").value is True]
    bad += [f"{path}:{c.lineno} os.system" for path, tree in trees.items() for c in _calls(tree)
            if _name(c.func) in ("os.system", "os.popen")]
    assert not bad, "shell=True / os.system in:\n" + "\n".join(bad)
    reliability_log.record("security", "subprocess shell use", "no shell=True / os.system")


def test_trust_remote_code_never_hardcoded_true(trees, reliability_log):
    bad = [f"{path}:{c.lineno}" for path, tree in trees.items() for c in _calls(tree)
           if isinstance(_kw(c, "trust_remote_code"), ast.Constant) and _kw(c, "trust_remote_code").value is True]
    assert not bad, "trust_remote_code=True hard-coded in:\n" + "\n".join(bad)
    reliability_log.record("security", "trust_remote_code", "never hard-coded on; only a recipe can set it")


def test_no_eval_or_pickle_of_inputs(trees):
    bad = [f"{path}:{c.lineno} {_name(c.func)}" for path, tree in trees.items() for c in _calls(tree)
           if _name(c.func) in ("eval", "exec", "pickle.load", "pickle.loads", "torch.load")
           and not (_name(c.func) == "torch.load" and isinstance(_kw(c, "weights_only"), ast.Constant)
                    and _kw(c, "weights_only").value is True)]
    assert not bad, "eval/exec/pickle on possibly untrusted input:\n" + "\n".join(bad)


def test_library_writes_go_through_atomic_helpers(trees, reliability_log):
    """Every output file of the library is written to a temp file and renamed (alignkit.utils.atomic_*)."""
    bad = []
    for path, tree in trees.items():
        if not path.startswith("alignkit/") or path in WRITE_ALLOWED:
            continue
        for c in _calls(tree):
            name = _name(c.func)
            mode = None
            if name == "open" and len(c.args) > 1 and isinstance(c.args[1], ast.Constant):
                mode = c.args[1].value
            elif name == "open" and isinstance(_kw(c, "mode"), ast.Constant):
                mode = _kw(c, "mode").value
            elif name.endswith((".write_text", ".write_bytes")):
                mode = "w"
            if mode and any(ch in mode for ch in "wx") and not _inside_atomic(tree, c):
                bad.append(f"{path}:{c.lineno} {ast.unparse(c)[:90]}")
    assert not bad, "non-atomic writes (use alignkit.utils.atomic_path / atomic_write_*):\n" + "\n".join(bad)
    reliability_log.record("atomicity", "library file writes", "all through temp file + rename")


def _inside_atomic(tree: ast.AST, call: ast.Call) -> bool:
    """True when ``call`` sits inside a ``with atomic_path(...) as tmp`` block (writing the temp file)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any("atomic_path" in ast.unparse(i.context_expr) for i in node.items):
            if any(n is call for n in ast.walk(node)):
                return True
    return False
