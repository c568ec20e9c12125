"""Tiny random Llama models for fast tests, built from a config around the real SmolLM2 tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

from alignkit.models.resolve import DEFAULT_MODEL, _file_lock, _is_complete, embedded_model_dir, models_dir
from alignkit.utils import atomic_dir


def build_tiny_llama(out_dir: str | os.PathLike | None = None, *, hidden_size: int = 128, num_layers: int = 2,
                     num_heads: int = 2, intermediate_size: int = 256, seed: int = 0,
                     tokenizer_from: str = DEFAULT_MODEL) -> Path:
    """Build (once) a random LlamaForCausalLM with head_dim = hidden/heads (64 by default: vLLM's CPU attention
    rejects 16) and the SmolLM2 tokenizer and chat template. Cached by its shape and seed."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    name = f"tiny-llama-h{hidden_size}-l{num_layers}-a{num_heads}-i{intermediate_size}-s{seed}"
    out = Path(out_dir) if out_dir else models_dir() / name
    if _is_complete(out):
        return out
    with _file_lock(out.parent / f".{out.name}.lock"):
        if _is_complete(out):
            return out
        tok = AutoTokenizer.from_pretrained(
            embedded_model_dir(tokenizer_from) if tokenizer_from == DEFAULT_MODEL else tokenizer_from)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
            max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, tie_word_embeddings=True, torch_dtype="float32",
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    return out
