"""The vLLM backend's engine options follow the device unless the suite sets them (issue: GPU-ready eval defaults)."""

from __future__ import annotations

from pathlib import Path

import yaml

from alignkit.inference.vllm import device_defaults

REPO = Path(__file__).resolve().parents[1]


def test_cuda_defaults_use_bf16_cuda_graphs_and_most_of_the_gpu():
    assert device_defaults(None, None, None, cuda=True) == ("auto", 0.9, False)


def test_cpu_defaults_stay_as_vllm_cpu_needs_them():
    assert device_defaults(None, None, None, cuda=False) == ("float32", 0.5, True)


def test_values_the_suite_sets_are_kept_on_either_device():
    for cuda in (True, False):
        assert device_defaults("float16", 0.7, True, cuda=cuda) == ("float16", 0.7, True)
        assert device_defaults(None, 0.3, None, cuda=cuda)[1] == 0.3


def test_full_suite_does_not_defeat_the_gpu_defaults():
    doc = yaml.safe_load((REPO / "evals" / "full.yaml").read_text())
    vllm_opts = doc["backend_options"]["vllm"]
    assert vllm_opts.get("enforce_eager") in (None, False)
    assert vllm_opts.get("dtype") in (None, "auto", "bfloat16")


class _FakeLLM:
    """Stands in for ``vllm.LLM``: records the keyword arguments each engine was built with."""

    built: list[dict] = []

    def __init__(self, **kwargs):
        _FakeLLM.built.append(kwargs)

    def get_tokenizer(self):
        return object()


def test_backend_and_judge_build_their_engine_through_one_constructor(tmp_path, monkeypatch):
    """alignkit.inference.vllm.make_engine is the one vllm.LLM constructor: the backend passes its device defaults,
    the judge its own (max_model_len 2048, seed 0, eager on CPU), and a stale GGUF quantization entry is overridden."""
    import os
    import sys
    import types

    from alignkit.inference.vllm import VLLMBackend
    from alignkit.judges.llm import make_engine as judge_engine

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"quantization_config": {"quant_method": "gguf"}}')
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=_FakeLLM))
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING"):  # restored after the test
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("alignkit.inference.vllm._has_cuda", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    _FakeLLM.built = []
    VLLMBackend(str(model), max_model_len=512)
    judge_engine(str(model))
    backend_kw, judge_kw = _FakeLLM.built
    assert backend_kw["model"] == judge_kw["model"] == str(model.resolve())
    assert (backend_kw["dtype"], backend_kw["enforce_eager"], backend_kw["max_model_len"]) == ("float32", True, 512)
    assert (judge_kw["enforce_eager"], judge_kw["max_model_len"], judge_kw["seed"]) == (True, 2048, 0)
    assert backend_kw["hf_overrides"] == judge_kw["hf_overrides"] == {"quantization_config": None}
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1" and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
