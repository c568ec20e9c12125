"""TruthfulQA pairs: labels, question-level split (no eval question in train), bad input, determinism."""

from __future__ import annotations

import csv
import json

import pytest

from alignkit.builders.truthfulqa import TruthfulQAPairsConfig, build_truthfulqa_pairs, load_truthfulqa
from alignkit.data import read_jsonl
from alignkit.data.schema import DataError


def _csv(path, rows):
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["Type", "Category", "Question", "Best Answer", "Correct Answers",
                                           "Incorrect Answers", "Source"])
        w.writeheader()
        for r in rows:
            w.writerow({"Type": "Adversarial", "Source": "", **r})
    return path


def _row(i, cat="A"):
    return {"Category": cat, "Question": f"Question {i}?", "Best Answer": f"True {i}",
            "Correct Answers": f"True {i}; Also true {i}", "Incorrect Answers": f"False {i}; Wrong {i}; Bad {i}"}


def test_pairs_split_by_question(tmp_path):
    src = _csv(tmp_path / "tqa.csv", [_row(i, "A" if i % 2 else "B") for i in range(20)])
    cfg = TruthfulQAPairsConfig(source=str(src), output=str(tmp_path / "out"), eval_fraction=0.25, pairs_per_question=3)
    summary = build_truthfulqa_pairs(cfg, progress=False)
    train = read_jsonl(tmp_path / "out" / "train.jsonl").records  # validates every record against the contract
    evals = read_jsonl(tmp_path / "out" / "eval.jsonl").records
    assert summary["train"]["questions"] + summary["eval"]["questions"] == 20
    assert summary["eval"]["questions"] == 6  # round(0.25 * 10) per category, two categories
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in evals})
    for r in train + evals:
        i = r["prompt"].split()[1].rstrip("?")
        assert (r["h_w"], r["h_l"]) == (0, 1)
        assert r["chosen"] in (f"True {i}", f"Also true {i}")
        assert r["rejected"] in (f"False {i}", f"Wrong {i}", f"Bad {i}")
    per_q = {}
    for r in train:
        per_q.setdefault(r["prompt"], []).append((r["chosen"], r["rejected"]))
    for pairs in per_q.values():
        assert len(pairs) == 3 and len(set(pairs)) == 3
        assert len({w for _, w in pairs}) == 3  # each incorrect answer used once before any repeats
    card = json.loads((tmp_path / "out" / "eval.card.json").read_text())
    assert card["stats"]["buckets"]["(0,1)"] == len(evals) and card["questions"] == 6


def test_misordered_share_and_determinism(tmp_path):
    src = _csv(tmp_path / "tqa.csv", [_row(i) for i in range(40)])
    outs = []
    for name in ("a", "b"):
        cfg = TruthfulQAPairsConfig(source=str(src), output=str(tmp_path / name), misordered_fraction=0.5, seed=3)
        build_truthfulqa_pairs(cfg, progress=False)
        outs.append((tmp_path / name / "train.jsonl").read_bytes())
    assert outs[0] == outs[1]
    recs = read_jsonl(tmp_path / "a" / "train.jsonl").records
    mis = [r for r in recs if (r["h_w"], r["h_l"]) == (1, 0)]
    assert 0.3 < len(mis) / len(recs) < 0.7
    assert all(r["chosen"].split()[0] in ("False", "Wrong", "Bad") for r in mis)


def test_bad_rows(tmp_path):
    rows = [_row(0), {**_row(1), "Incorrect Answers": ""}, {**_row(2), "Question": ""}, _row(0)]
    src = _csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=r"bad.csv:3: field 'incorrect_answers': no incorrect answer"):
        load_truthfulqa(str(src))
    items, rejects = load_truthfulqa(str(src), on_invalid="skip")
    assert len(items) == 1
    assert [(r["line"], r["field"]) for r in rejects] == [(3, "incorrect_answers"), (4, "question"), (5, "question")]
    assert "duplicate" in rejects[2]["reason"]
    cfg = TruthfulQAPairsConfig(source=str(src), output=str(tmp_path / "o"), on_invalid="skip", eval_fraction=0.0)
    build_truthfulqa_pairs(cfg, progress=False)
    card = json.loads((tmp_path / "o" / "train.card.json").read_text())
    assert card["rejected"]["n"] == 3
    assert len((tmp_path / "o" / "train.rejects.jsonl").read_text().splitlines()) == 3


def test_shared_truthfulqa_all_formats_agree(shared_data):
    """CSV, mc_task.json and the HF-format JSONL of v0 give 817 questions; the split never leaks a question."""
    d = shared_data / "truthfulqa"
    csv_items, rej = load_truthfulqa(str(d / "TruthfulQA.csv"))
    mc_items, _ = load_truthfulqa(str(d / "mc_task.json"))
    hf_items, _ = load_truthfulqa(str(d / "truthful_qa_multiple_choice_validation.jsonl"))
    assert len(csv_items) == len(mc_items) == len(hf_items) == 817 and not rej
    assert [i.question for i in mc_items] == [i.question for i in hf_items]
    assert {i.question for i in csv_items} == {i.question for i in mc_items}


def test_shared_truthfulqa_build(shared_data, tmp_path):
    cfg = TruthfulQAPairsConfig(source=str(shared_data / "truthfulqa" / "TruthfulQA.csv"), output=str(tmp_path))
    s = build_truthfulqa_pairs(cfg, progress=False)
    assert s["train"]["questions"] + s["eval"]["questions"] == 817
    train = read_jsonl(tmp_path / "train.jsonl").records
    evals = read_jsonl(tmp_path / "eval.jsonl").records
    assert {r["question_id"] for r in train}.isdisjoint({r["question_id"] for r in evals})
