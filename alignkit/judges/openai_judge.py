"""The OpenAI-compatible HTTP judge (``openai:URL``): chat completions against any endpoint (``vllm serve``, a
hosted API), with retries, backoff and a cap.

The API key is read from an environment variable (``api_key_env``, default ``OPENAI_API_KEY``) at request time
and only ever placed in the Authorization header: it is never stored on the judge, logged, or put in a detail.
Failure handling per item (all counted in ``Judgement.detail["attempts"]`` / ``["failures"]``):

- timeout, connection error, HTTP 408/429/5xx, malformed JSON body -> retry with exponential backoff
  (``backoff * 2**k`` seconds, capped at ``backoff_max``), at most ``max_retries`` retries, then status "error";
- a reply without a clean ``[[label]]`` -> retried ``parse_retries`` times (a flaky endpoint can send garbage
  once), then status "parse_error" with the last raw reply;
- other HTTP 4xx (bad key, bad model) -> status "error" at once: retrying cannot help.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from alignkit.judges.base import RETRY_HTTP, JudgeItem, Judgement
from alignkit.judges.llm import item_messages
from alignkit.judges.prompts import PROMPT_VERSION, Mode, parse_answer

_RETRY_HTTP = RETRY_HTTP


class _Retryable(Exception):
    pass


class _HTTPRefused(RuntimeError):
    """A 4xx answer (bad key, unknown model, bad route): retrying now cannot help. Counted per item and never
    cached (``transient``), so a rerun after fixing the endpoint or key judges the item again."""


def api_base(url: str) -> str:
    base = url.rstrip("/")
    if base.endswith("/chat/completions"):
        base = base[: -len("/chat/completions")]
    return base if base.endswith("/v1") else base + "/v1"


@dataclass
class OpenAIJudge:
    url: str
    model: str | None = None  # None: the first model the endpoint lists under /v1/models
    mode: Mode = "binary"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 4
    parse_retries: int = 1
    backoff: float = 0.5
    backoff_max: float = 8.0
    concurrency: int = 4
    max_tokens: int = 16
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.mode not in ("binary", "rubric"):
            raise ValueError(f"mode must be 'binary' or 'rubric', got {self.mode!r}")
        for f in ("max_retries", "parse_retries"):
            if getattr(self, f) < 0:
                raise ValueError(f"{f} must be >= 0")
        if self.concurrency < 1 or self.timeout <= 0:
            raise ValueError("concurrency must be >= 1 and timeout > 0")
        self.base = api_base(self.url)
        self.name = self.name or f"openai:{self.url}"

    @property
    def cache_key(self) -> str:
        # The model, not the host, identifies the judge: a rerun against the same model on another port resumes.
        return f"openai:{self.resolved_model()}:{self.mode}:{PROMPT_VERSION}:{self.max_tokens}"

    # --- HTTP -------------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _request(self, path: str, body: dict | None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=self._headers(),
                                     method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            if e.code in _RETRY_HTTP:
                raise _Retryable(f"HTTP {e.code}") from None
            raise _HTTPRefused(f"HTTP {e.code} {e.reason}") from None
        except (TimeoutError, socket.timeout):
            raise _Retryable("timeout") from None
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable("timeout") from None
            raise _Retryable(f"connection error: {type(reason).__name__}") from None
        try:
            return json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable("malformed JSON") from None

    def _with_retries(self, fn, failures: list[str]):
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except _Retryable as e:
                failures.append(str(e))
                if attempt == self.max_retries:
                    raise
                time.sleep(min(self.backoff_max, self.backoff * 2 ** attempt))

    def resolved_model(self) -> str:
        if self.model is None:
            failures: list[str] = []
            listing = self._with_retries(lambda: self._request("/models", None), failures)
            try:
                self.model = listing["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise RuntimeError(f"{self.base}/models lists no model; set the judge's model") from None
        return self.model

    def _completion(self, messages: list[dict]) -> str:
        body = {"model": self.resolved_model(), "messages": messages, "temperature": 0.0,
                "max_tokens": self.max_tokens}
        out = self._request("/chat/completions", body)
        try:
            content = out["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Retryable("malformed JSON") from None
        if not isinstance(content, str):
            raise _Retryable("malformed JSON")
        return content

    # --- judging ----------------------------------------------------------------------------------------------
    def judge_one(self, item: JudgeItem) -> Judgement:
        messages = item_messages(item, self.mode)
        failures: list[str] = []  # every failed attempt, transport or parse, in order
        try:
            for _ in range(self.parse_retries + 1):
                text = self._with_retries(lambda: self._completion(messages), failures)
                p = parse_answer(text, self.mode)
                if p.status == "ok":
                    return Judgement(p.label, "ok", score=p.score, raw=text,
                                     detail={"attempts": len(failures) + 1, "failures": failures})
                failures.append(f"parse_error: {p.reason}")
            return Judgement(None, "parse_error", raw=text,
                             detail={"reason": p.reason, "attempts": len(failures), "failures": failures})
        except _Retryable as e:
            return Judgement(None, "error", detail={"reason": f"gave up after {len(failures)} failed attempts: {e}",
                                                    "attempts": len(failures), "failures": failures,
                                                    "transient": True})
        except _HTTPRefused as e:  # anything else (a bug) propagates instead of becoming per-item failures
            return Judgement(None, "error", detail={"reason": str(e), "attempts": len(failures) + 1,
                                                    "failures": failures, "transient": True})

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        if not items:
            return []
        self.resolved_model()
        if self.concurrency == 1:
            return [self.judge_one(it) for it in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.judge_one, items))
