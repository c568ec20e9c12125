"""TruthfulQA pairs: answers listed as both correct and incorrect are dropped from both sides and counted in the
card (issue 11 item 7), and a JSONL source with a BOM or a deeply nested row is read or rejected with its line."""

from __future__ import annotations

import json

import pytest

from alignkit.builders.truthfulqa import TruthfulQAPairsConfig, build_truthfulqa_pairs, load_truthfulqa
from alignkit.data.io import read_jsonl
from alignkit.data.schema import DataError


def _row(i: int, correct: list[str], incorrect: list[str]) -> dict:
    return {"question": f"Question number {i}?", "category": "Test", "best_answer": correct[0],
            "correct_answers": correct, "incorrect_answers": incorrect}


def test_answers_on_both_sides_are_counted(tmp_path):
    rows = [_row(0, ["Yes", "Indeed"], ["No", "indeed"]),         # "Indeed" listed on both sides (any case)
            _row(1, ["Blue", "Cyan", "Teal"], ["Red", "Cyan", "Blue"]),  # two conflicting answers
            _row(2, ["Up"], ["Down"]),
            _row(3, ["Same"], ["same"])]                         # nothing left: rejected, reason says why
    src = tmp_path / "tqa.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, rejects = load_truthfulqa(str(src), on_invalid="skip")
    assert {it.question: it.conflicting for it in items} == {
        "Question number 0?": ["Indeed"], "Question number 1?": ["Blue", "Cyan"], "Question number 2?": []}
    assert all("Cyan" not in it.correct + it.incorrect for it in items)
    assert [(r["line"], r["field"]) for r in rejects] == [(4, "correct_answers")]
    assert "after dropping 1 answer(s) listed as both correct and incorrect" in rejects[0]["reason"]
    cfg = TruthfulQAPairsConfig(source=str(src), output=str(tmp_path / "o"), on_invalid="skip", eval_fraction=0.0)
    build_truthfulqa_pairs(cfg, progress=False)
    card = json.loads((tmp_path / "o" / "train.card.json").read_text())
    assert card["answers_listed_both_sides"] == {"answers": 3, "questions": 2}
    assert card["rejected"]["n"] == 1
    pairs = read_jsonl(tmp_path / "o" / "train.jsonl").records
    assert pairs and not {r[k].lower() for r in pairs for k in ("chosen", "rejected")} & {"indeed", "cyan", "blue"}


def test_jsonl_source_with_bom_and_deep_nesting(tmp_path):
    src = tmp_path / "tqa.jsonl"
    deep = '{"question": ' + "[" * 50_000 + "]" * 50_000 + "}"
    src.write_bytes(b"\xef\xbb\xbf" + (json.dumps(_row(0, ["Yes"], ["No"])) + "\n" + deep + "\n").encode())
    with pytest.raises(DataError, match=r"tqa.jsonl:2: invalid JSON: nested too deeply"):
        load_truthfulqa(str(src))
    items, rejects = load_truthfulqa(str(src), on_invalid="skip")
    assert [it.question for it in items] == ["Question number 0?"] and [r["line"] for r in rejects] == [2]
