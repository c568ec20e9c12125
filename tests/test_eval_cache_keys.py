"""Caches key on what their results depend on (issue 11, item 4): a model retrained into the same folder is evaluated
again, every task key holds the task's name and version, the judge cache keys on the judge model's content, and the
merged-adapter cache on the base's identity plus the adapter's content. A fake backend stands in for a model: it
counts the calls that reach it, so a cache hit or miss is observed, not inferred."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alignkit.data.cache import ItemCache
from alignkit.evals.tasks import get_task
from alignkit.inference.base import LoglikResult, ModelSpec
from alignkit.utils import folder_fingerprint, model_identity, source_identity

WEIGHTS = "model.safetensors"


def _model_dir(path: Path, weights: bytes = b"w" * 256, config: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or {"model_type": "llama", "hidden_size": 8}))
    (path / WEIGHTS).write_bytes(weights)
    return path


def _retrain(path: Path, weights: bytes) -> None:
    """Overwrite the weights in place (same size), with a modification time that differs from the old one."""
    f = path / WEIGHTS
    old = f.stat().st_mtime_ns
    f.write_bytes(weights)
    os.utime(f, ns=(old + 10**9, old + 10**9))


@pytest.fixture
def big_files_by_stat(monkeypatch):
    """Treat files over 64 bytes as large weights (identified by name, size and mtime, not hashed)."""
    monkeypatch.setattr("alignkit.utils._CONTENT_HASH_MAX", 64)


class FakeBackend:
    """A Backend over a model folder: scores are a function of the folder's weights, every call is counted."""

    name = "fake"

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.scale = (path / WEIGHTS).read_bytes()[0]
        self.loglik_calls = 0
        self.generate_calls = 0

    def loglikelihood(self, requests, *, adapter=None):
        self.loglik_calls += len(requests)
        return [LoglikResult(-float(len(c) * self.scale), False, n_tokens=1) for _, c in requests]

    def generate(self, prompts, sampling, *, adapter=None):
        self.generate_calls += len(prompts)
        return ["The answer is Velmar."] * len(prompts)


def _mc_data(path: Path) -> Path:
    rows = [{"question": f"Question {i}?", "mc1_targets": {"choices": ["yes", "no way"], "labels": [1, 0]},
             "mc2_targets": {"choices": ["yes", "no way"], "labels": [1, 0]}} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_retrained_model_in_the_same_folder_is_evaluated_again(tmp_path, big_files_by_stat):
    model = _model_dir(tmp_path / "run" / "model", weights=b"\x01" * 256)
    task = get_task("truthfulqa_mc", data=str(_mc_data(tmp_path / "mc.jsonl")), progress=False)
    cache_path = tmp_path / "cache.jsonl"
    spec = ModelSpec("m", str(model))

    first = FakeBackend(model)
    r1 = task.run(first, spec, ItemCache(cache_path))
    assert first.loglik_calls == 6  # 3 questions x 2 distinct choices

    same = FakeBackend(model)
    assert task.run(same, spec, ItemCache(cache_path)).items == r1.items and same.loglik_calls == 0

    _retrain(model, b"\x02" * 256)  # same folder, same size, new weights
    retrained = FakeBackend(model)
    r3 = task.run(retrained, spec, ItemCache(cache_path))
    assert retrained.loglik_calls == 6  # a cache miss: the new weights are scored
    assert [it["mc1_logliks"] for it in r3.items] != [it["mc1_logliks"] for it in r1.items]


def test_model_identity_is_by_content(tmp_path, big_files_by_stat):
    a = _model_dir(tmp_path / "a" / "model")
    b = _model_dir(tmp_path / "b" / "model", config={"model_type": "llama", "hidden_size": 16})
    assert folder_fingerprint(a) != folder_fingerprint(b)  # same basename, other config
    before = folder_fingerprint(a)
    (a / "README.md").write_text("notes")  # docs do not change what the model computes
    (a / ".lock").write_text("")
    assert folder_fingerprint(a) == before
    (a / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    assert folder_fingerprint(a) != before  # a new chat template changes the outputs
    assert source_identity("org/hub-model") == {"name": "org/hub-model"} and source_identity(None) is None
    with pytest.raises(FileNotFoundError, match="no model or adapter files"):
        folder_fingerprint(_empty(tmp_path / "empty"))


def _empty(path: Path) -> Path:
    path.mkdir()
    return path


def test_adapter_identity_follows_its_content(tmp_path):
    base = _model_dir(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 100)
    backend = FakeBackend(base)
    ident = model_identity(backend, ModelSpec("x", str(base), str(adapter)))
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in adapter.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert model_identity(backend, ModelSpec("y", str(base), str(copy))) == ident  # a copy is the same adapter
    (adapter / "adapter_model.safetensors").write_bytes(b"b" * 100)  # retrained in place
    assert model_identity(backend, ModelSpec("x", str(base), str(adapter))) != ident


def _consistency_set(path: Path) -> Path:
    rows = [{"id": f"e{i}", "label": i % 2,
             "heldout_formats": [{"name": "f1", "prompt": f"Premise {i}. True?", "choices": ["no", "yes"]},
                                 {"name": "f2", "prompt": f"Is {i} so?", "choices": ["no", "yes"]}]}
            for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_consistency_task_key_holds_its_version(tmp_path, monkeypatch):
    from alignkit.evals.tasks.consistency import PromptConsistency

    model = _model_dir(tmp_path / "model")
    data = _consistency_set(tmp_path / "set.jsonl")
    cache_path = tmp_path / "cache.jsonl"
    spec = ModelSpec("m", str(model))
    b1 = FakeBackend(model)
    get_task("prompt_consistency", data=str(data), progress=False).run(b1, spec, ItemCache(cache_path))
    assert b1.loglik_calls == 12
    b2 = FakeBackend(model)
    get_task("prompt_consistency", data=str(data), progress=False).run(b2, spec, ItemCache(cache_path))
    assert b2.loglik_calls == 0
    monkeypatch.setattr(PromptConsistency, "version", PromptConsistency.version + 1)
    b3 = FakeBackend(model)
    get_task("prompt_consistency", data=str(data), progress=False).run(b3, spec, ItemCache(cache_path))
    assert b3.loglik_calls == 12  # a new version never reads the old version's results


def test_cache_scope_separates_backend_options(tmp_path):
    path = tmp_path / "c.jsonl"
    ItemCache(path, scope={"dtype": "float32"}).put("k", 1)
    assert "k" in ItemCache(path, scope={"dtype": "float32"})
    assert "k" not in ItemCache(path, scope={"dtype": "bfloat16"}) and "k" not in ItemCache(path)


def test_judge_cache_keys_on_the_judge_models_content(tmp_path, big_files_by_stat):
    from alignkit.judges import VLLMJudge

    a = _model_dir(tmp_path / "a" / "judge", weights=b"\x01" * 256)
    b = _model_dir(tmp_path / "b" / "judge", weights=b"\x01" * 200)
    key_a = VLLMJudge(engine=FakeBackend(a)).cache_key
    assert VLLMJudge(engine=FakeBackend(a)).cache_key == key_a
    assert VLLMJudge(engine=FakeBackend(b)).cache_key != key_a  # same folder name, another model
    assert VLLMJudge(engine=FakeBackend(a), mode="rubric").cache_key != key_a
    _retrain(a, b"\x03" * 256)
    assert VLLMJudge(engine=FakeBackend(a)).cache_key != key_a  # a judge retrained in place

    class Opaque:  # an engine that does not say which model it serves is not keyed on its class name
        def generate(self, chats, sampling):
            return ["[[0]]"] * len(chats)

    with pytest.raises(ValueError, match="cannot tell which model"):
        VLLMJudge(engine=Opaque()).cache_key


def test_stance_judge_cache_key_follows_the_judge_model(tmp_path, big_files_by_stat):
    from alignkit.judges.stance import LLMStanceJudge

    a = _model_dir(tmp_path / "judge", weights=b"\x01" * 256)
    key = LLMStanceJudge(FakeBackend(a)).cache_key
    _retrain(a, b"\x02" * 256)
    assert LLMStanceJudge(FakeBackend(a)).cache_key != key


def test_merge_cache_keys_on_base_identity_and_adapter_content(tmp_path, big_files_by_stat):
    from alignkit.models.merge import merge_key

    base = _model_dir(tmp_path / "base" / "model", weights=b"\x01" * 256)
    other = _model_dir(tmp_path / "other" / "model", weights=b"\x01" * 300)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 100)
    key = merge_key(adapter, str(base))
    assert merge_key(adapter, str(other)) != key  # same basename "model", another base
    _retrain(base, b"\x02" * 256)
    assert merge_key(adapter, str(base)) != key  # the base retrained in place
    retrained_key = merge_key(adapter, str(base))
    (adapter / "adapter_model.safetensors").write_bytes(b"b" * 100)
    assert merge_key(adapter, str(base)) != retrained_key


def test_judge_key_is_by_content_not_path(tmp_path):
    from alignkit.judges import VLLMJudge

    a = _model_dir(tmp_path / "a" / "judge")
    copy = _model_dir(tmp_path / "copy-of-judge")
    assert VLLMJudge(engine=FakeBackend(a)).cache_key == VLLMJudge(engine=FakeBackend(copy)).cache_key


def test_hub_id_is_identified_by_its_cached_snapshot(tmp_path, monkeypatch):
    """A hub id that the local HF cache holds is keyed on that snapshot's content: a new revision is a new model."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--org--judge"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))

    def snapshot(rev: str, weights: bytes) -> None:
        _model_dir(repo / "snapshots" / rev, weights=weights)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(rev)

    snapshot("a" * 40, b"\x01" * 64)
    first = source_identity("org/judge")
    assert first["name"] == "org/judge" and "fingerprint" in first
    snapshot("b" * 40, b"\x02" * 64)
    assert source_identity("org/judge") != first
