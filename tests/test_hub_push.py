"""Pushing to the hub without a network: huggingface_hub's ``HfApi`` network methods are replaced by recorders, so
each test inspects exactly what would be uploaded (issue 15, item 4). The real upload to huggingface.co is not run.

- ``alignkit build ... --push-to-hub REPO``: every data file of the build, its card and rejects, and a README.md
  dataset card that ``huggingface_hub.DatasetCard`` parses and ``datasets.load_dataset`` follows;
- ``push_to_hub: true`` in a recipe: alignkit's own files (resolved config, metrics.json) and the adapter are in
  the final upload, which starts only after they exist; the Trainer's checkpoint pushes stay, its "Model save"
  push is gone;
- no token / no network: one clear line, no traceback.
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS, RepoUrl
from huggingface_hub.utils import filter_repo_objects

from alignkit.cli import main
from alignkit.data import write_card, write_jsonl, write_rejects
from alignkit.data.hub_push import HubPushError, build_files, dataset_card, push_dataset


class HubRecorder:
    """Stands in for the hub: records ``create_repo``, ``upload_folder`` and ``create_commit`` calls and, for each
    upload, the files it would send with their content at that moment."""

    def __init__(self, monkeypatch, namespace: str = "me", fail_create: Exception | None = None):
        self.events: list[dict] = []
        rec = self

        def create_repo(api, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **kw):
            rec.events.append({"call": "create_repo", "repo_id": repo_id, "private": private, "repo_type": repo_type,
                               "token": token})
            if fail_create is not None:
                raise fail_create
            full = repo_id if "/" in repo_id else f"{namespace}/{repo_id}"
            return RepoUrl(f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{full}")

        def upload_folder(api, *, repo_id, folder_path, commit_message=None, ignore_patterns=None,
                          allow_patterns=None, path_in_repo=None, run_as_future=False, **kw):
            # the files upload_folder would add: its own listing rule (patterns + its default ignores)
            folder = Path(folder_path)
            rel = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            ignore = list(ignore_patterns or []) + list(DEFAULT_IGNORE_PATTERNS)
            kept = list(filter_repo_objects(rel, allow_patterns=allow_patterns, ignore_patterns=ignore))
            prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
            rec.events.append({"call": "upload_folder", "repo_id": repo_id, "message": commit_message,
                               "files": {prefix + r: (folder / r).read_bytes() for r in kept},
                               "future": run_as_future, "kw": kw})
            if run_as_future:  # the Trainer's checkpoint pushes run in the background and are waited for
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result(None)
                return done
            return None

        def create_commit(api, *, repo_id, operations, commit_message=None, repo_type=None, **kw):
            files = {}
            for op in operations:
                src = op.path_or_fileobj
                files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
            rec.events.append({"call": "create_commit", "repo_id": repo_id, "repo_type": repo_type,
                               "message": commit_message, "files": files})

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)

    def calls(self, name: str) -> list[dict]:
        return [e for e in self.events if e["call"] == name]


def unauthorized() -> HfHubHTTPError:
    """What huggingface_hub raises when the hub refuses a request without a valid token."""
    from httpx2 import Request, Response

    response = Response(401, request=Request("POST", "https://huggingface.co/api/repos/create"))
    return HfHubHTTPError("401 Client Error: Unauthorized for url: https://huggingface.co/api/repos/create",
                          response=response)


# ---- alignkit build --push-to-hub -----------------------------------------------------------------------------


def _build_factworld(tmp_path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "fw"
    code = main(["build", "factworld", "--config", "factworld", "--quiet", "--set", "n_train=8", "--set", "n_test=3",
                 "--set", f"output_dir={out}", *extra])
    return code, out


def test_build_pushes_every_data_file_with_a_dataset_card_that_loads(tmp_path, monkeypatch):
    hub = HubRecorder(monkeypatch)
    code, out = _build_factworld(tmp_path, "--push-to-hub", "me/factworld-small", "--hub-private")
    assert code == 0
    assert [e["call"] for e in hub.events] == ["create_repo", "create_commit"]
    assert hub.events[0]["repo_type"] == "dataset" and hub.events[0]["private"] is True
    commit = hub.calls("create_commit")[0]
    assert commit["repo_type"] == "dataset" and "alignkit" in commit["message"]
    files = commit["files"]
    # every data file and card the build wrote is uploaded, byte for byte
    written = sorted(p.name for p in out.iterdir())
    assert written == ["test.card.json", "test.jsonl", "train.card.json", "train.jsonl"]
    assert sorted(files) == ["README.md", *written]
    assert all(files[name] == (out / name).read_bytes() for name in written)

    card = DatasetCard(files["README.md"].decode())
    meta = card.data.to_dict()
    configs = {c["config_name"]: c["data_files"] for c in meta["configs"]}
    # the pairs and the eval items have different columns: one config each, so load_dataset never mixes them
    assert configs == {"default": [{"split": "train", "path": "train.jsonl"}],
                       "test": [{"split": "test", "path": "test.jsonl"}]}
    assert "alignkit" in meta["tags"] and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-generation"] and "license" not in meta
    assert "| `train.jsonl` | default | train | 8 | 0 | 0 |" in card.text
    assert "| `test.jsonl` | test | test | 3 | 0 | 0 |" in card.text
    assert "ds = load_dataset('me/factworld-small')" in card.text
    assert "ds_test = load_dataset('me/factworld-small', 'test')" in card.text
    assert "alignkit build factworld --config factworld --set n_train=8" in card.text

    # the uploaded files as a local repo folder: datasets follows the card's configs
    from datasets import load_dataset

    repo = tmp_path / "repo"
    repo.mkdir()
    for name, data in files.items():
        (repo / name).write_bytes(data)
    train = load_dataset(str(repo), split="train")
    assert train.num_rows == 8 and {"prompt", "chosen", "rejected", "h_w", "h_l"} <= set(train.column_names)
    assert load_dataset(str(repo), "test", split="test").num_rows == 3


def test_a_single_output_file_pushes_itself_its_sidecars_and_nothing_else(tmp_path, monkeypatch):
    hub = HubRecorder(monkeypatch)
    rows = [{"id": f"r{i}", "prompt": f"Q{i}?", "chosen": "A.", "rejected": "B.", "h_w": i % 2, "h_l": 1,
             "flipped": i == 0} for i in range(5)]
    rejects = [{"line": 7, "field": "h_l", "reason": "must be 0 or 1, got 2"}]
    out = tmp_path / "pairs.jsonl"
    write_jsonl(out, rows)
    write_rejects(out, rejects)
    write_card(out, rows, builder="hallucinate", config={"input": "src/pairs.jsonl", "seed": 3}, rejects=rejects,
               dropped={"limit": 2})
    (tmp_path / "notes.txt").write_text("the user's own file, not part of the build")

    result = push_dataset(out, "me/pairs", license="cc-by-4.0", builder="hallucinate")
    files = hub.calls("create_commit")[0]["files"]
    assert sorted(files) == ["README.md", "pairs.card.json", "pairs.jsonl", "pairs.rejects.jsonl"]
    assert result == {"repo_id": "me/pairs", "files": list(files)}
    card = DatasetCard(files["README.md"].decode())
    assert card.data.license == "cc-by-4.0"
    assert card.data.to_dict()["configs"] == [{"config_name": "default",
                                               "data_files": [{"split": "train", "path": "pairs.jsonl"}]}]
    assert {"dpo", "preference", "alignkit-hallucinate"} <= set(card.data.tags)
    # rows, rejects, drops, flips and the source, all from the alignkit card
    assert "| `pairs.jsonl` | default | train | 5 | 1 | 2 |" in card.text
    assert "h_l: must be 0 or 1, got 2: 1" in card.text and "limit: 2" in card.text
    assert "| `pairs.jsonl` | 0 | 3 | 0 | 2 | 3 | 1 | 0 | 0 |" in card.text  # (0,1)=3 (1,1)=2, Δh=1: 3, flipped 1
    assert "- source: `src/pairs.jsonl`" in card.text and "- seed: 3" in card.text


def test_a_data_file_without_its_alignkit_card_is_refused(tmp_path):
    data = tmp_path / "loose.jsonl"
    write_jsonl(data, [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(FileNotFoundError, match="no dataset card loose.card.json"):
        build_files(data)


def test_splits_in_one_folder_share_the_default_config(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "h_w": 0, "h_l": 1}]
    for split in ("train", "eval"):
        write_jsonl(tmp_path / f"{split}.jsonl", rows * (3 if split == "train" else 2))
        write_card(tmp_path / f"{split}.jsonl", rows, builder="truthfulqa_pairs", config={"seed": 0},
                   extra={"split": split})
    card = dataset_card(build_files(tmp_path), "me/tqa")
    assert card.data.to_dict()["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.jsonl"}, {"split": "eval", "path": "eval.jsonl"}]}]


def test_a_bad_repo_id_stops_before_the_build(tmp_path, monkeypatch, capsys):
    hub = HubRecorder(monkeypatch)
    code, out = _build_factworld(tmp_path, "--push-to-hub", "not a/valid//repo")
    assert code == 2 and not out.exists() and hub.events == []
    assert "--push-to-hub 'not a/valid//repo': not a hub repo id" in capsys.readouterr().err


def test_no_token_is_one_line_naming_the_fix_and_the_files_stay(tmp_path, monkeypatch, capsys):
    HubRecorder(monkeypatch, fail_create=unauthorized())
    code, out = _build_factworld(tmp_path, "--push-to-hub", "me/fw")
    err = capsys.readouterr().err
    assert code == 1 and (out / "train.jsonl").is_file()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "push to the hub failed for dataset repo 'me/fw': no token with write access to this repo" in err
    assert f"hf upload me/fw {out} --repo-type dataset" in err


def test_no_network_is_a_hub_push_error_not_a_traceback(tmp_path, monkeypatch):
    """The real huggingface_hub client in offline mode: the failure it raises becomes HubPushError."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    write_card(tmp_path / "d.jsonl", rows, builder="x", config={})
    with pytest.raises(HubPushError, match="the hub could not be reached") as info:
        push_dataset(tmp_path / "d.jsonl", "me/d", token="hf_not_a_real_token")
    assert isinstance(info.value, OSError)  # the CLI and the training worker report OSErrors as one line


# ---- push_to_hub: true in a recipe ----------------------------------------------------------------------------


def _pairs(path: Path) -> Path:
    rows = [{"prompt": f"Q{i}: what is {i} plus {i + 1}?", "chosen": f" It is {2 * i + 1}.",
             "rejected": f" It is {2 * i + 7}, clearly.", "h_w": i % 2, "h_l": 1 - i % 2} for i in range(8)]
    return write_jsonl(path, rows)


def _recipe(tiny_model: str, tmp_path: Path, **kw) -> dict:
    recipe = {"model_name_or_path": tiny_model, "dataset_path": str(_pairs(tmp_path / "pairs.jsonl")),
              "output_dir": str(tmp_path / "run"), "use_peft": True, "lora_r": 4, "lora_alpha": 8,
              "lora_target_modules": "all-linear", "max_steps": 2, "learning_rate": 1e-3,
              "per_device_train_batch_size": 4, "max_length": 48, "gradient_checkpointing": False,
              "report_to": "none", "logging_steps": 1, "use_cpu": True, "push_to_hub": True,
              "hub_model_id": "me/tiny-fdpo", "hub_private_repo": True, "hub_token": "hf_test_token"}
    recipe.update(kw)
    return recipe


def test_training_pushes_alignkit_files_after_they_are_written(tiny_model, tmp_path, monkeypatch):
    from alignkit.train import train_from_config

    hub = HubRecorder(monkeypatch)
    # a checkpoint at each step: the Trainer's own pushes (hub_strategy every_save) run during training
    result = train_from_config(_recipe(tiny_model, tmp_path, save_strategy="steps", save_steps=1))
    out = tmp_path / "run"
    assert result["hub_repo_id"] == "me/tiny-fdpo"
    # alignkit creates the repo before the model is loaded (first event), with the recipe's token and privacy
    assert hub.events[0] == {"call": "create_repo", "repo_id": "me/tiny-fdpo", "private": True, "repo_type": "model",
                             "token": "hf_test_token"}
    uploads = hub.calls("upload_folder")
    final = uploads[-1]
    assert final["message"].startswith("alignkit ") and "step 2" in final["message"]
    assert not final["future"] and final["kw"]["token"] == "hf_test_token"
    # the checkpoint pushes come before it; the Trainer's "Model save" push does not happen at all
    assert [u["message"] for u in uploads[:-1]] and all(u["message"].startswith("Training in progress")
                                                        for u in uploads[:-1])
    assert not any(u["message"] == "Model save" for u in uploads)
    sent = final["files"]
    for name in ("alignkit_config.yaml", "metrics.json", "adapter_model.safetensors", "adapter_config.json",
                 "README.md", "tokenizer_config.json"):
        assert name in sent, name
    assert not any(name.startswith("checkpoint-") for name in sent)
    # what was sent is the finished run: the files on disk now, written before the push started
    assert sent["metrics.json"] == (out / "metrics.json").read_bytes()
    assert json.loads(sent["metrics.json"])["global_step"] == 2
    config = yaml.safe_load(sent["alignkit_config.yaml"])
    assert config["push_to_hub"] is True and config["hub_token"] != "hf_test_token"  # the token is not published
    card = ModelCard(sent["README.md"].decode())
    assert card.data.library_name == "peft" and "alignkit" in card.data.tags
    assert "AutoPeftModelForCausalLM.from_pretrained('me/tiny-fdpo')" in card.text


def test_training_without_a_token_stops_before_the_model_is_loaded(tiny_model, tmp_path, monkeypatch):
    from alignkit.train import train_from_config

    hub = HubRecorder(monkeypatch, fail_create=unauthorized())
    with pytest.raises(HubPushError, match="no token with write access to this repo") as info:
        train_from_config(_recipe(tiny_model, tmp_path, hub_token=None))
    assert "hf upload me/tiny-fdpo" in str(info.value)
    assert hub.calls("upload_folder") == [] and not (tmp_path / "run" / "metrics.json").exists()


def test_a_recipe_with_a_bad_hub_repo_id_stops_before_launch(tmp_path, tiny_model):
    from alignkit.train import _dataclass_types
    from alignkit.trainers.recipe import check_recipe

    recipe = _recipe(tiny_model, tmp_path, hub_model_id="me/bad name!")
    with pytest.raises(ValueError, match=r"recipe\.yaml:4: field hub_model_id: push_to_hub: 'me/bad name!' is not"):
        check_recipe(recipe, _dataclass_types("fdpo"), source="recipe.yaml", lines={"hub_model_id": 4})
    for trainer in ("fdpo", "f2c"):  # the rule is shared by every trainer's config
        recipe = {"model_name_or_path": tiny_model, "trainer": trainer, "output_dir": str(tmp_path / "a run"),
                  "push_to_hub": True}
        with pytest.raises(ValueError, match="field output_dir: push_to_hub: 'a run'"):
            check_recipe(recipe, _dataclass_types(trainer), check_paths=False)


def test_f2c_training_pushes_the_full_model_with_alignkit_files(tiny_model, tmp_path, monkeypatch):
    """F²C runs through the same run_training: the same final push, here of full weights (no LoRA)."""
    from alignkit.train import train_from_config

    prompt = "Premise: rain fell all night. Was the ground wet in the morning? True or false?"
    rows = [{"id": f"r{i}", "label": 0, "formats": [
        {"name": f"f{j}", "template_id": f"f{j}", "prompt": f"{i}. {prompt}", "choices": ["True", "False"]}
        for j in range(3)]} for i in range(4)]
    data = tmp_path / "consistency.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    hub = HubRecorder(monkeypatch)
    train_from_config({"trainer": "f2c", "model_name_or_path": tiny_model, "dataset_path": str(data),
                       "output_dir": str(tmp_path / "f2c-run"), "per_device_train_batch_size": 1, "max_steps": 1,
                       "learning_rate": 1e-3, "max_length": 96, "report_to": "none", "use_cpu": True,
                       "save_strategy": "no", "push_to_hub": True, "hub_strategy": "end"})
    uploads = hub.calls("upload_folder")
    assert len(uploads) == 1 and uploads[0]["repo_id"] == "me/f2c-run"  # hub_strategy end: only the final push
    sent = uploads[0]["files"]
    assert {"alignkit_config.yaml", "metrics.json", "model.safetensors", "config.json", "README.md"} <= set(sent)
    assert json.loads(sent["metrics.json"])["f2c"]["class_balance"] == "none"
    card = ModelCard(sent["README.md"].decode())
    assert card.data.library_name == "transformers" and "f2c" in card.data.tags
