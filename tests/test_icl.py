"""Flipped-label / SUL ICL: builder invariants, bad input, determinism, metrics, and the task on a tiny model."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from alignkit.builders.icl import (
    LABEL_WORDS,
    ICLSetConfig,
    build_icl,
    format_prompt,
    load_classification,
    make_icl_items,
    make_symbol_tuning_examples,
)
from alignkit.data.schema import DataError
from alignkit.evals.metrics.icl import accuracy, accuracy_curve, rank_prediction


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def toy(tmp_path):
    rows = [{"text": f"good movie {i}", "label": "positive", "split": "train"} for i in range(6)]
    rows += [{"text": f"bad movie {i}", "label": "negative", "split": "train"} for i in range(6)]
    rows += [{"text": f"test good {i}", "label": "positive", "split": "test"} for i in range(3)]
    rows += [{"text": f"test bad {i}", "label": "negative", "split": "test"} for i in range(3)]
    return _write(tmp_path / "sst2.jsonl", rows)


def test_metrics_hand_computed():
    assert rank_prediction([-3.0, -1.0, -2.0]) == 1
    assert rank_prediction([-1.0, -1.0]) == 0  # tie -> lowest index
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert accuracy_curve([(50, 1, 1), (0, 0, 1), (0, 1, 1), (50, 0, 1)]) == {0: 0.5, 50: 0.5}
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def test_format_is_wei_et_al():
    assert format_prompt([("a", "Foo"), ("b", "Bar")], "c") == (
        "Input: a\nOutput: Foo\n\nInput: b\nOutput: Bar\n\nInput: c\nOutput:")


def test_flip_proportions_and_label_words(toy):
    data = load_classification(str(toy))
    assert data.classes == ["negative", "positive"]  # Wei et al.'s order for sst2
    items = make_icl_items(data, k=4, n_queries=3, progress=False)
    assert len(items) == 3 * 2 * 5
    for it in items:
        words = it["choices"]
        assert words == (["Foo", "Bar"] if it["label_set"] == "sul" else ["Negative Sentiment", "Positive Sentiment"])
        shown = [blk.split("\nOutput: ")[1] for blk in it["prompt"].split("\n\n")[:-1]]
        texts = [blk.split("\nOutput: ")[0][len("Input: "):] for blk in it["prompt"].split("\n\n")[:-1]]
        true = ["positive" if t.startswith("good") else "negative" for t in texts]
        flipped = sum(words[data.classes.index(t)] != s for t, s in zip(true, shown))
        assert flipped == it["n_flipped"] == {0: 0, 25: 2, 50: 4, 75: 6, 100: 8}[it["flip_pct"]]
        assert Counter(shown) == Counter({words[0]: 4, words[1]: 4})  # per-class flips keep labels balanced
        assert it["prompt"].endswith("\nOutput:") and "test" in it["prompt"].split("\n\n")[-1]
        assert it["flipped_target"] == 1 - it["target"]
    # the same exemplars in the same order at every flip % of one query (only labels differ)
    q0 = [it for it in items if it["query_index"] == 0]
    assert len({tuple(it["exemplar_lines"]) for it in q0}) == 1


def test_nested_flips(toy):
    data = load_classification(str(toy))
    items = make_icl_items(data, k=4, n_queries=1, label_sets=("natural",), progress=False)

    def flipped_positions(it):
        blocks = it["prompt"].split("\n\n")[:-1]
        return {i for i, b in enumerate(blocks) if b.startswith("Input: good") != b.endswith("Positive Sentiment")}
    sets = [flipped_positions(it) for it in sorted(items, key=lambda x: x["flip_pct"])]
    assert all(a <= b for a, b in zip(sets, sets[1:]))


def test_bad_rows_named_or_counted(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"text": "x", "label": "a", "split": "train"}, {"text": "", "label": "a"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'text'"):
        load_classification(str(bad))
    d = load_classification(str(bad), on_invalid="skip")
    assert len(d.rejects) == 1 and d.rejects[0]["line"] == 2
    (tmp_path / "j.jsonl").write_text('{"text": "x", "label": "a"}\n{not json\n')
    with pytest.raises(DataError, match=r"j.jsonl:2"):
        load_classification(str(tmp_path / "j.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_classification(str(tmp_path / "missing.jsonl"))


def test_too_few_exemplars_is_an_error(toy):
    with pytest.raises(ValueError, match="need at least 7"):
        make_icl_items(load_classification(str(toy)), k=6, n_queries=1, progress=False)


def test_builder_deterministic_with_card(toy, tmp_path):
    outs = []
    for name in ("a", "b"):
        cfg = ICLSetConfig(sources=[str(toy)], output=str(tmp_path / name / "items.jsonl"), k=2, n_queries=2)
        summary = build_icl(cfg, progress=False)
        assert summary["written"] == 2 * 2 * 5
        outs.append(((tmp_path / name / "items.jsonl").read_bytes(), (tmp_path / name / "items.card.json").read_text()))
    assert outs[0][0] == outs[1][0]
    card = json.loads(outs[0][1].replace(str(tmp_path / "a"), str(tmp_path / "b")))
    assert card["datasets"]["sst2"]["items"] == 20 and card["rejected"]["n"] == 0
    other = build_icl(ICLSetConfig(sources=[str(toy)], output=str(tmp_path / "c.jsonl"), k=2, n_queries=2, seed=1),
                      progress=False)
    assert other["written"] == 20 and (tmp_path / "c.jsonl").read_bytes() != outs[0][0]


def test_symbol_tuning_set(toy):
    data = load_classification(str(toy))
    ex = make_symbol_tuning_examples([data], n_examples=20, min_k=2, max_k=5, seed=0, progress=False)
    for e in ex:
        assert 2 <= e["k"] <= 5 and len(set(e["symbols"])) == 2
        labels = [b.split("\nOutput: ")[1] for b in e["prompt"].split("\n\n")[:-1]]
        assert Counter(labels) == Counter({s: e["k"] for s in e["symbols"]})
        assert e["completion"].strip() in e["symbols"]
        assert "Sentiment" not in e["prompt"] and "positive" not in e["prompt"]  # no instructions, no label words
    assert {e["symbol_kind"] for e in ex} == {"integer", "letters", "word"}


ICL_SETS = ("qqp", "rte", "sst2", "subj", "trec")  # the ICL sets the benchmark data folder ships


def test_shared_data_label_words(shared_data):
    # every shipped set is checked; a missing or an unexpected file fails instead of being passed over
    assert sorted(p.stem for p in (shared_data / "icl").glob("*.jsonl")) == sorted(ICL_SETS)
    for name in ICL_SETS:
        path = shared_data / "icl" / f"{name}.jsonl"
        d = load_classification(str(path))
        assert d.classes == list(LABEL_WORDS[name]), name  # every class of the file has Wei et al.'s label word
        assert len(d.train) > 0 and len(d.test) > 0


@pytest.mark.slow
def test_icl_task_tiny_model(toy, tiny_model, tmp_path):
    """The task on the hf backend: every item scored, curves and plot written, a rerun served from the cache."""
    from alignkit.data.cache import ItemCache
    from alignkit.evals.tasks import TASKS, get_task
    from alignkit.inference import get_backend
    from alignkit.inference.base import ModelSpec

    backend = get_backend("hf", tiny_model)
    model = ModelSpec("tiny", tiny_model)
    task = get_task("icl_flip", datasets=[str(toy)], k=2, n_queries=3, progress=False)
    cache = ItemCache(tmp_path / "cache.jsonl")
    res = task.run(backend, model, cache)
    assert len(res.items) == 3 * 2 * 5
    for it in res.items:
        assert len(it["scores"]) == 2 and all(s < 0 for s in it["scores"])
        assert it["correct"] == int(it["prediction"] == it["target"])
        assert it["correct"] + it["correct_flipped"] == 1  # binary: exactly one of the two targets is hit
    nat = res.extra["curves"]["natural"]
    assert nat["flip_pct"] == [0, 25, 50, 75, 100]
    for p, acc in zip(nat["flip_pct"], nat["accuracy"]):
        assert acc == pytest.approx(res.metrics[f"acc_natural_flip{p}"].value)
    assert set(res.metrics) == {f"acc_natural_flip{p}" for p in (0, 25, 50, 75, 100)} | {"acc_sul_flip0"}
    again = task.run(backend, model, cache)
    assert cache.hits == len(cache) > 0 and [i["scores"] for i in again.items] == [i["scores"] for i in res.items]
    png = TASKS["icl_flip"].plot([res, again], tmp_path)
    assert png and png[0].stat().st_size > 0


def test_scoring_calls_hold_whole_queries(toy):
    """A query's items share its exemplars, so the default call size is a whole number of queries (≥ 16 items):
    the shared-prefix scorer then computes each query's exemplars once."""
    from alignkit.evals.tasks.icl import call_size

    items = make_icl_items(load_classification(str(toy)), k=2, n_queries=3, progress=False)
    per_query = 2 * 5  # label sets × flip %
    assert [it["query_index"] for it in items[:per_query]] == [0] * per_query
    assert call_size(items) == 20 and call_size(items, at_least=25) == 30 and call_size(items, at_least=1) == 10
    one = [it for it in items if it["label_set"] == "natural" and it["flip_pct"] == 0]  # 1 item per query
    assert call_size(one) == 16
    assert call_size([]) == 16
