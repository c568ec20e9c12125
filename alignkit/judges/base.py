"""The judge interface every judge implements (reference match, vLLM LLM judge, OpenAI-compatible HTTP, ensemble).

A judge reads items and returns, per item, a label AND a parse status. Failures are counted by the caller and never
turned into a label silently (the F-DPO reference code maps unparsable answers to 1; alignkit does not).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["ok", "parse_error", "error"]


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge. ``reference_true``/``reference_false`` are gold answers when the data has them
    (fact world, TruthfulQA); ``context`` is the grounding passage for grounded QA."""

    prompt: str
    response: str
    reference_true: tuple[str, ...] = ()
    reference_false: tuple[str, ...] = ()
    context: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Judgement:
    """``label``: 1 hallucinated, 0 factual, None when the judge failed (status != "ok").
    ``score``: the 0–10 factuality rubric score when the judge produces one (10 = completely correct)."""

    label: int | None
    status: Status = "ok"
    score: float | None = None
    raw: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Judge(Protocol):
    name: str

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        """Judge a batch; returns one Judgement per item, in order."""
        ...
