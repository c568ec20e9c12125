"""Unit tests for the likelihood judge on a stand-in for ``vllm.LLM`` (its real run is in test_judges_vllm.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from alignkit.judges import JudgeItem, LikelihoodJudge, VLLMJudge, get_judge, run_judge
from alignkit.judges.likelihood import likelihood_messages


class _Tok:
    """One token per character (its code point); the chat 'template' wraps the user text in markers."""

    def apply_chat_template(self, msgs, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "<u>" + msgs[-1]["content"] + "<a>"

    def __call__(self, text, add_special_tokens):
        assert not add_special_tokens
        return {"input_ids": [ord(c) for c in text]}


class _FakeLLM:
    """Log-probability -2 for every 'X' token, -0.1 for any other; records the prompts it was sent."""

    def __init__(self, model: str = "fake-model", fail: Exception | None = None):
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(model=model))
        self.fail = fail
        self.prompts: list[list[int]] = []

    def get_tokenizer(self):
        return _Tok()

    def generate(self, prompts, params, use_tqdm):
        if self.fail is not None:
            raise self.fail
        assert params.prompt_logprobs == 1 and params.max_tokens == 1
        outs = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            self.prompts.append(ids)
            lps = [None] + [{t: SimpleNamespace(logprob=-2.0 if t == ord("X") else -0.1, rank=1)} for t in ids[1:]]
            outs.append(SimpleNamespace(prompt_logprobs=lps))
        return outs


def _item(resp: str, context: str | None = "XXXX context XXXX") -> JudgeItem:
    return JudgeItem("Q?", resp, context=context)


def test_labels_from_the_response_tokens_only():
    eng = _FakeLLM()
    judge = LikelihoodJudge(engine=eng, threshold=1.0)
    out = judge.judge([_item("aaaa"), _item("XXXX"), _item("aaXX"), _item("aXX")])
    # the context is full of improbable 'X' tokens, yet "aaaa" scores 0.1: only the response is averaged
    assert [j.detail["mean_nll"] for j in out] == pytest.approx([0.1, 2.0, 1.05, (0.1 + 4.0) / 3])
    assert [j.label for j in out] == [0, 1, 1, 1]
    assert all(j.status == "ok" and j.score is None for j in out)
    assert [j.detail["n_tokens"] for j in out] == [4, 4, 4, 3]
    # the prompt sent is the chat with context and question, followed by the response
    text = "".join(map(chr, eng.prompts[0]))
    assert text == "<u>Context: XXXX context XXXX\nQuestion: Q?\nAnswer in one sentence, from the context.<a>aaaa"


def test_threshold_is_strict():
    out = LikelihoodJudge(engine=_FakeLLM(), threshold=0.1).judge([_item("aa"), _item("aX")])
    assert [j.label for j in out] == [0, 1]  # exactly at the threshold is not flagged


def test_empty_response_is_a_counted_failure_not_a_label():
    eng = _FakeLLM()
    out, stats = run_judge(LikelihoodJudge(engine=eng, threshold=1.0), [_item(""), _item("aa")], progress=False)
    assert (out[0].label, out[0].status) == (None, "error") and "empty" in out[0].detail["reason"]
    assert not out[0].detail.get("transient")
    assert (out[1].label, out[1].status) == (0, "ok")
    assert stats["status"] == {"error": 1, "ok": 1} and len(eng.prompts) == 1  # nothing sent for the empty one


def test_item_without_context_is_scored_after_the_question_alone():
    assert likelihood_messages(_item("a", context=None)) == [{"role": "user", "content": "Q?"}]


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1.0", None])
def test_threshold_validated(bad):
    with pytest.raises(ValueError, match="threshold"):
        LikelihoodJudge(engine=_FakeLLM(), threshold=bad)


def test_threshold_has_no_default_and_a_model_or_engine_is_needed():
    with pytest.raises(TypeError):
        LikelihoodJudge("m")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        get_judge("likelihood:m")
    with pytest.raises(ValueError, match="model name or an engine"):
        LikelihoodJudge(threshold=1.0)


def test_spec_and_cache_key(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    j = get_judge("likelihood:m", threshold=1.5, engine=_FakeLLM(str(tmp_path)))
    assert isinstance(j, LikelihoodJudge) and j.threshold == 1.5
    other = LikelihoodJudge(engine=_FakeLLM(str(tmp_path)), threshold=1.0)
    assert j.cache_key.startswith("likelihood:") and j.cache_key != other.cache_key  # the threshold is in the key
    assert j.cache_key != VLLMJudge(engine=_FakeLLM(str(tmp_path))).cache_key


def test_engine_errors():
    # an engine that is not a vllm.LLM: a clear error, not a per-item failure
    with pytest.raises(ValueError, match="vllm.LLM"):
        LikelihoodJudge("m", engine=object(), threshold=1.0).judge([_item("a")])
    # a transient failure: counted per item, marked transient (so never cached), never a label
    out = LikelihoodJudge(engine=_FakeLLM(fail=TimeoutError("slow")), threshold=1.0).judge([_item("a")] * 2)
    assert [(j.label, j.status, j.detail["transient"]) for j in out] == [(None, "error", True)] * 2
    # a bug propagates
    with pytest.raises(KeyError):
        LikelihoodJudge(engine=_FakeLLM(fail=KeyError("bug")), threshold=1.0).judge([_item("a")])
