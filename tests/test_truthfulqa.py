"""TruthfulQA MC1/MC2: metric functions against hand-computed values, and per-question agreement with
lm-evaluation-harness itself (its `hf` model and its own truthfulqa task configs pointed at the local v0 data)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alignkit.evals.metrics.truthfulqa import mc1_correct, mc2_score, truthful_by_similarity
from alignkit.evals.tasks.truthfulqa import QA_PRIMER, load_gen, load_mc, mc_prompt
from alignkit.inference import encode_pair

N_QUESTIONS = 20


def test_mc1_top_choice_must_be_the_true_one():
    assert mc1_correct([-1.0, -2.0, -3.0], [1, 0, 0]) == 1.0
    assert mc1_correct([-2.0, -1.0, -3.0], [1, 0, 0]) == 0.0
    assert mc1_correct([-1.0, -1.0], [1, 0]) == 1.0  # ties go to the first choice, as np.argmax


def test_mc2_is_normalised_true_probability_mass():
    # p = e^-1, e^-2 (true), e^-1 (false): (e^-1 + e^-2) / (2 e^-1 + e^-2)
    expected = (math.exp(-1) + math.exp(-2)) / (2 * math.exp(-1) + math.exp(-2))
    assert mc2_score([-1.0, -2.0, -1.0], [1, 1, 0]) == pytest.approx(expected, rel=1e-12)
    assert mc2_score([0.0, 0.0], [1, 0]) == pytest.approx(0.5)


def test_metric_inputs_must_line_up():
    with pytest.raises(ValueError):
        mc1_correct([-1.0], [1, 0])
    with pytest.raises(ValueError):
        mc2_score([], [])


def test_truthful_by_similarity_needs_a_strict_win():
    overlap = lambda a, b: len(set(a.split()) & set(b.split()))  # noqa: E731
    ok, t, f = truthful_by_similarity("cats are mammals", ["cats are mammals"], ["cats are birds"], overlap)
    assert ok and (t, f) == (3, 2)
    ok, _, _ = truthful_by_similarity("cats are", ["cats are mammals"], ["cats are birds"], overlap)
    assert not ok  # a tie is not truthful
    ok, t, _ = truthful_by_similarity("The origin is unclear.", ["The origin is unclear."], ["China."])
    assert ok and t == pytest.approx(1.0)


def test_prompt_is_the_harness_primer():
    import lm_eval

    yaml_text = (Path(lm_eval.__file__).parent / "tasks" / "truthfulqa" / "truthfulqa_mc1.yaml").read_text()
    for line in QA_PRIMER.splitlines():
        assert line.strip() in yaml_text
    assert mc_prompt("Why?").endswith("Barcelona, Spain.\n\nQ: Why?\nA:")


def test_encode_pair_moves_trailing_space_to_the_continuation(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ctx, cont = encode_pair(tok, "Q: hi\nA: ", "yes")
    assert tok.decode(ctx) == "Q: hi\nA:" and tok.decode(cont) == " yes"
    assert ctx + cont == tok.encode("Q: hi\nA: yes")


def test_loaders_report_file_line_and_field(tmp_path, shared_data):
    bad = tmp_path / "mc.jsonl"
    bad.write_text('{"question": "q", "mc1_targets": {"choices": ["a"], "labels": [1]}, '
                   '"mc2_targets": {"choices": ["a", "b"], "labels": [1]}}\n')
    with pytest.raises(ValueError, match=r"mc\.jsonl:1: field 'mc2_targets'"):
        load_mc(str(bad))
    rows = load_mc(str(shared_data / "truthfulqa" / "truthful_qa_multiple_choice_validation.jsonl"))
    assert len(rows) == 817 and all(r["mc1_targets"]["labels"][0] == 1 for r in rows)
    gen = load_gen(str(shared_data / "truthfulqa" / "TruthfulQA.csv"))
    assert len(gen) == 817 and all("I have no comment." in g["true"] and g["false"] for g in gen)


@pytest.mark.slow
def test_agrees_with_lm_evaluation_harness_per_question(tmp_path, shared_data, tiny_model):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from alignkit.evals.lm_eval_format import harness_truthfulqa_tasks
    from alignkit.evals.tasks import get_task
    from alignkit.inference.base import ModelSpec
    from alignkit.inference.hf import HFBackend

    data = shared_data / "truthfulqa" / "truthful_qa_multiple_choice_validation.jsonl"
    tm = TaskManager(include_path=str(harness_truthfulqa_tasks(tmp_path, data)), include_defaults=False)
    out = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},dtype=float32", device="cpu",
                          tasks=["local_truthfulqa_mc1", "local_truthfulqa_mc2"], task_manager=tm,
                          limit=N_QUESTIONS, log_samples=True, batch_size=8)
    harness = {name.split("_")[-1]: sorted(s, key=lambda x: x["doc_id"]) for name, s in out["samples"].items()}

    ours = get_task("truthfulqa_mc", data=str(data), limit=N_QUESTIONS, progress=False).run(
        HFBackend(tiny_model, batch_size=8), ModelSpec("tiny", tiny_model), None)

    assert len(ours.items) == len(harness["mc1"]) == len(harness["mc2"]) == N_QUESTIONS
    for item, h1, h2 in zip(ours.items, harness["mc1"], harness["mc2"]):
        assert item["question"] == h1["doc"]["question"]
        h1_ll = [r[0][0] for r in h1["resps"]]
        h2_ll = [r[0][0] for r in h2["resps"]]
        assert item["mc1_logliks"] == pytest.approx(h1_ll, abs=1e-3)
        assert item["mc2_logliks"] == pytest.approx(h2_ll, abs=1e-3)
        assert item["mc1"] == h1["acc"]
        assert item["mc2"] == pytest.approx(h2["acc"], abs=1e-6, nan_ok=True)
    assert ours.metrics["mc1"].value == pytest.approx(out["results"]["local_truthfulqa_mc1"]["acc,none"])
    assert ours.metrics["mc2"].value == pytest.approx(out["results"]["local_truthfulqa_mc2"]["acc,none"], abs=1e-6)
