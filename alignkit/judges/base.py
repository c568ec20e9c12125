"""The judge interface every judge implements (reference match, vLLM LLM judge, OpenAI-compatible HTTP, ensemble).

A judge reads items and returns, per item, a label AND a parse status. Failures are counted by the caller and never
turned into a label silently (the F-DPO reference code maps unparsable answers to 1; alignkit does not).
"""

from __future__ import annotations

import urllib.error
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["ok", "parse_error", "error"]

RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})  # statuses worth retrying later (timeouts, overload)
# exception classes (by name, so the clients need not be installed) of the openai and httpx clients that mean "the
# endpoint did not answer this time", not "the request or the code is wrong"
_TRANSIENT_NAMES = frozenset({"APITimeoutError", "APIConnectionError", "RateLimitError", "InternalServerError",
                              "TimeoutException", "NetworkError", "RemoteProtocolError"})


def is_transient_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient judge failure (timeout, connection error, HTTP 408/425/429/5xx, the openai
    client's equivalents) that a rerun may not meet again. Anything else (a bad request, a bug) is not: callers let
    it propagate instead of turning it into per-item failures."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRY_HTTP or exc.code >= 500
    if isinstance(exc, (TimeoutError, ConnectionError, urllib.error.URLError)):
        return True
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in RETRY_HTTP or status >= 500
    return any(c.__name__ in _TRANSIENT_NAMES for c in type(exc).__mro__)


def is_transient(judgement: "Judgement | dict[str, Any]") -> bool:
    """Whether a judgement records a transient failure: such a result is never cached, so a rerun retries it."""
    d = judgement.as_dict() if isinstance(judgement, Judgement) else judgement
    return d.get("status") == "error" and bool((d.get("detail") or {}).get("transient"))


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
