"""The grounded-QA fact world: shape, determinism, held-out split, reference-judge decidability, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alignkit.builders.factworld import build_factworld, judge_items
from alignkit.cli import main as cli
from alignkit.data.schema import record_problems
from alignkit.judges import ReferenceJudge
from alignkit.judges.reference import contains, normalise

REPO = Path(__file__).resolve().parents[1]


def test_shape_buckets_and_misordering():
    train, test = build_factworld(2000, 100, rho=0.3, seed=1, share_00=0.1, share_11=0.1)
    assert len(train) == 2000 and len(test) == 100
    assert all(record_problems(r) == [] for r in train)
    assert len({r["id"] for r in train}) == 2000
    buckets = {b: sum(1 for r in train if (r["h_w"], r["h_l"]) == b) for b in ((0, 0), (0, 1), (1, 0), (1, 1))}
    assert 130 < buckets[(0, 0)] < 270 and 130 < buckets[(1, 1)] < 270
    ordered = buckets[(0, 1)] + buckets[(1, 0)]
    assert abs(buckets[(1, 0)] / ordered - 0.3) < 0.05
    assert all(r["misordered"] == ((r["h_w"], r["h_l"]) == (1, 0)) for r in train)
    # conversational format: a user prompt, one assistant answer of one short sentence
    r = train[0]
    assert r["prompt"][0]["role"] == "user" and r["chosen"][0]["role"] == "assistant"
    assert all(r["chosen"][0]["content"].count(".") <= 2 for r in train)


def test_factual_answers_agree_with_context_hallucinations_contradict_it():
    train, _ = build_factworld(500, 0, rho=0.5, seed=2, unsupported_share=0.3)
    for r in train:
        if (r["h_w"], r["h_l"]) not in ((0, 1), (1, 0)):
            continue
        fact, hal = (r["chosen"], r["rejected"]) if r["h_w"] == 0 else (r["rejected"], r["chosen"])
        context = r["prompt"][0]["content"]
        value, wrong = r["reference_true"][0], r["reference_false"][0]
        assert contains(normalise(fact[0]["content"]), value) and contains(normalise(context), value)
        assert contains(normalise(hal[0]["content"]), wrong) and not contains(normalise(context), wrong)
        if r["hallucination"] == "unsupported":
            assert hal[0]["content"].startswith(fact[0]["content"])  # the fact plus an invented one


def test_deterministic_and_test_split_held_out():
    a_train, a_test = build_factworld(300, 50, rho=0.4, seed=7)
    b_train, b_test = build_factworld(300, 50, rho=0.4, seed=7)
    assert a_train == b_train and a_test == b_test
    _, bigger_test = build_factworld(1000, 50, rho=0.4, seed=7)
    assert bigger_test == a_test  # the held-out split does not depend on n_train
    other_train, _ = build_factworld(300, 50, rho=0.4, seed=8)
    assert other_train != a_train
    test_names = {t["entity"] for t in a_test}
    big_train, _ = build_factworld(5000, 50, rho=0.4, seed=7)
    assert not test_names & {r["entity"] for r in big_train}  # no held-out entity is described in train


def test_reference_judge_decides_held_out_answers():
    _, test = build_factworld(0, 200, rho=0.0, seed=3)
    judge = ReferenceJudge()
    gold = judge.judge(judge_items(test, [t["gold"] for t in test]))
    wrong = judge.judge(judge_items(test, [t["reference_false"][-1] for t in test]))
    # a short generated answer that states the false value in a different phrasing
    rephrased = judge.judge(judge_items(test, [f"I believe it is {t['reference_false'][1]}." for t in test]))
    vague = judge.judge(judge_items(test, ["The context does not say." for _ in test]))
    assert [j.label for j in gold] == [0] * 200
    assert [j.label for j in wrong] == [1] * 200
    assert [j.label for j in rephrased] == [1] * 200
    assert [j.label for j in vague] == [1] * 200
    t = test[0]
    assert t["gold"] in t["reference_true"] and t["context"] in t["prompt"][0]["content"]
    assert re.search(re.escape(t["reference_true"][0]), t["context"])


def test_prompts_are_short(embedded_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    train, _ = build_factworld(200, 0, rho=0.4, seed=0)
    lengths = [len(tok(r["prompt"][0]["content"] + " " + r["chosen"][0]["content"]).input_ids) for r in train]
    assert sum(lengths) / len(lengths) <= 90 and max(lengths) <= 120


def test_cli_from_yaml_is_byte_identical_on_rerun(tmp_path, capsys):
    out = tmp_path / "fw"
    args = ["build", "factworld", "--config", str(REPO / "data_builders" / "factworld.yaml"), "--quiet",
            "--set", f"output_dir={out}", "--set", "n_train=300", "--set", "n_test=40"]
    assert cli(args) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(first) == {"train.jsonl", "train.card.json", "test.jsonl", "test.card.json"}
    assert cli(args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    card = json.loads(first["train.card.json"])
    assert card["stats"]["n"] == 300 and card["seed"] == 0 and card["config"]["n_test"] == 40
    assert card["misordered"] == card["stats"]["buckets"]["(1,0)"]
    assert len(first["test.jsonl"].splitlines()) == 40


def test_cli_rejects_unknown_config_key(tmp_path, capsys):
    assert cli(["build", "factworld", "--set", "n_trian=5", "--set", f"output_dir={tmp_path}"]) == 2
    assert "unknown key(s) 'n_trian'" in capsys.readouterr().err
    with pytest.raises(ValueError):
        build_factworld(10, 0, rho=1.5, seed=0)
