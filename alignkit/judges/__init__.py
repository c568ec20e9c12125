"""Judges: a label (1 hallucinated / 0 factual) AND a parse status per item; failures counted, never guessed.

``get_judge(spec, **kw)`` builds one by spec:

- ``reference`` — gold-answer matching (:class:`ReferenceJudge`; kw: ``margin``);
- ``vllm:MODEL`` — an LLM judge on a vLLM engine (:class:`VLLMJudge`; kw: ``mode``, ``max_tokens``, ``engine``
  to reuse an engine, ``engine_kwargs``);
- ``likelihood:MODEL`` — flags responses the model finds improbable given the context (:class:`LikelihoodJudge`;
  kw: ``threshold`` (required, nats/token), ``engine``, ``engine_kwargs``);
- ``openai:URL`` — an OpenAI-compatible endpoint (:class:`OpenAIJudge`; kw: ``model``, ``mode``, ``api_key_env``,
  ``timeout``, ``max_retries``, ``backoff``, ``concurrency`` …);
- ``ensemble:SPEC1,SPEC2,...`` — majority vote (:class:`EnsembleJudge`; kw: ``min_agreement``, and
  ``members={spec: {kw}}`` for per-member options).

Register another kind with one line in ``JUDGES`` (prefix -> ``"module:factory"``, the factory taking
``(arg, **kw)``).
"""

from __future__ import annotations

from typing import Any

from alignkit.judges.base import Judge, JudgeItem, Judgement
from alignkit.judges.ensemble import EnsembleJudge, agreement_summary, fleiss_kappa
from alignkit.judges.likelihood import LikelihoodJudge
from alignkit.judges.llm import VLLMJudge, make_engine
from alignkit.judges.openai_judge import OpenAIJudge
from alignkit.judges.prompts import build_messages, parse_answer
from alignkit.judges.reference import ReferenceJudge
from alignkit.judges.runner import JudgeCache, run_judge
from alignkit.registry import Registry


def _reference(arg: str, **kw: Any) -> Judge:
    if arg:
        raise ValueError(f"the reference judge takes no argument, got 'reference:{arg}'")
    return ReferenceJudge(**kw)


def _ensemble(arg: str, **kw: Any) -> Judge:
    members: dict[str, dict] = kw.pop("members", {}) or {}
    specs = [s.strip() for s in arg.split(",") if s.strip()]
    return EnsembleJudge([get_judge(s, **members.get(s, {})) for s in specs], **kw)


def _vllm(arg: str, **kw: Any) -> Judge:
    return VLLMJudge(arg or None, **kw)


def _likelihood(arg: str, **kw: Any) -> Judge:
    return LikelihoodJudge(arg or None, **kw)


def _openai(arg: str, **kw: Any) -> Judge:
    return OpenAIJudge(arg, **kw)


# spec prefix -> factory ``(arg, **kw) -> Judge`` (alignkit.registry: "module:attr", loaded on first use)
JUDGES = Registry("judge", {
    "reference": "alignkit.judges:_reference",
    "vllm": "alignkit.judges:_vllm",
    "likelihood": "alignkit.judges:_likelihood",
    "openai": "alignkit.judges:_openai",
    "ensemble": "alignkit.judges:_ensemble",
})


def get_judge(spec: str, **kw: Any) -> Judge:
    """Build a judge from ``spec`` (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    if kind not in JUDGES:
        raise ValueError(f"unknown judge {spec!r}; known kinds: {', '.join(sorted(JUDGES))}")
    if kind in ("openai", "ensemble") and not arg:
        raise ValueError(f"judge spec {spec!r} needs an argument: {kind}:...")
    return JUDGES[kind](arg, **kw)


__all__ = [
    "EnsembleJudge", "JUDGES", "Judge", "JudgeCache", "JudgeItem", "Judgement", "LikelihoodJudge", "OpenAIJudge",
    "ReferenceJudge", "VLLMJudge", "agreement_summary", "build_messages", "fleiss_kappa", "get_judge", "make_engine",
    "parse_answer", "run_judge",
]
