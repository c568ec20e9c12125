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
