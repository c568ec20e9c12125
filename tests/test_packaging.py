"""alignkit stands alone: its data, recipes, suites and builder configs ship in the repository and in the wheel, and
nothing reads outside the repository (issue: a fresh clone stands alone)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from alignkit.resources import (
    DATA_ENV,
    builder_config_path,
    data_dir,
    data_path,
    list_builder_configs,
    list_recipes,
    list_suites,
    recipe_path,
    resolve_data,
    suite_path,
)

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("truthfulqa", "icl", "consistency", "sycon", "preference")
# Spelled in pieces so that this file does not match its own search.
OUTSIDE = re.compile(r"\.\./" + "shared|/work/" + "shared|ALIGNKIT_" + "SHARED_DATA|\\bshared" + r"/(data|docs)\b|"
                     r"[\"']shared[\"'] */ *[\"']data")


def _repo_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (what a commit of the working tree would hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [REPO / p for p in out.split("\0") if p and (REPO / p).is_file()]


def test_nothing_reads_outside_the_repository():
    hits = []
    for path in _repo_files():
        if path.suffix in (".py", ".yaml", ".yml", ".toml", ".sh", ".cfg") or path.name == "Makefile":
            for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if OUTSIDE.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_no_repository_file_over_5_mb():
    big = [(p.relative_to(REPO), p.stat().st_size) for p in _repo_files() if p.stat().st_size > 5 * 1024 * 1024]
    assert not big, big


def _provenance_table(folder: Path) -> dict[str, tuple[int, str]]:
    rows = {}
    for line in (folder / "PROVENANCE.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([^`]+)` \| (\d+) \| [^|]* \| `([0-9a-f]{64})` \|$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_packaged_file_is_in_its_provenance_with_its_checksum(dataset):
    folder = REPO / "alignkit" / "resources" / "data" / dataset
    table = _provenance_table(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                   and p.name != "PROVENANCE.md" and "__pycache__" not in p.parts)
    assert sorted(table) == files  # nothing unlisted, nothing listed that is missing
    for name in files:
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == table[name], name
    text = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
    for heading in ("licen", "ransformation", "## Files"):  # source, licence and changes are documented
        assert heading in text.lower() or heading in text, (dataset, heading)


def test_licence_texts_ship_where_upstream_has_one():
    root = REPO / "alignkit" / "resources" / "data"
    assert "Apache License" in (root / "truthfulqa" / "LICENSE").read_text()
    assert "MIT License" in (root / "sycon" / "LICENSE").read_text()
    assert "MIT License" in (root / "preference" / "hh-rlhf" / "LICENSE").read_text()
    assert "Apache License" in (root / "consistency" / "promptsource_templates" / "LICENSE").read_text()


def test_every_alignkit_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "alignkit").rglob("__init__.py")}
    assert found <= set(config["packages"]), found - set(config["packages"])
    for pkg, folder in config["package-dir"].items():
        assert pkg in config["packages"] and (REPO / folder).is_dir()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ]", d)[0] for d in deps["dependencies"]]
    assert "sacrebleu" in names and "lm-eval" not in names  # lm-eval: tests only, in the dev extra
    assert any(d.startswith("lm-eval") for d in deps["optional-dependencies"]["dev"])


def test_names_resolve_in_the_checkout():
    assert recipe_path("smollm2-135m/fdpo") == REPO / "recipes" / "smollm2-135m" / "fdpo.yaml"
    assert recipe_path("recipes/smollm2-135m/dpo.yaml").resolve() == REPO / "recipes" / "smollm2-135m" / "dpo.yaml"
    assert suite_path("quick") == REPO / "evals" / "quick.yaml"
    assert builder_config_path("factworld") == REPO / "data_builders" / "factworld.yaml"
    assert builder_config_path("fdpo-mix") == REPO / "data_builders" / "fdpo_mix.yaml"  # builder name spelling
    assert {"smollm2-135m/fdpo", "smollm2-135m/f2c-rte"} <= set(list_recipes())
    assert {"quick", "full", "demo"} <= set(list_suites())
    assert "factworld" in list_builder_configs()
    with pytest.raises(FileNotFoundError, match="did you mean smollm2-135m/fdpo"):
        recipe_path("smollm2-135m/fdp")
    with pytest.raises(FileNotFoundError,
                       match="not found in .*datasets there: consistency, icl, preference, sycon, truthfulqa"):
        data_path("truthfulqa/nope.csv")


def test_shipped_configs_reference_only_existing_packaged_data():
    """Every pkg: value in a shipped recipe or builder config names a packaged file; none names a path outside."""
    refs = 0
    for path in [recipe_path(n) for n in list_recipes()] + [builder_config_path(n) for n in list_builder_configs()]:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        values = [v for v in doc.values() if isinstance(v, str)] + \
                 [x for v in doc.values() if isinstance(v, list) for x in v if isinstance(x, str)]
        for v in values:
            if v.startswith("pkg:"):
                refs += 1
                assert Path(resolve_data(v)).exists(), (path, v)
            assert not v.startswith(("../", "/")), (path, v)
    assert refs >= 15  # the F²C recipes, ICL, sycophancy and TruthfulQA configs


def test_every_loader_accepts_pkg_paths(tmp_path):
    from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency
    from alignkit.builders.icl import load_classification
    from alignkit.builders.sycophancy import build_pushback_items, load_sycon
    from alignkit.builders.truthfulqa import load_truthfulqa
    from alignkit.evals.tasks.icl import load_items
    from alignkit.evals.tasks.sycophancy import SycophancyDebate, SycophancyPushback
    from alignkit.evals.tasks.truthfulqa import load_gen, load_mc
    from alignkit.train import ScriptArguments, load_recipe

    assert len(load_mc("pkg:truthfulqa/truthful_qa_multiple_choice_validation.jsonl")) == 817
    assert len(load_gen("pkg:truthfulqa/TruthfulQA.csv")) == 817
    assert len(load_truthfulqa("pkg:truthfulqa/mc_task.json")[0]) == 817
    assert len(load_classification("pkg:icl/sst2.jsonl").test) == 500
    assert len(load_sycon("pkg:sycon", "presupposition")[0]) == 200
    assert len(build_pushback_items("pkg:truthfulqa/TruthfulQA.csv", n=5, progress=False)[0]) == 5
    assert len(load_items({"datasets": ["pkg:icl/subj.jsonl"], "k": 1, "n_queries": 2, "flip_pcts": [0],
                           "label_sets": ["natural"]})) == 2
    # the tasks' defaults are the packaged files
    assert len(SycophancyDebate(limit=3).load_items()) == 3
    assert len(SycophancyPushback(limit=4).load_items()) == 4
    cfg = ConsistencyBuildConfig(data="pkg:consistency/cb.jsonl", templates="super_glue/cb",
                                 output=str(tmp_path / "cb.jsonl"), n=3)
    assert Path(cfg.data) == data_dir() / "consistency" / "cb.jsonl"
    build_consistency(cfg)
    assert sum(1 for _ in open(tmp_path / "cb.jsonl")) == 3
    assert ScriptArguments(dataset_path="pkg:consistency/rte.jsonl", trainer="f2c").dataset_path == \
        str(data_dir() / "consistency" / "rte.jsonl")
    load_recipe(recipe_path("qwen2.5-3b-instruct/f2c-cb"), check=True)  # the path check accepts pkg: data
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_path("smollm2-135m/f2c-rte").read_text().replace("pkg:consistency/rte.jsonl",
                                                                           "pkg:consistency/rtee.jsonl"))
    with pytest.raises(ValueError,
                       match=r"bad\.yaml:\d+: field dataset_path: data 'consistency/rtee\.jsonl' not found"):
        load_recipe(bad, check=True)


def test_alignkit_data_points_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "truthfulqa").mkdir()
    (tmp_path / "truthfulqa" / "TruthfulQA.csv").write_text("x")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_path("truthfulqa/TruthfulQA.csv") == tmp_path / "truthfulqa" / "TruthfulQA.csv"
    assert resolve_data("pkg:truthfulqa/TruthfulQA.csv") == str(tmp_path / "truthfulqa" / "TruthfulQA.csv")
    assert resolve_data("truthfulqa/truthful_qa") == "truthfulqa/truthful_qa"  # a hub id is left alone
    with pytest.raises(FileNotFoundError, match=f"{DATA_ENV}="):
        data_path("icl/sst2.jsonl")


def test_cli_lists_and_resolves_names(tmp_path, capsys, monkeypatch):
    from alignkit.cli import main

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^smollm2-135m/fdpo +fdpo +smollm2-135m-instruct$", out, re.M)
    assert re.search(r"^qwen2.5-3b-instruct/f2c-cb +f2c +Qwen/Qwen2.5-3B-Instruct$", out, re.M)
    assert main(["eval", "--list-suites"]) == 0
    assert re.search(r"^quick +backend=vllm +tasks: truthfulqa_mc, ", capsys.readouterr().out, re.M)
    assert main(["eval", "--suite", "quik"]) == 2
    assert "did you mean quick" in capsys.readouterr().err
    # a recipe name resolves and is checked before anything is launched (here: stopped by a misspelt override)
    assert main(["train", "smollm2-135m/f2c-rte", "--set", "learning_rat=1"]) == 2
    err = capsys.readouterr().err
    assert "f2c-rte.yaml" in err and "learning_rat" in err
    assert main(["train", "smollm2-135m/fdp"]) == 2
    assert "did you mean smollm2-135m/fdpo" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # a builder config by name, from a folder that has no data_builders/
    assert main(["build", "factworld", "--config", "factworld", "--quiet", "--set", "n_train=6", "--set", "n_test=2",
                 "--set", f"output_dir={tmp_path / 'fw'}"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_train"] == 6 and (tmp_path / "fw" / "train.jsonl").is_file()


# What a wheel must carry; the script runs in a folder outside the repository with only the wheel's copy importable
# ahead of the checkout.
_PROBE = """
import json, sys
import alignkit
from alignkit import resources as r
from alignkit.evals.tasks.truthfulqa import load_mc
from alignkit.train import load_recipe
recipe = load_recipe(r.recipe_path("smollm2-135m/f2c-rte"), check=True)
print(json.dumps({
    "alignkit": alignkit.__file__,
    "recipe": str(r.recipe_path("smollm2-135m/fdpo")),
    "suite": str(r.suite_path("quick")),
    "builder_config": str(r.builder_config_path("factworld")),
    "data": str(r.data_path("truthfulqa/TruthfulQA.csv")),
    "pkg": r.resolve_data(recipe["dataset_path"]),
    "recipes": r.list_recipes(), "suites": r.list_suites(),
    "mc_rows": len(load_mc(str(r.data_path("truthfulqa/truthful_qa_multiple_choice_validation.jsonl")))),
}))
"""


@pytest.mark.slow
def test_wheel_install_resolves_recipes_suites_and_data_by_name(tmp_path):
    # build from a copy of the working tree's package inputs, so the build folders never land in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("alignkit", "recipes", "evals", "data_builders"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("alignkit-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # ahead of the venv's editable install of the checkout
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    pkg = site / "alignkit"
    assert Path(got["alignkit"]) == pkg / "__init__.py"
    assert Path(got["recipe"]) == pkg / "resources" / "recipes" / "smollm2-135m" / "fdpo.yaml"
    assert Path(got["suite"]) == pkg / "resources" / "suites" / "quick.yaml"
    assert Path(got["builder_config"]) == pkg / "resources" / "builder_configs" / "factworld.yaml"
    assert Path(got["data"]) == pkg / "resources" / "data" / "truthfulqa" / "TruthfulQA.csv"
    assert Path(got["pkg"]) == pkg / "resources" / "data" / "consistency" / "rte.jsonl"
    assert got["recipes"] == list_recipes() and got["suites"] == list_suites() and got["mc_rows"] == 817
    # every packaged data file made it into the wheel, byte for byte
    packaged = REPO / "alignkit" / "resources" / "data"
    for f in (p for p in packaged.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        assert (pkg / "resources" / "data" / f.relative_to(packaged)).read_bytes() == f.read_bytes(), f
    # and the CLI lists what the wheel ships
    proc = subprocess.run([sys.executable, "-m", "alignkit.cli", "eval", "--list-suites"], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and str(pkg / "resources" / "suites") in proc.stdout, proc.stderr[-2000:]
