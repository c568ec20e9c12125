"""Consistency-set builder on the packaged RTE/COPA/CB data and PromptSource templates."""

from __future__ import annotations

import json

import pytest
import yaml

from alignkit.builders import resolve
from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency, load_templates, render


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rte_formats_heldout_and_determinism(shared_data, tmp_path):
    data = shared_data / "consistency" / "rte.jsonl"
    cfg = dict(data=str(data), templates="super_glue/rte", n=6, heldout=4, seed=3)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    info = build_consistency(ConsistencyBuildConfig(output=str(a), **cfg))
    build_consistency(ConsistencyBuildConfig(output=str(b), **cfg))
    assert a.read_bytes() == b.read_bytes()
    cards = [json.loads((tmp_path / f"{x}.card.json").read_text()) for x in "ab"]
    for c in cards:  # only the output path differs
        c.pop("output"), c.pop("config_hash"), c["config"].pop("output")
    assert cards[0] == cards[1]
    rows = _rows(a)
    assert len(rows) == 6 and len(info["formats"]) == 6 and len(info["heldout_formats"]) == 4
    source = {json.loads(line)["idx"]: json.loads(line) for line in data.read_text().splitlines()
              if json.loads(line)["split"] == "train"}
    for r in rows:
        assert {f["name"] for f in r["formats"]} == set(info["formats"])
        assert {f["name"] for f in r["heldout_formats"]} == set(info["heldout_formats"])
        src = source[int(r["id"].rsplit("-", 1)[1])]
        assert r["label"] == src["label_id"]
        for f in r["formats"] + r["heldout_formats"]:
            assert src["hypothesis"] in f["prompt"] and "|||" not in f["prompt"]
            assert len(f["choices"]) == 2
    card = json.loads((tmp_path / "a.card.json").read_text())
    assert card["builder"] == "consistency" and card["stats"]["n"] == 6
    other = build_consistency(ConsistencyBuildConfig(output=str(tmp_path / "c.jsonl"), **{**cfg, "seed": 4}))
    assert other["heldout_formats"] != info["heldout_formats"] or _rows(tmp_path / "c.jsonl") != rows


def test_copa_conditional_templates_are_counted_not_silently_dropped(shared_data, tmp_path):
    info = build_consistency(ConsistencyBuildConfig(data=str(shared_data / "consistency" / "copa.jsonl"),
                                                    templates="super_glue/copa", output=str(tmp_path / "c.jsonl"),
                                                    n=20, seed=0))
    rows = _rows(tmp_path / "c.jsonl")
    rendered = sum(len(r["formats"]) for r in rows)
    assert rendered + sum(info["empty_renders"].values()) == 20 * len(info["formats"])
    assert sum(info["empty_renders"].values()) > 0  # templates bound to one question type
    for r in rows:  # premise shown, the choices are the two alternatives
        assert all(len(f["choices"]) == 2 for f in r["formats"])


def test_cb_three_choices_via_cli_registry(shared_data, tmp_path):
    out = tmp_path / "cb.jsonl"
    summary = resolve("consistency")({"data": str(shared_data / "consistency" / "cb.jsonl"),
                                      "templates": "super_glue/cb", "split": "validation", "output": str(out),
                                      "heldout": ["GPT-3 style"]})
    rows = _rows(out)
    assert summary["n"] == len(rows) == 56
    assert all(r["n_choices"] == 3 and [f["name"] for f in r["heldout_formats"]] == ["GPT-3 style"] for r in rows)


def test_custom_tags_load_safely_and_jinja_is_sandboxed(tmp_path):
    t = tmp_path / "templates.yaml"
    t.write_text(yaml.safe_dump({"templates": {}}).replace("{}", "") + (
        "  x1: !Template\n    name: evil\n    answer_choices: A ||| B\n"
        "    jinja: '{{ premise.__class__.__mro__[1].__subclasses__() }} ||| x'\n"
        "    metadata: !TemplateMetadata\n      original_task: true\n"))
    (tpl,) = load_templates(t)
    assert tpl.name == "evil" and tpl.original_task
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        render(tpl, {"premise": "p", "label": 0})
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates:\n  x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(yaml.YAMLError):
        load_templates(bad)


def test_bad_rows_name_file_line_and_field(tmp_path, shared_data):
    data = tmp_path / "rte.jsonl"
    data.write_text(json.dumps({"premise": "p", "hypothesis": "h", "split": "train", "label_id": 0}) + "\n"
                    + json.dumps({"premise": "p", "split": "train", "label_id": 1}) + "\n")
    tpl = shared_data / "consistency" / "promptsource_templates" / "super_glue" / "rte" / "templates.yaml"
    with pytest.raises(ValueError, match=r"rte.jsonl:2: template .*hypothesis"):
        build_consistency(ConsistencyBuildConfig(data=str(data), templates=str(tpl), output=str(tmp_path / "o.jsonl")))
    data.write_text(json.dumps({"premise": "p", "hypothesis": "h", "split": "train"}) + "\n")
    with pytest.raises(ValueError, match=r"rte.jsonl:1: field 'label_id'/'label'"):
        build_consistency(ConsistencyBuildConfig(data=str(data), templates=str(tpl), output=str(tmp_path / "o.jsonl")))
