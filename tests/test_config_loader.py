"""The one config loader (alignkit.config), the registry (alignkit.registry) and the CLI's error policy."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from alignkit.config import ConfigError, load_config, parse_overrides, parse_value, yaml_lines
from alignkit.registry import Registry, UnknownName


@dataclass
class Inner:
    rho: float = 0.3
    names: list[str] = field(default_factory=list)
    nested: dict = field(default_factory=dict)

    @staticmethod
    def value_problems(v):
        return [("rho", f"rho must be in [0, 1], got {v['rho']}")] if not 0 <= v.get("rho", 0.3) <= 1 else []

    def __post_init__(self):
        if "forbidden" in self.names:
            raise ValueError("names: 'forbidden' is not allowed")


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_types_and_builds(tmp_path):
    path = _write(tmp_path, "rho: 0.5\nnames: [a, b]\n")
    cfg = load_config(Inner, path)
    assert cfg == Inner(rho=0.5, names=["a", "b"])


@pytest.mark.parametrize("text, message", [
    ("names: [a]\nrhoo: 0.5\n", r"c.yaml:2: field rhoo: unknown field \(did you mean 'rho'\?\)"),
    ("names: [a]\nrho: '0.5'\n", r"c.yaml:2: field rho: expected float, got str '0.5'"),
    ("rho: 1e-4\n", r"c.yaml:1: field rho: expected float, got str '1e-4' \(YAML reads 1e-4 as a string"),
    ("names: [a]\n\nrho: 2.0\n", r"c.yaml:3: field rho: rho must be in \[0, 1\], got 2.0"),
    ("names: [forbidden]\n", r"c.yaml: names: 'forbidden' is not allowed"),
    ("- a\n- b\n", r"c.yaml: a config must be a YAML mapping, got list"),
    ("rho: [1\n", r"c.yaml:\d+: invalid YAML"),
])
def test_load_config_errors_name_file_line_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Inner, _write(tmp_path, text))


def test_overrides_are_dotted_typed_and_lose_their_line(tmp_path):
    path = _write(tmp_path, "rho: 0.5\nnested: {a: 1}\n")
    cfg = load_config(Inner, path, ["nested.b.c=2", "rho=1e-1", "names=[x]"])
    assert cfg.nested == {"a": 1, "b": {"c": 2}} and cfg.rho == 0.1 and cfg.names == ["x"]
    with pytest.raises(ConfigError, match=r"^c?.*c.yaml: field rho: rho must be in"):  # no line: the override set it
        load_config(Inner, path, ["rho=5"])
    with pytest.raises(ConfigError, match="--set wants KEY=VALUE, got 'rho'"):
        load_config(Inner, path, ["rho"])
    with pytest.raises(ConfigError, match=r"--set rho.x: rho is not a mapping"):
        load_config(Inner, path, ["rho.x=1"])


def test_parse_value_reads_exponents_as_floats_and_the_rest_as_yaml():
    assert parse_value("1e-4") == 1e-4 and parse_value("2E5") == 2e5
    assert parse_value("[0, 1]") == [0, 1] and parse_value("true") is True and parse_value("abc") == "abc"
    assert parse_overrides(["a.b=1", "a.b=2"]) == {"a.b": 2}


def test_yaml_lines_reach_nested_keys_and_list_entries():
    lines = yaml_lines("name: s\ntasks:\n  - task: t\n    builder:\n      rho: 0.3\n")
    assert lines == {"name": 1, "tasks": 2, "tasks.0": 3, "tasks.0.task": 3, "tasks.0.builder": 4,
                     "tasks.0.builder.rho": 5}


def test_registry_is_lazy_refuses_duplicates_and_names_the_known():
    reg = Registry("widget", {"json": "json:dumps"})
    assert "json" in reg and list(reg) == ["json"] and reg.target("json") == "json:dumps"
    assert reg["json"] is json.dumps
    with pytest.raises(ValueError, match="widget 'json' registered twice"):
        reg.register("json", "json:loads")
    with pytest.raises(ValueError, match="widget 'json' registered twice"):
        reg.register("json", json.loads)
    reg.register("json", json.dumps)  # the object the string names: the lazy entry filled in, not a duplicate
    with pytest.raises(UnknownName, match=r"unknown widget 'yaml'; choose one of \['json'\]"):
        reg["yaml"]
    assert isinstance(UnknownName("x"), KeyError) and isinstance(UnknownName("x"), ValueError)
    assert reg.get("yaml") is None and reg.pop("json") is json.dumps and "json" not in reg


def test_library_registries_load_by_name():
    from alignkit.builders import BUILDERS
    from alignkit.evals.tasks import TASKS
    from alignkit.judges import JUDGES
    from alignkit.train import TRAINERS

    assert BUILDERS.target("factworld") == "alignkit.builders.factworld:main" and callable(BUILDERS["factworld"])
    assert {"fdpo", "f2c"} <= set(TRAINERS) and "truthfulqa_mc" in TASKS
    assert {"reference", "vllm", "openai", "ensemble"} <= set(JUDGES)


def _cli(*args, env_debug=False):
    import os

    env = dict(os.environ)
    env.pop("ALIGNKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "alignkit.cli", *args], capture_output=True, text=True, env=env)


def test_config_error_is_one_line_exit_2_and_debug_shows_the_traceback(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("seeds: [0]\nsedes: [1]\n", encoding="utf-8")
    res = _cli("experiment", "noise-sweep", "--config", str(cfg), "--dry-run")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {cfg}:2: field sedes: unknown key(s) ['sedes'] "
                                               "(did you mean 'seeds'?)"]
    debug = _cli("--debug", "experiment", "noise-sweep", "--config", str(cfg), "--dry-run")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_data_stats_imports_no_torch_vllm_or_trl(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q?", "chosen": "A.", "rejected": "B.", "h_w": 0, "h_l": 1}) + "\n")
    code = ("import sys; from alignkit.cli import main; rc = main(['data', 'stats', sys.argv[1]]); "
            "heavy = sorted(m for m in ('torch', 'vllm', 'trl', 'transformers') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_suite_overrides_reach_task_entries_and_are_checked(tmp_path):
    from alignkit.evals.runner import Suite

    path = tmp_path / "suite.yaml"
    path.write_text("name: s\nbackend: hf\ntasks:\n  - task: truthfulqa_mc\n    limit: 3\n", encoding="utf-8")
    suite = Suite.from_yaml(path, {"tasks.0.limit": 2, "backend_options.hf.batch_size": 4})
    assert suite.tasks[0].config == {"limit": 2} and suite.backend_options == {"hf": {"batch_size": 4}}
    with pytest.raises(ConfigError, match=r"field limt: unknown option of task 'truthfulqa_mc' \(did you mean 'limit'"):
        Suite.from_yaml(path, {"tasks.0.limt": 2})
    with pytest.raises(ConfigError, match=r"suite.yaml: suite 's': backend must be one of vllm, hf, got 'nope'"):
        Suite.from_yaml(path, {"backend": "nope"})
    with pytest.raises(ConfigError, match=r"--set tasks.1.limit: tasks has no entry 1 \(it has 1\)"):
        Suite.from_yaml(path, {"tasks.1.limit": 2})
