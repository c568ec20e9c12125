"""The backend interface: batched generation and log-likelihood scoring, with optional LoRA adapters per call.

A backend is built once per *base* model; the model under evaluation is that base plus an optional adapter, passed
per call, so one vLLM engine can serve every LoRA adapter of a comparison without merging weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

Chat = list[dict[str, str]]
Prompt = Union[str, Chat]  # a plain string is used as is; a chat goes through the tokenizer's chat template


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """A model under evaluation: ``base`` (name/path for resolve_model) plus an optional LoRA ``adapter`` dir."""

    label: str
    base: str
    adapter: str | None = None


@dataclass(frozen=True)
class LoglikResult:
    logprob: float  # summed log-probability of the continuation's tokens
    is_greedy: bool  # every continuation token is the argmax
    n_tokens: int = field(default=0)


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig, *, adapter: str | None = None) -> list[str]:
        """Batched generation; returns only the new text for each prompt, in order."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]], *, adapter: str | None = None) -> list[LoglikResult]:
        """For each (context, continuation): log P(continuation | context), tokenised the way lm-evaluation-harness
        does (context and context+continuation encoded, continuation tokens = the difference)."""
        ...
