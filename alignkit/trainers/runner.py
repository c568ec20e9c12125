"""One run for every trainer (:func:`run_training`): read the recipe's data, build the trainer, train (resuming), save.

Output folder, the same for every trainer: the model or LoRA adapter (+ tokenizer), ``alignkit_config.yaml`` (the
resolved recipe) and ``metrics.json`` (train metrics, per-step log history, data counts, resume point, peak memory and
the trainer's own keys; the layout is listed in :func:`run_training`). With ``push_to_hub`` the folder is pushed
last, once those files exist (:mod:`alignkit.trainers.hub_push`).

Resume: every checkpoint stores a fingerprint of the resolved config (minus :data:`RESUME_SAFE_FIELDS`, plus a hash
of the training rows) in its ``trainer_state.json``. A rerun resumes from the newest complete checkpoint only when
its fingerprint matches; otherwise it stops, listing the changed fields, before any model is loaded. ``overwrite``
(``alignkit train --overwrite``) deletes the checkpoints and starts over; ``resume`` (``--resume``) continues from
the checkpoint regardless.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from alignkit.trainers.distributed import init_deepspeed_comm
from alignkit.trainers.handbook import hub_splits
from alignkit.utils import atomic_write_json, atomic_write_text, stable_hash

logger = logging.getLogger(__name__)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders that were fully written, oldest first.

    The HF Trainer writes ``trainer_state.json`` last, so a folder whose state file is missing or does not parse was
    cut off mid-save (a kill or a full disk) and must not be resumed from."""
    done = []
    for d in Path(output_dir).glob("checkpoint-*"):
        step = d.name.split("-", 1)[1]
        if not (d.is_dir() and step.isdigit()):
            continue
        try:
            state = json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s (no readable trainer_state.json)", d)
            continue
        if state.get("global_step") == int(step):
            done.append(d)
    return sorted(done, key=lambda d: int(d.name.split("-", 1)[1]))


def resolve_checkpoint(resume: str | None, output_dir: str) -> str | None:
    """``resume_from_checkpoint``: a path, or ``last``/``true``/``auto`` for the newest complete one; unset = the
    newest complete one if the output folder has any (reruns resume)."""
    if resume and resume.lower() not in ("last", "true", "auto"):
        return resume
    done = complete_checkpoints(output_dir) if Path(output_dir).is_dir() else []
    last = str(done[-1]) if done else None
    if resume and last is None:
        logger.warning("resume_from_checkpoint=%s but %s holds no checkpoint; starting fresh", resume, output_dir)
    return last


# Fields that may differ between a run and its resume without changing what is trained: where and how the run
# reports, the checkpoint and evaluation cadence (evaluation never updates the weights), the resume controls
# themselves, and process-local loader settings. Every other resolved field, and the training rows, must match.
RESUME_SAFE_FIELDS = frozenset({
    "output_dir", "run_name", "project", "report_to", "disable_tqdm", "trackio_space_id",
    "per_device_eval_batch_size", "eval_dataset_path", "eval_split", "max_eval_samples", "train_set_rewards",
    "resume_from_checkpoint", "overwrite", "resume", "restore_callback_states_from_checkpoint",
    "local_rank", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor",
})
RESUME_SAFE_PREFIXES = ("logging_", "log_", "save_", "eval_", "hub_", "push_to_hub")
FINGERPRINT_STATE = "AlignkitConfigFingerprint"  # key under trainer_state.json's stateful_callbacks


def fingerprint_config(config: dict[str, Any], data_fingerprint: str | None = None) -> dict[str, Any]:
    """The part of a resolved config (:func:`resolved_config`) that a resumed run must share with its checkpoint."""
    out = {k: v for k, v in config.items()
           if k not in RESUME_SAFE_FIELDS and not k.startswith(RESUME_SAFE_PREFIXES)}
    if data_fingerprint is not None:
        out["training_rows"] = data_fingerprint  # the same recipe over a rebuilt data file is another run
    return out


def rows_fingerprint(dataset) -> str | None:
    """A content hash of the training rows as they reach the trainer (None for a streamed dataset)."""
    from datasets import Dataset

    return stable_hash(dataset.to_dict()) if isinstance(dataset, Dataset) else None


class AlignkitConfigFingerprint(TrainerCallback, ExportableState):
    """Stores the run's config fingerprint in every checkpoint's ``trainer_state.json`` (``stateful_callbacks``).

    Written by the Trainer together with the rest of the state file, which it writes last: a checkpoint that
    :func:`complete_checkpoints` accepts always carries its fingerprint."""

    def __init__(self, fingerprint: str, config: dict[str, Any]):
        self.fingerprint, self.config = fingerprint, config

    def state(self) -> dict:
        return {"args": {"fingerprint": self.fingerprint, "config": self.config}, "attributes": {}}


def fingerprint_callback(config: dict[str, Any]) -> AlignkitConfigFingerprint:
    plain = _plain(config)
    return AlignkitConfigFingerprint(stable_hash(plain), plain)


def checkpoint_fingerprint(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``{"fingerprint", "config"}`` a checkpoint was saved with, or None (saved by something else)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    stored = (state.get("stateful_callbacks") or {}).get(FINGERPRINT_STATE)
    if isinstance(stored, list):  # several instances: the Trainer keeps a list; the last is the current one
        stored = stored[-1]
    return stored.get("args") if isinstance(stored, dict) else None


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: OLD -> NEW`` for every field whose value differs (absent shown as <unset>)."""
    unset = object()

    def show(v: Any) -> str:
        return "<unset>" if v is unset else repr(v)

    return [f"{k}: {show(old.get(k, unset))} -> {show(new.get(k, unset))}"
            for k in sorted(set(old) | set(new)) if old.get(k, unset) != new.get(k, unset)]


def check_resume(checkpoint: str | Path, config: dict[str, Any], *, force: bool = False) -> list[str]:
    """Raise ``ValueError`` unless ``checkpoint`` was saved with the fingerprint ``config`` (``force``: return the
    differences instead, so the caller can log them)."""
    stored = checkpoint_fingerprint(checkpoint)
    config = _plain(config)
    name = Path(checkpoint).name
    how = ("Rerun with --overwrite (recipe: overwrite: true) to delete the checkpoints and start over, or with "
           f"--resume (resume: true) to continue from {name} regardless.")
    if stored is None:
        changes = [f"{name} carries no alignkit config fingerprint (saved by another tool or an older alignkit)"]
    elif stored.get("fingerprint") == stable_hash(config):
        return []
    else:
        changes = config_changes(stored.get("config") or {}, config)
    if force:
        return changes
    listed = "\n".join(f"  {c}" for c in changes)
    raise ValueError(f"{Path(checkpoint).parent} holds {name} of a run with another configuration:\n{listed}\n{how}")


def start_over(output_dir: str | Path) -> list[Path]:
    """Delete the checkpoints and the run files of an earlier run in ``output_dir`` (``overwrite``)."""
    out = Path(output_dir)
    gone = [d for d in out.glob("checkpoint-*") if d.is_dir()] if out.is_dir() else []
    for d in gone:
        shutil.rmtree(d)
    for name in ("metrics.json", "alignkit_config.yaml"):
        (out / name).unlink(missing_ok=True)
    return gone


def peak_memory() -> dict[str, float | None]:
    """This process's peak host RSS and (on CUDA) peak allocated device memory, in MiB."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mib": round(rss, 1), "peak_memory_mib": None if gpu is None else round(gpu, 1)}


# ZeRO-3 settings accelerate's plugin leaves at DeepSpeed's defaults, absolute element counts sized for multi-billion-
# parameter models (a 5e8-element gradient bucket, 5e7-element prefetch, 1e5-element persistence threshold). The
# bucket is what costs memory: on a model below 5e8 parameters every gradient collects in it, unsharded, before one
# reduce-scatter of the whole model, which then makes its own flat copies; each rank's peak was there. Measured, 2 CPU
# ranks, F-DPO, 3 steps, per-rank peak MiB: 51M random Llama, ZeRO-3 2346/2332 and 2374/2340 with the defaults,
# 2013/1979 with these (DDP 1984/1964); 76M, 3176/3134 -> 2793/2721 (DDP 2631/2605). The values are the ones
# transformers and accelerate give these keys when a DeepSpeed config says "auto" (they resolve only "auto", so a
# config without the keys kept DeepSpeed's). They change how gradients and parameters travel, never a value. A key
# the user's DeepSpeed config sets is left as it is.
def zero3_sizes(hidden_size: int) -> dict[str, int]:
    return {"reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size}


def apply_zero3_sizes(training_args: Any, model_path: str, **config_kwargs: Any) -> dict[str, int]:
    """Fill :func:`zero3_sizes` into the run's ZeRO-3 config where the user's config leaves a key unset (before the
    trainer builds the DeepSpeed engines, policy and reference model alike); returns the keys it set."""
    plugin = getattr(training_args, "deepspeed_plugin", None)
    zero = (plugin.deepspeed_config or {}).get("zero_optimization", {}) if plugin is not None else {}
    if int(zero.get("stage", 0) or 0) != 3:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, **config_kwargs)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(config, "hidden_size", None)
    if not hidden:
        return {}
    added = {k: v for k, v in zero3_sizes(int(hidden)).items() if k not in zero}
    zero.update(added)
    return added


def _plain(obj: Any) -> Any:
    """JSON/YAML-safe copy (enums, paths, dtypes become strings)."""
    return json.loads(json.dumps(obj, default=str))


def resolved_config(script_args, training_args, model_args) -> dict:
    from dataclasses import asdict

    out = {**asdict(script_args), **asdict(model_args), **training_args.to_dict()}
    return _plain(out)


def _is_f2c(training_args: Any) -> bool:
    from alignkit.trainers.f2c_config import F2CConfig

    return isinstance(training_args, F2CConfig)


def _check_f2c_args(script_args: Any, training_args: Any, model_args: Any) -> None:
    """What an F²C recipe cannot combine, found before any data or model is read."""
    from trl import get_quantization_config

    if script_args.on_invalid != "error":
        raise ValueError("on_invalid: F2C reads consistency sets strictly; only 'error' is supported")
    if getattr(script_args, "uses_hub_data", False):
        raise ValueError("dataset_name / dataset_mixture: F2C trains on a consistency set (dataset_path) only")
    if get_quantization_config(model_args) is not None and not model_args.use_peft:
        raise ValueError("load_in_4bit/load_in_8bit train only adapters: set use_peft: true")
    if training_args.class_balance != "none" and training_args.deepspeed:
        raise ValueError("class_balance scores the base model outside the DeepSpeed engine; use DDP (or no "
                         "class_balance) with DeepSpeed")


def _consistency_data(script_args: Any, training_args: Any, out_dir: Path, main: bool,
                      ) -> tuple[list, dict, list | None, dict | None, str]:
    """F²C's (train, train info, dev, dev info, rows fingerprint); the info dicts have :func:`load_split`'s keys.
    Nothing is written (``out_dir`` and ``main`` keep the signature of :func:`_preference_data`)."""
    from alignkit.trainers.data import consistency_dev_split, load_consistency_set

    train = load_consistency_set(script_args.dataset_path, training_args, script_args.dataset_split or "train")
    n_read = len(train)
    if script_args.max_train_samples:
        train = train[: script_args.max_train_samples]
    train, dev = consistency_dev_split(script_args, training_args, train)
    if training_args.early_stopping_patience and dev is None:
        raise ValueError("early_stopping_patience needs a dev set: set eval_dataset_path or dev_examples")
    if dev is not None and str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) == "no":
        raise ValueError("a dev set is given (eval_dataset_path or dev_examples) but eval_strategy is 'no': set "
                         "eval_strategy: steps and eval_steps, or drop the dev set")
    train_info = {"source": script_args.dataset_path, "n_read": n_read, "n_used": len(train), "n_rejected": 0}
    dev_info = None if dev is None else {
        "source": script_args.eval_dataset_path or f"last {len(dev)} of {script_args.dataset_path}",
        "n_read": len(dev), "n_used": len(dev), "n_rejected": 0}
    return train, train_info, dev, dev_info, stable_hash(train)


def _f2c_model(model_path: str, training_args: Any, model_args: Any):
    """The F²C policy: the causal LM (quantized and/or wrapped for LoRA as the recipe asks)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_peft_config, get_quantization_config

    quantization = get_quantization_config(model_args)
    dtype = getattr(model_args, "dtype", None)
    model_kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype) if dtype not in (None, "auto") else "auto",
                                    "trust_remote_code": bool(getattr(model_args, "trust_remote_code", False)),
                                    "revision": getattr(model_args, "model_revision", None)}
    if getattr(model_args, "attn_implementation", None):
        model_kwargs["attn_implementation"] = model_args.attn_implementation
    if quantization is not None:
        from accelerate import PartialState

        # bitsandbytes places the quantized weights at load time: each process on its own GPU.
        device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
        model_kwargs.update(quantization_config=quantization, device_map=device_map)
    model = AutoModelForCausalLM.from_pretrained(model_path, **model_kwargs)
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quantization is not None:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=training_args.gradient_checkpointing)
        model = get_peft_model(model, peft_config)
    return model


def _resume_point(script_args: Any, training_args: Any, fp_config: dict[str, Any], out_dir: Path,
                  main: bool) -> str | None:
    """The checkpoint to resume from (None: start fresh), after ``overwrite`` and the fingerprint check."""
    if getattr(script_args, "overwrite", False):
        if main:
            gone = start_over(out_dir)
            if gone:
                logger.warning("overwrite: deleted %d checkpoint(s) in %s; starting over", len(gone), out_dir)
        return None
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, str(out_dir))
    if checkpoint:
        changes = check_resume(checkpoint, fp_config, force=getattr(script_args, "resume", False))
        if changes and main:
            logger.warning("resume: continuing from %s although its configuration differs:\n%s", checkpoint,
                           "\n".join(f"  {c}" for c in changes))
        if main:  # once, not once per rank
            logger.warning("resuming from %s", Path(checkpoint).name)
    return checkpoint


def run_training(script_args: Any, training_args: Any, model_args: Any, callbacks: list | None = None) -> dict:
    """Train one recipe, F-DPO family (``FDPOConfig``) or F²C (``F2CConfig``), and write the output folder; returns
    the metrics dict plus ``output_dir``. ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. to
    stop early).

    Both trainers share: the data read before any model (F-DPO: validated preference pairs, hub splits included;
    F²C: a consistency set), the resume decision (:func:`check_resume`), the saved model or adapter + tokenizer,
    ``alignkit_config.yaml`` and one ``metrics.json`` layout — ``train`` (the Trainer's train metrics), ``final``
    (the last training log entry), ``log_history``, ``data`` (``train``/``eval``: source, rows read/used/rejected),
    ``resumed_from``, ``global_step``, ``world_size``, ``peak_rss_mib``, ``peak_memory_mib``, ``eval`` (F-DPO with
    an eval set: a final evaluation) — plus the trainer's own keys: F-DPO ``flip``, ``flip_counts`` (and
    ``train_set_rewards`` when asked); F²C ``f2c`` (collapse events, early stopping, class balance)."""
    init_deepspeed_comm()  # before any model is loaded (ZeRO-3 zero.Init)
    from alignkit.models import resolve_model

    f2c = _is_f2c(training_args)
    out_dir = Path(training_args.output_dir)
    main = training_args.process_index == 0
    if f2c:
        _check_f2c_args(script_args, training_args, model_args)
    load_data = _consistency_data if f2c else _preference_data
    train_ds, train_info, eval_ds, eval_info, rows_fp = load_data(script_args, training_args, out_dir, main)

    # Decide about resuming before any model is loaded, so a mismatch stops in seconds.
    fp_config = fingerprint_config(resolved_config(script_args, training_args, model_args), rows_fp)
    checkpoint = _resume_point(script_args, training_args, fp_config, out_dir, main)
    callbacks = [*(callbacks or []), fingerprint_callback(fp_config)]
    if training_args.push_to_hub and main:
        from alignkit.trainers.hub_push import prepare_repo

        prepare_repo(training_args)  # no token / no network: one line now, not after training

    model_path = resolve_model(model_args.model_name_or_path)
    zero3_set = apply_zero3_sizes(training_args, model_path, revision=getattr(model_args, "model_revision", None),
                                  trust_remote_code=bool(getattr(model_args, "trust_remote_code", False)))
    if zero3_set and main:
        logger.warning("ZeRO-3: sized by the model's hidden size (unset in the DeepSpeed config): %s", zero3_set)
    build = _build_f2c if f2c else _build_fdpo
    built = build(model_path, training_args, model_args, train_ds, eval_ds, callbacks)
    trainer = built.trainer

    result = trainer.train(resume_from_checkpoint=checkpoint)
    from alignkit.trainers.hub_push import trainer_push_off

    with trainer_push_off(trainer):  # push_to_hub: alignkit pushes below, once its own files are written
        trainer.save_model(str(out_dir))  # adapter under PEFT; gathered full weights under ZeRO-3

    metrics: dict[str, Any] = {
        "train": result.metrics,
        "final": next((h for h in reversed(trainer.state.log_history) if "loss" in h), {}),
        "log_history": trainer.state.log_history,
        "data": {"train": train_info, "eval": eval_info},
        "resumed_from": checkpoint,
        "global_step": trainer.state.global_step,
        "world_size": trainer.accelerator.num_processes,
        **peak_memory(),
        **built.metrics(),
    }
    metrics = _plain(metrics)
    if trainer.accelerator.is_main_process:
        if built.save_tokenizer:
            built.tokenizer.save_pretrained(str(out_dir))
        config = resolved_config(script_args, training_args, model_args)
        config["model_path_resolved"] = model_path
        atomic_write_text(out_dir / "alignkit_config.yaml", yaml.safe_dump(config, sort_keys=True))
        atomic_write_json(out_dir / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    hub = {}
    if training_args.push_to_hub and trainer.accelerator.is_main_process:
        from alignkit.trainers.hub_push import push_run

        hub["hub_repo_id"] = push_run(training_args, config, metrics)  # after every file above exists
    return {**metrics, **hub, "output_dir": str(out_dir.resolve())}


@dataclass
class _Built:
    """A trainer family's part of a run: the trainer, its tokenizer, and its own metrics.json keys (read after
    training)."""

    trainer: Any
    tokenizer: Any
    metrics: Callable[[], dict[str, Any]]
    save_tokenizer: bool = False


def _build_f2c(model_path: str, training_args: Any, model_args: Any, train_ds: Any, eval_ds: Any,
               callbacks: list) -> _Built:
    """The F²C trainer, with dev-loss early stopping and the class quota when the recipe asks; its metrics: ``f2c``
    (collapse events, early stopping, class balance)."""
    from transformers import AutoTokenizer

    from alignkit.trainers.f2c_trainer import DevLossEarlyStopping, F2CTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=bool(
        getattr(model_args, "trust_remote_code", False)), revision=getattr(model_args, "model_revision", None))
    stopper = None
    if training_args.early_stopping_patience:
        stopper = DevLossEarlyStopping(training_args.early_stopping_patience, training_args.early_stopping_min_steps)
        callbacks.append(stopper)
    trainer = F2CTrainer(model=_f2c_model(model_path, training_args, model_args), args=training_args,
                         train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                         callbacks=callbacks)
    base_shares = None
    if training_args.class_balance == "quota":
        from alignkit.losses.f2c import ClassQuota

        # Measured before train(): a resumed run loads its checkpoint inside train(), so this is the base.
        base_shares = trainer.predicted_class_shares(train_ds[: training_args.class_balance_examples])
        trainer.quota = ClassQuota(base_shares)
        logger.warning("class_balance=quota (alignkit's addition, not F2C): base model class shares %s",
                       [round(x, 3) for x in base_shares])

    def metrics() -> dict[str, Any]:
        return {"f2c": {
            "collapse_events": trainer.collapse_events,
            "early_stopping": None if stopper is None else {
                "stopped_at": stopper.stopped_at, "best_dev_loss": stopper.best, "best_step": stopper.best_step},
            "class_balance": training_args.class_balance, "base_class_shares": base_shares,
            "quota_counts": None if trainer.quota is None else trainer.quota.counts}}

    return _Built(trainer, tokenizer, metrics, save_tokenizer=True)


def _build_fdpo(model_path: str, training_args: Any, model_args: Any, train_ds: Any, eval_ds: Any,
                callbacks: list) -> _Built:
    """The F-DPO-family trainer (TRL's DPOTrainer underneath); its metrics: ``flip_counts``, ``flip``, ``eval`` (a
    final evaluation when there is an eval set) and ``train_set_rewards`` when asked."""
    from transformers import AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from alignkit.trainers.fdpo_trainer import FDPOTrainer

    if training_args.model_init_kwargs is None:
        training_args.model_init_kwargs = {
            k: v for k, v in {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation,
                              "revision": model_args.model_revision}.items() if v is not None}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=training_args.trust_remote_code)
    except OSError as exc:  # hub errors often do not say which model they were fetching
        raise OSError(f"field model_name_or_path: cannot load {model_path}: {exc}") from exc
    trainer = FDPOTrainer(
        model=model_path, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args), callbacks=callbacks)

    def metrics() -> dict[str, Any]:
        out: dict[str, Any] = {"flip_counts": getattr(trainer, "flip_counts", {}),
                               # whether the F-DPO label flip ran on the data and how many rows it swapped per split
                               "flip": {"applied": bool(getattr(training_args, "apply_flip", False)),
                                        "swapped": getattr(trainer, "flip_counts", {})}}
        # F²C's dev loss is logged during training (early stopping reads it); F-DPO evaluates once at the end
        if eval_ds is not None:
            out["eval"] = trainer.evaluate()
        if getattr(training_args, "train_set_rewards", False):
            out["train_set_rewards"] = trainer.train_set_rewards()
        return out

    return _Built(trainer, tokenizer, metrics)


def _preference_data(script_args: Any, training_args: Any, out_dir: Path, main: bool):
    """F-DPO's (train, train info, eval, eval info, rows fingerprint): validated preference pairs from files or the
    hub; only the main process writes the rejects files."""
    from alignkit.trainers.data import load_split
    from alignkit.trainers.fdpo_config import FLAG_LOSSES

    require_flags = getattr(training_args, "pair_loss", None) in FLAG_LOSSES
    hub = hub_splits(script_args, training_args, require_flags=require_flags, rejects_dir=out_dir if main else None)
    train_ds, train_info = hub.train if hub else load_split(  # hub: dataset_name / dataset_mixture recipes
        script_args.dataset_path, script_args.dataset_split, require_flags=require_flags,
        on_invalid=script_args.on_invalid, max_samples=script_args.max_train_samples,
        rejects_to=out_dir / "train.jsonl" if main else None)
    eval_ds, eval_info = hub.eval if hub else (None, None)
    if script_args.eval_dataset_path:
        eval_ds, eval_info = load_split(
            script_args.eval_dataset_path, script_args.eval_split, require_flags=require_flags,
            on_invalid=script_args.on_invalid, max_samples=script_args.max_eval_samples,
            rejects_to=out_dir / "eval.jsonl" if main else None)
    return train_ds, train_info, eval_ds, eval_info, rows_fingerprint(train_ds)
