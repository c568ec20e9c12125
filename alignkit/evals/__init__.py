"""The evaluation suite: backends (vLLM, transformers), tasks registered by name, metrics, and report writing."""
