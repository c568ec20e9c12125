"""``push_to_hub: true`` for a training run, F-DPO family and F²C alike.

transformers' Trainer pushes the output folder from ``save_model`` — before alignkit writes ``alignkit_config.yaml``
and ``metrics.json``, so those never reached the hub. alignkit therefore does the final push itself, after its own
files are written (:func:`push_run`), and switches the Trainer's push off for that one ``save_model`` call
(:func:`trainer_push_off`), so nothing is pushed twice. What the Trainer pushes *during* training is kept as the
user asked with ``hub_strategy``: ``every_save`` (the default) pushes the output folder at each checkpoint save,
``checkpoint``/``all_checkpoints`` also push the checkpoint folders, ``end`` pushes nothing before the final push.
``Trainer.train`` waits for those pushes before it returns, so none lands after the final one.

The repo is created before the model is loaded (:func:`prepare_repo`): a missing token or an unreachable hub stops
the run in seconds with one line (:class:`alignkit.data.hub_push.HubPushError`), not after hours of training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alignkit import __version__
from alignkit.data.hub_push import create_repo, push_folder
from alignkit.utils import atomic_write_text

# What the final push leaves out, as the Trainer's own push does: checkpoints travel per hub_strategy, "_*" files are
# private working files.
IGNORE_PATTERNS = ["_*", "checkpoint-*"]


def repo_name(training_args: Any) -> str:
    """``hub_model_id``, else the output folder's name (the Trainer's rule)."""
    return training_args.hub_model_id or Path(training_args.output_dir).absolute().name


def prepare_repo(training_args: Any, api: Any = None) -> str:
    """Create (or reuse) the run's model repo before training; returns its full id."""
    from huggingface_hub import HfApi

    return create_repo(api or HfApi(), repo_name(training_args), repo_type="model", token=training_args.hub_token,
                       private=training_args.hub_private_repo, folder=training_args.output_dir)


@contextmanager
def trainer_push_off(trainer: Any) -> Iterator[None]:
    """``save_model`` without the Trainer's "Model save" push (alignkit pushes once its files exist)."""
    args = trainer.args
    before = args.push_to_hub
    args.push_to_hub = False
    try:
        yield
    finally:
        args.push_to_hub = before


def _method(config: dict[str, Any]) -> str:
    if config.get("trainer") == "f2c":
        return "F2C (flip-flop consistency)"
    losses = config.get("loss_type") or []
    return "+".join(losses) if isinstance(losses, list) else str(losses)


def _base_model(config: dict[str, Any]) -> str | None:
    """The base model's hub id for the card's metadata, or None (a local folder or an alignkit alias)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name = config.get("model_name_or_path")
    if not isinstance(name, str) or "/" not in name or Path(name).expanduser().exists():
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def model_card(config: dict[str, Any], metrics: dict[str, Any], repo_id: str, out_dir: str | Path):
    """The README.md pushed with the run: hub metadata (base model, library, tags) and what alignkit recorded —
    the method, the data counts, the final loss and reward accuracy, the label flip."""
    from huggingface_hub import ModelCard, ModelCardData

    adapter = (Path(out_dir) / "adapter_config.json").is_file()
    method = _method(config)
    tags = ["alignkit", "trl", "f2c" if config.get("trainer") == "f2c" else "dpo"]
    tags += [t for t in (config.get("loss_type") or []) if isinstance(t, str) and t not in tags]
    datasets = config.get("dataset_name")
    data = ModelCardData(base_model=_base_model(config), library_name="peft" if adapter else "transformers",
                         tags=tags, datasets=[datasets] if isinstance(datasets, str) else None,
                         pipeline_tag="text-generation")
    final = metrics.get("final", {})
    train = (metrics.get("data") or {}).get("train") or {}
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"Trained with alignkit {__version__}: {method}, "
             f"{'a LoRA adapter on' if adapter else 'fine-tuned from'} `{config.get('model_name_or_path')}`.", "",
             "| | |", "|---|---|",
             f"| training rows | {train.get('n_used')} (read {train.get('n_read')}, rejected "
             f"{train.get('n_rejected')}) from `{train.get('source')}` |",
             f"| steps | {metrics.get('global_step')} on {metrics.get('world_size')} process(es) |"]
    if "loss" in final:
        lines.append(f"| final training loss | {final['loss']:.4g} |")
    for key in sorted(k for k in final if k.startswith("rewards/accuracies")):
        lines.append(f"| {key} (last log) | {final[key]:.4g} |")
    flip = metrics.get("flip")
    if flip:
        lines.append(f"| label flip | {'applied' if flip.get('applied') else 'not applied'}, swapped "
                     f"{flip.get('swapped')} |")
    load = ("from peft import AutoPeftModelForCausalLM\n"
            f"model = AutoPeftModelForCausalLM.from_pretrained({repo_id!r})") if adapter else (
            "from transformers import AutoModelForCausalLM\n"
            f"model = AutoModelForCausalLM.from_pretrained({repo_id!r})")
    lines += ["", "`alignkit_config.yaml` is the resolved recipe (every field, defaults included); `metrics.json` "
              "holds the train metrics, the log history, the data counts and the flip counts.", "",
              "```python", load, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def push_run(training_args: Any, config: dict[str, Any], metrics: dict[str, Any], api: Any = None) -> str:
    """The final push of a finished run (main process, after alignkit's files are written): writes README.md, then
    uploads the output folder without checkpoints; returns the repo id. Raises ``HubPushError`` on failure."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    out_dir = Path(training_args.output_dir)
    repo = prepare_repo(training_args, api)  # exists already (created before training); this gives its full id
    atomic_write_text(out_dir / "README.md", str(model_card(config, metrics, repo, out_dir)))
    return push_folder(out_dir, repo, repo_type="model", token=training_args.hub_token, create=False,
                       revision=training_args.hub_revision, ignore_patterns=IGNORE_PATTERNS, api=api,
                       commit_message=f"alignkit {__version__}: {_method(config)} run, step "
                                      f"{metrics.get('global_step')} (model, alignkit_config.yaml, metrics.json)")
