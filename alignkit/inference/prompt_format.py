"""How an eval prompt becomes text for the model: the chat template, a system prompt, or no template at all.

Set per suite (or per model in a suite's ``models:`` section) with ``chat_template``, ``system_prompt`` and
``apply_chat_template``; every backend encodes through :meth:`PromptFormat.encode_prompt` and
:meth:`PromptFormat.encode_pair`, so generation and log-likelihood see the same rules on vLLM and HF:

``apply_chat_template`` unset (the default, unchanged behaviour)
    a chat prompt (a list of messages) goes through the chat template; a plain string prompt and a log-likelihood
    context are used as written.
``apply_chat_template: true``
    string prompts and log-likelihood contexts are also sent as one user turn through the template (what
    lm-evaluation-harness's ``--apply_chat_template`` does); the continuation follows the rendered assistant header.
``apply_chat_template: false``
    no template anywhere: a chat is sent as its message contents joined by a blank line.

``chat_template`` (Jinja text) replaces the tokenizer's own template. ``system_prompt`` becomes the first (system)
message of a templated chat, placed before a system message the task already has (joined by a blank line), or,
without a template, the first paragraph of the raw text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from alignkit.inference.base import Chat, Prompt

PARAGRAPH = "\n\n"  # joins the system prompt and the messages when no template is applied


@dataclass(frozen=True)
class PromptFormat:
    chat_template: str | None = None  # Jinja text (a suite's path is read by the suite loader); None: the model's own
    system_prompt: str | None = None
    apply_chat_template: bool | None = None  # None: chats only; True: every prompt and context; False: none

    def __post_init__(self) -> None:
        if self.apply_chat_template is False and self.chat_template is not None:
            raise ValueError("chat_template is set but apply_chat_template is false: no template would be used")
        if self.chat_template is not None and not self.chat_template.strip():
            raise ValueError("chat_template is empty")

    @property
    def is_default(self) -> bool:
        return self == PromptFormat()

    def identity(self) -> dict[str, Any] | None:
        """What cached results depend on (``None`` for the default format, so earlier caches stay valid)."""
        if self.is_default:
            return None
        return {"chat_template_sha256": template_hash(self.chat_template), "system_prompt": self.system_prompt,
                "apply_chat_template": self.apply_chat_template}

    # -- rendering ------------------------------------------------------------------------------------------------
    def _with_system(self, chat: Chat) -> Chat:
        if not self.system_prompt:
            return list(chat)
        if chat and chat[0].get("role") == "system":
            return [{**chat[0], "content": self.system_prompt + PARAGRAPH + chat[0]["content"]}, *chat[1:]]
        return [{"role": "system", "content": self.system_prompt}, *chat]

    def _template(self, tokenizer: Any, chat: Chat) -> str:
        kwargs = {"chat_template": self.chat_template} if self.chat_template is not None else {}
        return tokenizer.apply_chat_template(self._with_system(chat), tokenize=False, add_generation_prompt=True,
                                             **kwargs)

    def _raw(self, text: str) -> str:
        return self.system_prompt + PARAGRAPH + text if self.system_prompt else text

    def render(self, tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
        """``(text, templated)``: the text the model sees for ``prompt`` and whether a chat template wrote it (then
        it already holds the special tokens, so it is encoded without adding more)."""
        if isinstance(prompt, str):
            if self.apply_chat_template:
                return self._template(tokenizer, [{"role": "user", "content": prompt}]), True
            return self._raw(prompt), False
        if not isinstance(prompt, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                   for m in prompt):
            raise TypeError(f"a prompt must be a string or a list of {{'role', 'content'}} messages, "
                            f"got {type(prompt)!r}")
        if self.apply_chat_template is False:
            return PARAGRAPH.join(m["content"] for m in self._with_system(prompt)), False
        return self._template(tokenizer, prompt), True

    def encode_prompt(self, tokenizer: Any, prompt: Prompt) -> list[int]:
        """Token ids of one generation prompt."""
        text, templated = self.render(tokenizer, prompt)
        return list(tokenizer.encode(text, add_special_tokens=not templated))

    def encode_pair(self, tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) the lm-evaluation-harness way (``_encode_pair`` for causal models):
        trailing whitespace of the context moves to the continuation, context and context+continuation are
        encoded alone, the continuation is the tail of the whole. An empty raw context is conditioned on BOS (EOS
        when there is none), as the harness does."""
        if self.system_prompt or self.apply_chat_template:
            context, templated = self.render(tokenizer, context)
        else:
            templated = False
        if not context:
            prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            return [prefix], list(tokenizer.encode(continuation))
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        special = not templated
        whole = list(tokenizer.encode(context + continuation, add_special_tokens=special))
        ctx = list(tokenizer.encode(context, add_special_tokens=special))
        return ctx, whole[len(ctx):]


DEFAULT_FORMAT = PromptFormat()


def template_hash(text: str | None) -> str | None:
    """sha256 of a chat template's text (``None`` for none); the same hash the provenance block records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None


def as_prompt_format(value: "PromptFormat | dict[str, Any] | None") -> PromptFormat:
    """A backend's ``prompt_format`` option: a :class:`PromptFormat`, its fields as a mapping, or ``None``."""
    if value is None:
        return DEFAULT_FORMAT
    if isinstance(value, PromptFormat):
        return value
    if isinstance(value, dict):
        return PromptFormat(**value)
    raise TypeError(f"prompt_format must be a PromptFormat or a mapping, got {type(value).__name__}")
