"""``FDPOTrainer``: TRL's ``DPOTrainer`` with the F-DPO label flip and the DPO-family losses of alignkit.losses.

F-DPO (Chaduvula et al., arXiv 2601.03027; methods.md §1): flip pairs whose chosen answer is the hallucinated one,
then train with ``−log σ(β·(m − λ·Δh))``. The trainer overrides only what F-DPO needs: dataset preparation (the
flip), the kept columns and the collator (``h_w``/``h_l`` reach the loss), and ``compute_loss`` (the loss and the
Δh-split metrics). Model loading, PEFT, the reference model, DeepSpeed/FSDP wiring, precomputed reference
log-probs, checkpoints and logging stay TRL's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from datasets import Dataset
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from alignkit.data.transforms import fdpo_flip
from alignkit.losses import cdpo_loss, dpo_loss, fdpo_loss, ipo_loss, rdpo_loss
from alignkit.trainers.collator import FLAG_COLUMNS, FDPODataCollator
from alignkit.trainers.fdpo_config import FDPOConfig

CONFIG_CLASS = FDPOConfig
# reference log-probs per batch, shared by the trainers of one process (FDPOConfig.reuse_ref_logps)
_REF_LOGPS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", *FLAG_COLUMNS}


def compact_lm_head_on_cpu() -> bool:
    """Make TRL's fused LM head score only the completion positions on the CPU too; returns whether it does.

    TRL (1.16, ``trl.trainer.utils._fused_forward``) scores only the positions with a label where its Triton kernel
    runs (CUDA, XPU) and every position elsewhere, so that a compiler (e.g. Neuron's) sees fixed tile shapes. The CPU
    compiles nothing, and there the prompt positions are most of the cost: on SmolLM2-135M with fact-world pairs
    (~90% prompt tokens) the head took ~40% of a DPO step (profiled 2026-12-03). The result is the same per-token
    log-probabilities, computed for fewer rows. ``_use_triton`` is read in ``trl.trainer.utils`` only for that choice;
    the kernel module keeps its own binding, so its tiles stay the torch ones on the CPU. If a TRL release drops the
    name, nothing is patched (training is slower, not different) and tests/test_trainer_fdpo.py fails to say so."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        return False
    if not getattr(original, "_alignkit_compact_cpu", False):
        def use_compact(device: torch.device) -> bool:
            return device.type == "cpu" or original(device)

        use_compact._alignkit_compact_cpu = True  # type: ignore[attr-defined]
        trl_utils._use_triton = use_compact
    return True


compact_lm_head_on_cpu()


def misordered_rows(dataset) -> int:
    """How many rows of a map-style dataset the F-DPO flip swaps: those with h_w=1, h_l=0, read from the flags
    alone (a ``flipped`` column, true or false, changes nothing)."""
    return sum(1 for hw, hl in zip(dataset["h_w"], dataset["h_l"]) if hw is not None and hl is not None
               and (int(hw), int(hl)) == (1, 0))


class FDPOTrainer(DPOTrainer):
    """DPO trainer for the F-DPO family: ``loss_type`` picks dpo, fdpo, cdpo, rdpo or ipo (+ optional ``sft``).

    Besides TRL's metrics it logs reward margins and accuracies separately for Δh = 1 and Δh = 0 pairs
    (``rewards/margins_dh1``, ``rewards/accuracies_dh0``, …), the share of Δh = 1 pairs, and the number of flipped
    pairs seen (``fdpo/flipped_pairs``). The label flip runs when ``args.apply_flip`` is true (by default for
    ``loss_type: fdpo`` only) and swaps exactly the rows with h_w=1, h_l=0; ``self.flip_counts`` holds how many it
    swapped per split (empty when the flip did not run). :meth:`train_set_rewards` measures the reward accuracy
    over a whole dataset.
    """

    _tag_names = ["trl", "dpo", "alignkit", "fdpo"]
    args: FDPOConfig

    def __init__(self, *args: Any, **kwargs: Any):
        self.flip_counts: dict[str, int] = {}
        self._tally: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None
        super().__init__(*args, **kwargs)
        if type(self.data_collator) is DataCollatorForPreference:
            # TRL built its default collator; carry the flags by swapping in the subclass with the same settings.
            fields = {f.name: getattr(self.data_collator, f.name) for f in dataclasses.fields(self.data_collator)}
            self.data_collator = FDPODataCollator(**fields)
        if self.args.pair_loss == "fdpo" and not {"h_w", "h_l"} <= set(self.train_dataset.column_names):
            raise ValueError("loss_type 'fdpo' needs h_w and h_l columns in the training data")
        self._flipped_seen = 0

    # -- data ------------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # Map-style datasets only: an IterableDataset has no column list to inspect, and is passed through as is.
        columns = getattr(dataset, "column_names", None) if isinstance(dataset, Dataset) else None
        # not yet tokenised (evaluate() re-enters)
        if columns and getattr(args, "apply_flip", False) and "chosen_ids" not in columns:
            if not {"h_w", "h_l"} <= set(columns):
                if getattr(args, "pair_loss", None) == "fdpo":
                    raise ValueError(f"loss_type 'fdpo' needs h_w and h_l columns in the {dataset_name} data")
                raise ValueError(f"apply_flip is true but the {dataset_name} data has no h_w/h_l flags to flip by")
            self.flip_counts[dataset_name] = misordered_rows(dataset)
            # the same function as `alignkit data flip` and the builders, one row at a time
            dataset = dataset.map(lambda row: fdpo_flip([row])[0], desc=f"F-DPO label flip ({dataset_name})")
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, *FLAG_COLUMNS]

    def compute_ref_log_probs(self, model, inputs):
        # The flags are not model inputs; TRL forwards every non-mask key to the model.
        inputs = {k: v for k, v in inputs.items() if k not in FLAG_COLUMNS}
        if not self.args.reuse_ref_logps:
            return super().compute_ref_log_probs(model, inputs)
        key = self._ref_key(model, inputs)
        if key not in _REF_LOGPS:
            _REF_LOGPS[key] = tuple(t.detach().clone() for t in super().compute_ref_log_probs(model, inputs))
        return _REF_LOGPS[key]

    def _ref_key(self, model, inputs) -> str:
        """What a batch's reference log-probs depend on: the reference (its name and dtype; with PEFT the base under
        a disabled adapter or a "ref" adapter), TRL's settings that change them, and the exact batch tensors."""
        import hashlib

        ref = self.ref_model if self.ref_model is not None else self.accelerator.unwrap_model(self.model)
        config = ref.config
        h = hashlib.sha256(repr((config._name_or_path, str(ref.dtype), self.ref_model is None,
                                 repr(getattr(ref, "peft_config", {}).get("ref")), self.ld_alpha, self.args.bf16,
                                 self.args.fp16, self.args.max_length)).encode())
        for name in sorted(inputs):
            value = inputs[name]
            if isinstance(value, torch.Tensor):
                h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
            else:
                h.update(f"{name}:{value!r}".encode())
        return h.hexdigest()

    # -- loss ------------------------------------------------------------------------------------------------------
    def _pair_losses(self, pc, pr, rc, rr, completion_mask, flags):
        name, beta = self.args.pair_loss, self.beta
        if name == "dpo":
            return dpo_loss(pc, pr, rc, rr, beta=beta)[0]
        if name == "fdpo":
            if "h_w" not in flags:
                raise ValueError("loss_type 'fdpo' needs h_w/h_l in every batch")
            return fdpo_loss(pc, pr, rc, rr, flags["h_w"], flags["h_l"], beta=beta, lam=self.args.fdpo_lambda)[0]
        if name == "cdpo":
            return cdpo_loss(pc, pr, rc, rr, beta=beta, eps=self.args.label_smoothing)[0]
        if name == "rdpo":
            return rdpo_loss(pc, pr, rc, rr, beta=beta, eps=self.args.label_smoothing)[0]
        # IPO on length-averaged log-probs, as TRL's "ipo" and the IPO authors do.
        lc, lr = completion_mask.sum(dim=1).clamp(min=1).to(pc.dtype).chunk(2, dim=0)
        return ipo_loss(pc / lc, pr / lr, rc / lc, rr / lr, beta=beta)[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        flags = {k: inputs[k] for k in FLAG_COLUMNS if k in inputs}
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = shift_mask.size(1)
        per_token_logps = outputs.log_probs[:, -seq_len:]  # zero outside the completion
        chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(2, dim=0)

        if "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            # PEFT without a ref model: TRL disables the adapter on self.model inside compute_ref_log_probs.
            ref_chosen, ref_rejected = self.compute_ref_log_probs(
                self.ref_model if self.ref_model is not None else self.model, inputs)
        ref_chosen, ref_rejected = ref_chosen.to(chosen_logps.dtype), ref_rejected.to(chosen_logps.dtype)

        loss = 0.0
        for loss_type, weight in zip(self.loss_types, self.loss_weights, strict=True):
            if loss_type == "sft":
                chosen_mask = shift_mask.chunk(2, dim=0)[0].bool()
                term = -per_token_logps.chunk(2, dim=0)[0][chosen_mask].mean()
            else:
                term = self._pair_losses(chosen_logps, rejected_logps, ref_chosen, ref_rejected,
                                         completion_mask, flags).mean()
            loss = loss + weight * term
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        self._log_batch_metrics(mode, inputs, outputs, shift_mask, chosen_logps, rejected_logps,
                                ref_chosen, ref_rejected, flags)
        if return_outputs:
            with torch.no_grad():  # the fused head builds no logits; compute_metrics needs them (as TRL does)
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss

    # -- metrics ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _log_batch_metrics(self, mode, inputs, outputs, shift_mask, chosen_logps, rejected_logps,
                           ref_chosen, ref_rejected, flags):
        acc, m = self.accelerator, self._metrics[mode]
        seq_len = shift_mask.size(1)
        chosen_mask, rejected_mask = shift_mask.chunk(2, dim=0)

        n_tok = acc.gather_for_metrics(shift_mask.sum()).sum()
        entropy = acc.gather_for_metrics((outputs.entropy[:, -seq_len:] * shift_mask).sum()).sum()
        m["entropy"].append((entropy / n_tok).item() if n_tok > 0 else 0.0)
        if mode == "train":
            n_tokens = acc.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += n_tokens // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
        c_logits, r_logits = outputs.mean_logits[:, -seq_len:].chunk(2, dim=0)
        for name, logits, mask in (("chosen", c_logits, chosen_mask), ("rejected", r_logits, rejected_mask)):
            total = acc.gather_for_metrics(logits[mask.bool()].sum()).sum().item()
            count = acc.gather_for_metrics(mask.sum()).sum().item()
            m[f"logits/{name}"].append(total / count if count else 0.0)
        top1 = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)[0] & chosen_mask.bool()
        correct = acc.gather_for_metrics(top1.sum()).sum()
        total = acc.gather_for_metrics(chosen_mask.sum()).sum()
        m["mean_token_accuracy"].append((correct / total).item() if total > 0 else 0.0)

        chosen_rewards = acc.gather(self.beta * (chosen_logps - ref_chosen).detach())
        rejected_rewards = acc.gather(self.beta * (rejected_logps - ref_rejected).detach())
        margins = chosen_rewards - rejected_rewards
        correct_pairs = (margins > 0).float()
        m["rewards/chosen"].append(chosen_rewards.mean().item())
        m["rewards/rejected"].append(rejected_rewards.mean().item())
        m["rewards/accuracies"].append(correct_pairs.mean().item())
        m["rewards/margins"].append(margins.mean().item())
        m["logps/chosen"].append(acc.gather(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(acc.gather(rejected_logps.detach()).mean().item())

        if "h_w" in flags and "h_l" in flags:
            delta_h = acc.gather(flags["h_l"] - flags["h_w"])
            m["fdpo/dh1_fraction"].append((delta_h == 1).float().mean().item())
            for tag, sel in (("dh1", delta_h == 1), ("dh0", delta_h == 0)):
                if sel.any():  # averaged over the batches that contain such pairs
                    m[f"rewards/margins_{tag}"].append(margins[sel].mean().item())
                    m[f"rewards/accuracies_{tag}"].append(correct_pairs[sel].mean().item())
        if self._tally is not None:
            # exact per-pair margins for train_set_rewards (gather_for_metrics drops the padding of the last batch)
            local = self.beta * ((chosen_logps - ref_chosen) - (rejected_logps - ref_rejected)).detach()
            dh = flags["h_l"] - flags["h_w"] if "h_w" in flags and "h_l" in flags else None
            self._tally.append((acc.gather_for_metrics(local).float().cpu(),
                                None if dh is None else acc.gather_for_metrics(dh).cpu()))
        if "flipped" in flags:
            flipped = int(acc.gather(flags["flipped"]).sum().item())
            if mode == "train":
                self._flipped_seen += flipped
                m["fdpo/flipped_pairs"] = [self._flipped_seen]
            else:
                m["fdpo/flipped_pairs"].append(flipped)


    # -- whole-dataset rewards -------------------------------------------------------------------------------------
    @torch.no_grad()
    def train_set_rewards(self, dataset=None) -> dict[str, Any]:
        """Reward accuracy (share of pairs with a positive implicit-reward margin) and mean margin over every pair of
        ``dataset`` (default: the prepared training set), overall and split by Δh — not a per-batch average.

        One no-grad pass through the Trainer's evaluation loop (so DDP/DeepSpeed wrapping is the Trainer's), with
        the loss path's own log-probs; the reference comes from precomputed columns or the reference model."""
        dataset = self.train_dataset if dataset is None else dataset
        self._tally = []
        try:
            self.evaluation_loop(self.get_eval_dataloader(dataset), description="Train-set rewards",
                                 prediction_loss_only=True, metric_key_prefix="train_set")
            tally = self._tally
        finally:
            self._tally = None
            self._metrics["eval"].clear()  # the pass is not an evaluation: keep its batch metrics out of the logs
        margins = torch.cat([m for m, _ in tally])
        out: dict[str, Any] = {"n": int(margins.numel()), "accuracy": (margins > 0).float().mean().item(),
                               "margin": margins.mean().item()}
        if tally and all(dh is not None for _, dh in tally):
            delta_h = torch.cat([dh for _, dh in tally])
            for tag, sel in (("dh1", delta_h == 1), ("dh0", delta_h == 0)):
                out[f"n_{tag}"] = int(sel.sum().item())
                out[f"accuracy_{tag}"] = (margins[sel] > 0).float().mean().item() if sel.any() else None
        return out


def run(script_args, training_args: FDPOConfig, model_args, callbacks: list | None = None) -> dict:
    """Train one F-DPO-family run from parsed recipe arguments; see :func:`alignkit.trainers.runner.run_training`."""
    from alignkit.trainers.runner import run_training

    return run_training(script_args, training_args, model_args, callbacks=callbacks)
