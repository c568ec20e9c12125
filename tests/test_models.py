"""Model resolution: the embedded default answers a real question; names, paths and hub ids resolve correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.models import build_tiny_llama, resolve_model
from alignkit.models.resolve import DEFAULT_MODEL, _is_complete


def test_embedded_model_answers_capital_of_france(embedded_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert _is_complete(Path(embedded_model))
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text


def test_embedded_model_is_cached_and_reused(embedded_model):
    before = (Path(embedded_model) / "model.safetensors").stat().st_mtime_ns
    again = resolve_model(DEFAULT_MODEL.upper())  # names are case-insensitive
    assert again == embedded_model
    assert (Path(again) / "model.safetensors").stat().st_mtime_ns == before
    config = json.loads((Path(again) / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30


def test_embedded_build_is_atomic_and_in_alignkit_home(tmp_path, monkeypatch, embedded_model):
    # A fresh ALIGNKIT_HOME builds from the GGUF into a complete dir and leaves no temp dirs behind.
    monkeypatch.setenv("ALIGNKIT_HOME", str(tmp_path))
    path = Path(resolve_model(DEFAULT_MODEL))
    assert path.parent == tmp_path / "models" and _is_complete(path)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(f".{DEFAULT_MODEL}.") and p.is_dir()] == []


def test_local_dir_and_hub_id_pass_through(tiny_model):
    assert resolve_model(tiny_model) == str(Path(tiny_model).resolve())
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("bad, exc, msg", [
    ("not-a-model", ValueError, "unknown model 'not-a-model'"),
    ("./does/not/exist", FileNotFoundError, "does not exist"),
    ("/no/such/dir/model", FileNotFoundError, "does not exist"),
])
def test_bad_model_names_are_clear_errors(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        resolve_model(bad)


def test_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a model"):
        resolve_model(str(tmp_path))


def test_tiny_llama_shape(tiny_model):
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model)
    assert cfg.num_hidden_layers == 2 and cfg.hidden_size // cfg.num_attention_heads == 64
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert cfg.vocab_size == len(tok) and tok.chat_template
    assert build_tiny_llama() == Path(tiny_model)  # cached
