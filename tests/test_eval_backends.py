"""vLLM and transformers backends agree on the embedded model: same greedy text, same log-likelihoods (within 1e-3
nats per token), with and without a LoRA adapter (vLLM serves it through LoRARequest, transformers through peft)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.inference import SamplingConfig, get_backend, truncate_at_stop

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name three colours."}],
    "The quick brown fox",
    "Q: Where were the 1992 Olympics held?\nA:",
]
PAIRS = [
    ("Q: What is 2+2?\nA:", " 4"),
    ("The capital of France is", " Paris, a city on the Seine."),
    ("Hello ", "world"),  # trailing space moves to the continuation
    ("", "An empty context is conditioned on BOS."),
]
GREEDY = SamplingConfig(max_new_tokens=20)


def make_adapter(base_dir: str, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter with random (non-zero) B matrices, so it visibly changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(embedded_model, tmp_path_factory) -> str:
    return str(make_adapter(embedded_model, tmp_path_factory.mktemp("lora") / "adapter"))


@pytest.fixture(scope="module")
def hf(embedded_model):
    return get_backend("hf", embedded_model, batch_size=4)


@pytest.fixture(scope="module")
def vllm_backend(embedded_model):
    b = get_backend("vllm", embedded_model, max_model_len=1024, enable_lora=True, max_lora_rank=8)
    yield b
    b.close()


def _per_token_close(a, b, tol=1e-3):
    for x, y in zip(a, b):
        assert x.n_tokens == y.n_tokens
        assert abs(x.logprob - y.logprob) <= tol * max(1, x.n_tokens), (x, y)
        assert x.is_greedy == y.is_greedy


def test_truncate_at_stop_cuts_at_the_earliest_stop():
    assert truncate_at_stop("a\n\nb\nQ: c", ("\nQ:", "\n\n")) == "a"
    assert truncate_at_stop("abc", ()) == "abc"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("tgi", "x")


@pytest.mark.slow
@pytest.mark.vllm
def test_same_greedy_text_and_logliks_base(hf, vllm_backend):
    texts_hf = hf.generate(PROMPTS, GREEDY)
    texts_vllm = vllm_backend.generate(PROMPTS, GREEDY)
    assert all(t.strip() for t in texts_hf)
    assert texts_vllm == texts_hf
    ll_hf, ll_vllm = hf.loglikelihood(PAIRS), vllm_backend.loglikelihood(PAIRS)
    assert all(r.n_tokens > 0 for r in ll_hf)
    _per_token_close(ll_hf, ll_vllm)


@pytest.mark.slow
@pytest.mark.vllm
def test_same_results_with_a_lora_adapter(hf, vllm_backend, adapter):
    base_ll = hf.loglikelihood(PAIRS)
    ll_hf = hf.loglikelihood(PAIRS, adapter=adapter)
    ll_vllm = vllm_backend.loglikelihood(PAIRS, adapter=adapter)
    # the adapter changes the model (else this test would prove nothing) ...
    assert max(abs(a.logprob - b.logprob) for a, b in zip(base_ll, ll_hf)) > 0.05
    # ... and both backends apply it the same way
    _per_token_close(ll_hf, ll_vllm)
    assert vllm_backend.generate(PROMPTS, GREEDY, adapter=adapter) == hf.generate(PROMPTS, GREEDY, adapter=adapter)
    # the base is still served bare after an adapter was used
    _per_token_close(base_ll, vllm_backend.loglikelihood(PAIRS))
    _per_token_close(base_ll, hf.loglikelihood(PAIRS))


@pytest.mark.slow
@pytest.mark.vllm
def test_stop_strings_match(hf, vllm_backend):
    sampling = SamplingConfig(max_new_tokens=24, stop=("\n",))
    prompts = ["Q: Name a fruit.\nA:", "List:\n1."]
    assert vllm_backend.generate(prompts, sampling) == hf.generate(prompts, sampling)


@pytest.mark.slow
def test_merged_adapter_is_the_same_model(hf, adapter, embedded_model):
    """On CPU the vLLM runner evaluates merged copies of adapters (alignkit/models/merge.py): same function."""
    from alignkit.models.merge import merged_model_dir

    merged = merged_model_dir(adapter)  # base read from the adapter's config
    assert merged_model_dir(adapter, embedded_model) == merged  # cached by content, built once
    hf_merged = get_backend("hf", merged, batch_size=4)
    _per_token_close(hf.loglikelihood(PAIRS, adapter=adapter), hf_merged.loglikelihood(PAIRS), tol=1e-4)
    assert hf_merged.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY, adapter=adapter)


def test_merge_lora_backend_computes_what_the_unmerged_adapter_does(hf, adapter, embedded_model, tmp_path):
    """merge_lora=True merges the active adapter into the weights and reloads the base to leave it: the same
    log-likelihoods (float rounding) and greedy text as peft's unmerged adapter, for adapter, base, other adapter."""
    other = str(make_adapter(embedded_model, tmp_path / "other", seed=1))
    fast = get_backend("hf", embedded_model, batch_size=4, merge_lora=True)
    for name in (adapter, None, other, adapter):
        _per_token_close(hf.loglikelihood(PAIRS, adapter=name), fast.loglikelihood(PAIRS, adapter=name), tol=1e-4)
        assert fast.generate(PROMPTS, GREEDY, adapter=name) == hf.generate(PROMPTS, GREEDY, adapter=name)
    # the three models differ (else the comparison above would prove nothing)
    assert len({round(hf.loglikelihood(PAIRS[:1], adapter=a)[0].logprob, 3) for a in (adapter, None, other)}) == 3


# --- log-likelihoods on the shared-prefix HF scorer whatever the generation backend (backends/split.py) -------------
class _FakeGeneration:
    """Stands in for a vLLM engine: records that it was built and closed, generates a fixed text."""

    name = "vllm"

    def __init__(self, log: list) -> None:
        self.log = log
        log.append("built")

    def generate(self, prompts, sampling, *, adapter=None):
        return ["x"] * len(prompts)

    def close(self):
        self.log.append("closed")


@pytest.fixture
def fake_vllm(monkeypatch):
    import alignkit.inference as backends

    real, log = backends.get_backend, []
    monkeypatch.setattr(backends, "get_backend",
                        lambda name, base, **kw: _FakeGeneration(log) if name == "vllm" else real(name, base, **kw))
    return log


def test_split_backend_scores_with_the_prefix_scorer_and_never_holds_both_when_exclusive(tiny_model, fake_vllm):
    from alignkit.inference.split import SplitBackend

    split = SplitBackend(tiny_model, "vllm", exclusive=True)
    assert split.name == "vllm+hf" and split.engines == []
    ll = split.loglikelihood(PAIRS)
    assert split.engines == ["scorer"] and fake_vllm == []  # scoring never started the generation engine
    scorer = split._engines["scorer"]
    assert scorer.prefix_sharing and scorer.scorer.stats.requests == len(PAIRS)
    unshared = get_backend("hf", tiny_model, prefix_sharing=False).loglikelihood(PAIRS)
    for a, b in zip(ll, unshared):
        assert abs(a.logprob - b.logprob) <= 1e-4 and a.is_greedy == b.is_greedy and a.n_tokens == b.n_tokens
    assert split.generate(["hi"], GREEDY) == ["x"]
    assert split.engines == ["generation"] and scorer.model is None  # the scorer was freed before vLLM was built
    split.loglikelihood(PAIRS[:1])
    assert split.engines == ["scorer"] and fake_vllm == ["built", "closed"]
    split.close()
    assert split.engines == []


def test_split_backend_keeps_both_when_not_exclusive(tiny_model, fake_vllm):
    from alignkit.inference.split import SplitBackend

    split = SplitBackend(tiny_model, "vllm", exclusive=False)
    split.generate(["hi"], GREEDY)
    split.loglikelihood(PAIRS[:1])
    assert sorted(split.engines) == ["generation", "scorer"] and fake_vllm == ["built"]
    split.close()
    assert fake_vllm == ["built", "closed"]


def test_suite_backend_choices(tiny_model):
    from alignkit.inference.hf import HFBackend
    from alignkit.inference.split import SplitBackend, suite_backend

    b = suite_backend("vllm", tiny_model, {"max_model_len": 512}, hf_options={"batch_size": 2})
    assert isinstance(b, SplitBackend) and b.generation_options == {"max_model_len": 512}
    assert b.scorer_options == {"batch_size": 2} and b.engines == []
    assert isinstance(get_backend("vllm+hf", tiny_model), SplitBackend)  # what a judge rebuilt from .name gets
    assert isinstance(suite_backend("hf", tiny_model, {"batch_size": 2}), HFBackend)
    with pytest.raises(ValueError, match="loglikelihood must be one of"):
        suite_backend("vllm", tiny_model, {"loglikelihood": "tgi"})


def test_runner_scores_loglikelihood_tasks_without_starting_vllm(tiny_model, fake_vllm, tmp_path):
    """A vLLM suite of log-likelihood tasks runs entirely on the HF scorer; loglikelihood tasks run first."""
    from alignkit.evals.runner import Suite, TaskSpec, run_suite
    from alignkit.inference.base import ModelSpec
    from alignkit.resources import data_path

    data = str(data_path("truthfulqa/truthful_qa_multiple_choice_validation.jsonl"))
    suite = Suite(name="t", backend="vllm", tasks=[TaskSpec("truthfulqa_mc", {"data": data, "limit": 2})])
    [res] = run_suite(suite, [ModelSpec("tiny", tiny_model)], tmp_path / "out", progress=False)
    assert fake_vllm == [] and len(res.items) == 2 and 0.0 <= res.metrics["mc2"].value <= 1.0
