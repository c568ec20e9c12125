"""FDPOTrainer on a tiny random Llama: equivalence with trl.DPOTrainer, hand-computed losses at the reference
point, the flip at dataset preparation, Δh-split metrics, precomputed reference log-probs, LoRA and a separate
reference, config validation, and the in-process ``train_from_config`` output folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from alignkit.train import train_from_config
from alignkit.trainers import FDPOConfig, FDPOTrainer

# (h_w, h_l) per row: Δh = 1, 0, 1, 0 after no flip
FLAGS = [(0, 1), (0, 0), (0, 1), (1, 1)]


def pref_rows(n: int = 4, flags=FLAGS) -> list[dict]:
    rows = []
    for i in range(n):
        hw, hl = flags[i % len(flags)]
        rows.append({"prompt": f"Q{i}: what is {i} plus {i + 1}?", "chosen": f" It is {2 * i + 1}.",
                     "rejected": f" It is {2 * i + 7}, clearly.", "h_w": hw, "h_l": hl})
    return rows


def _args(cls, tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_length=64, report_to="none",
                gradient_checkpointing=False, bf16=False, learning_rate=1e-3, logging_steps=1, save_strategy="no",
                use_cpu=True, dataloader_pin_memory=False)
    base.update(kw)
    return cls(**base)


def _batch(trainer, rows_idx=range(4)):
    examples = [trainer.train_dataset[i] for i in rows_idx]
    return trainer._prepare_inputs(trainer.data_collator(examples))


def _loss_and_grads(trainer, inputs):
    model = trainer.model
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_lambda_zero_matches_trl_dpo_loss_and_gradients(tiny_model, tok, tmp_path):
    ds = Dataset.from_list(pref_rows())
    ours = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type="fdpo", fdpo_lambda=0.0),
                       train_dataset=ds, processing_class=tok)
    trl = DPOTrainer(model=tiny_model, args=_args(DPOConfig, tmp_path), train_dataset=ds.remove_columns(["h_w", "h_l"]),
                     processing_class=tok)
    # move the policy away from the reference so the margin (and the gradient) is not trivially zero
    with torch.no_grad():
        for (_, a), (_, b) in zip(ours.model.named_parameters(), trl.model.named_parameters()):
            noise = torch.randn_like(a, generator=torch.Generator().manual_seed(a.numel())) * 0.02
            a.add_(noise)
            b.add_(noise)
    loss_a, grads_a = _loss_and_grads(ours, _batch(ours))
    loss_b, grads_b = _loss_and_grads(trl, _batch(trl))
    assert abs(loss_a.item() - math.log(2)) > 1e-4  # a real margin, not the trivial log 2
    assert abs(loss_a.item() - loss_b.item()) <= 1e-6
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    worst = max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a)
    assert worst <= 1e-6, worst


@pytest.mark.parametrize("loss_type, extra, expected", [
    # at initialisation policy == reference, so m = 0 on every pair
    ("fdpo", {"fdpo_lambda": 5.0}, (2 * math.log1p(math.exp(0.1 * 5.0)) + 2 * math.log(2)) / 4),
    ("dpo", {}, math.log(2)),
    ("cdpo", {"label_smoothing": 0.2}, math.log(2)),
    ("rdpo", {"label_smoothing": 0.2}, math.log(2)),
    ("ipo", {}, (1 / (2 * 0.1)) ** 2),
])
def test_losses_at_reference_point_match_closed_form(tiny_model, tok, tmp_path, loss_type, extra, expected):
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type=loss_type, apply_flip=False,
                                                        **extra),
                          train_dataset=Dataset.from_list(pref_rows()), processing_class=tok)
    loss, _ = _loss_and_grads(trainer, _batch(trainer))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_sft_weight_adds_chosen_nll(tiny_model, tok, tmp_path):
    ds = Dataset.from_list(pref_rows())
    plain = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type="dpo"), train_dataset=ds,
                        processing_class=tok)
    with_sft = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type="dpo", sft_weight=0.5),
                           train_dataset=ds, processing_class=tok)
    assert with_sft.args.loss_type == ["dpo", "sft"] and with_sft.args.loss_weights == [1.0, 0.5]
    inputs = _batch(plain)
    base, _ = _loss_and_grads(plain, inputs)
    total, _ = _loss_and_grads(with_sft, _batch(with_sft))
    # independent NLL: plain HF forward on the chosen half with prompt tokens masked
    half = inputs["input_ids"].shape[0] // 2
    labels = inputs["input_ids"][:half].masked_fill(inputs["completion_mask"][:half] == 0, -100)
    with torch.no_grad():
        nll = with_sft.model(input_ids=inputs["input_ids"][:half], attention_mask=inputs["attention_mask"][:half],
                             labels=labels).loss
    assert total.item() == pytest.approx(base.item() + 0.5 * nll.item(), abs=1e-5)


def test_flip_at_preparation_and_delta_h_metrics(tiny_model, tok, tmp_path):
    rows = pref_rows(flags=[(1, 0), (0, 0), (1, 0), (1, 1)])  # two misordered pairs
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, fdpo_lambda=1.0),
                          train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert trainer.flip_counts == {"train": 2}
    row0 = trainer.train_dataset[0]
    assert (row0["h_w"], row0["h_l"], row0["flipped"]) == (0, 1, True)
    # the flip swapped the texts too: the new chosen is the old rejected
    assert tok.decode(row0["chosen_ids"]).startswith(" It is 7, clearly")
    assert trainer.train_dataset[1]["flipped"] is False
    _loss_and_grads(trainer, _batch(trainer))
    m = trainer._metrics["train"]
    for key in ("rewards/margins_dh1", "rewards/accuracies_dh1", "rewards/margins_dh0", "rewards/accuracies_dh0",
                "rewards/margins", "logps/chosen", "entropy"):
        assert len(m[key]) == 1, key
    assert m["fdpo/dh1_fraction"] == [0.5]
    assert m["fdpo/flipped_pairs"] == [2]


def test_readme_rows_with_flipped_false_are_flipped_by_the_flags(tiny_model, tok, tmp_path):
    # the README's data contract: every row says "flipped": false; the (1, 0) rows must still be swapped
    rows = [dict(r, flipped=False) for r in pref_rows(flags=[(1, 0), (0, 1), (1, 0), (0, 0)])]
    rows[1]["flipped"] = True  # a row an earlier flip already swapped: (0, 1), kept as is
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, fdpo_lambda=1.0),
                          train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert trainer.args.apply_flip is True  # resolved from loss_type fdpo
    assert trainer.flip_counts == {"train": 2}
    got = [(r["h_w"], r["h_l"], r["flipped"]) for r in trainer.train_dataset]
    assert got == [(0, 1, True), (0, 1, True), (0, 1, True), (0, 0, False)]
    assert tok.decode(trainer.train_dataset[2]["chosen_ids"]).startswith(" It is 11, clearly")  # texts swapped too


def test_baselines_train_on_the_data_as_labelled_unless_the_recipe_asks(tiny_model, tok, tmp_path):
    rows = pref_rows(flags=[(1, 0), (0, 1), (1, 0), (0, 0)])
    for loss_type, extra in (("dpo", {}), ("cdpo", {"label_smoothing": 0.1}), ("rdpo", {"label_smoothing": 0.1}),
                             ("ipo", {})):
        trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type=loss_type, **extra),
                              train_dataset=Dataset.from_list(rows), processing_class=tok)
        assert trainer.args.apply_flip is False and trainer.flip_counts == {}, loss_type
        assert [(r["h_w"], r["h_l"]) for r in trainer.train_dataset] == [(1, 0), (0, 1), (1, 0), (0, 0)], loss_type
    asked = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type="dpo", apply_flip=True),
                        train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert asked.flip_counts == {"train": 2} and asked.train_dataset[0]["h_w"] == 0
    with pytest.raises(ValueError, match="apply_flip is true but the train data has no h_w/h_l"):
        FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type="dpo", apply_flip=True),
                    train_dataset=Dataset.from_list(rows).remove_columns(["h_w", "h_l"]), processing_class=tok)


def _sequence_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of the chosen and rejected halves, by a plain HF forward (independent of the
    trainer's fused head)."""
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, inputs["input_ids"][:, 1:, None])[..., 0]
    total = (logps * inputs["completion_mask"][:, 1:]).sum(dim=1)
    return total.chunk(2)


def _perturb(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p, generator=torch.Generator().manual_seed(p.numel())) * scale)


@pytest.mark.parametrize("loss_type, eps", [("cdpo", 0.2), ("rdpo", 0.2)])
def test_cdpo_rdpo_at_a_nonzero_margin_match_the_formula(tiny_model, tok, tmp_path, loss_type, eps):
    """Away from the reference point (m ≠ 0), where plain DPO gives another value: the ε term must be applied."""
    beta = 0.5
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, loss_type=loss_type, beta=beta,
                                                        label_smoothing=eps),
                          train_dataset=Dataset.from_list(pref_rows()), processing_class=tok)
    _perturb(trainer.model)
    inputs = _batch(trainer)
    loss, _ = _loss_and_grads(trainer, inputs)
    pc, pr = _sequence_logps(trainer.model, inputs)
    rc, rr = _sequence_logps(trainer.ref_model, inputs)
    z = beta * ((pc - rc) - (pr - rr))
    assert z.abs().min() > 1e-3  # a real margin on every pair
    logsig = torch.nn.functional.logsigmoid
    dpo = -logsig(z).mean().item()
    if loss_type == "cdpo":  # Mitchell 2023: expected DPO loss under a flip rate ε
        expected = (-(1 - eps) * logsig(z) - eps * logsig(-z)).mean().item()
    else:  # Chowdhury et al. 2024: unbiased under a flip rate ε
        expected = ((-(1 - eps) * logsig(z) + eps * logsig(-z)) / (1 - 2 * eps)).mean().item()
    assert abs(expected - dpo) > 1e-3  # the test can tell the loss from plain DPO
    assert loss.item() == pytest.approx(expected, abs=1e-4)


def test_train_set_rewards_cover_every_pair(tiny_model, tok, tmp_path):
    rows = pref_rows(6, flags=[(0, 1), (0, 0), (1, 1)])  # 6 pairs in batches of 4: the last batch is partial
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, fdpo_lambda=1.0,
                                                        per_device_eval_batch_size=4),
                          train_dataset=Dataset.from_list(rows), processing_class=tok)
    _perturb(trainer.model)
    stats = trainer.train_set_rewards()
    inputs = _batch(trainer, range(6))
    pc, pr = _sequence_logps(trainer.model, inputs)
    rc, rr = _sequence_logps(trainer.ref_model, inputs)
    margins = 0.1 * ((pc - rc) - (pr - rr))
    assert stats["n"] == 6 and (stats["n_dh1"], stats["n_dh0"]) == (2, 4)
    assert stats["accuracy"] == pytest.approx((margins > 0).float().mean().item())
    assert stats["margin"] == pytest.approx(margins.mean().item(), abs=1e-4)
    assert stats["accuracy_dh1"] == pytest.approx((margins[[0, 3]] > 0).float().mean().item())
    assert not trainer._metrics["eval"]  # the pass leaves no evaluation metrics behind


def test_fdpo_without_flags_is_an_error(tiny_model, tok, tmp_path):
    ds = Dataset.from_list(pref_rows()).remove_columns(["h_w", "h_l"])
    with pytest.raises(ValueError, match="h_w and h_l"):
        FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path), train_dataset=ds, processing_class=tok)


def test_precomputed_reference_gives_the_same_loss(tiny_model, tok, tmp_path):
    ds = Dataset.from_list(pref_rows())
    online = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, fdpo_lambda=2.0), train_dataset=ds,
                         processing_class=tok)
    pre = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path / "p", fdpo_lambda=2.0,
                                                   precompute_ref_log_probs=True),
                      train_dataset=ds, processing_class=tok)
    assert "ref_chosen_logps" in pre.train_dataset.column_names and pre.ref_model is None
    with torch.no_grad():  # move both policies identically so the reference matters
        for a, b in zip(online.model.parameters(), pre.model.parameters()):
            noise = torch.randn_like(a, generator=torch.Generator().manual_seed(a.numel())) * 0.02
            a.add_(noise)
            b.add_(noise)
    inputs = _batch(pre)
    assert "ref_chosen_logps" in inputs and "h_w" in inputs
    a, _ = _loss_and_grads(online, _batch(online))
    b, _ = _loss_and_grads(pre, inputs)
    assert b.item() == pytest.approx(a.item(), abs=1e-5)


def test_full_finetune_keeps_a_frozen_separate_reference(tiny_model, tok, tmp_path):
    trainer = FDPOTrainer(model=tiny_model, args=_args(FDPOConfig, tmp_path, fdpo_lambda=1.0, max_steps=2),
                          train_dataset=Dataset.from_list(pref_rows()), processing_class=tok)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    before = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    trainer.train()
    assert all(torch.equal(before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_train_from_config_lora_writes_adapter_config_and_metrics(tiny_model, tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", pref_rows(8, flags=[(1, 0), (0, 1), (0, 0), (1, 1)]))
    out = tmp_path / "run"
    metrics = train_from_config({
        "model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(out), "use_peft": True,
        "lora_r": 8, "lora_alpha": 16, "lora_target_modules": "all-linear", "max_steps": 3, "learning_rate": 1e-3,
        "per_device_train_batch_size": 4, "max_length": 64, "gradient_checkpointing": False, "report_to": "none",
        "save_strategy": "no", "logging_steps": 1, "fdpo_lambda": 2.0, "sft_weight": 0.1, "use_cpu": True})
    assert metrics["output_dir"] == str(out)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["global_step"] == 3 and on_disk["flip_counts"] == {"train": 2}
    assert on_disk["flip"] == {"applied": True, "swapped": {"train": 2}}
    assert on_disk["data"]["train"]["n_used"] == 8
    assert on_disk["peak_rss_mib"] > 50 and on_disk["peak_memory_mib"] is None  # CPU run: host RSS only
    losses = [h["loss"] for h in on_disk["log_history"] if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    config = yaml.safe_load((out / "alignkit_config.yaml").read_text())
    assert config["loss_type"] == ["fdpo", "sft"] and config["fdpo_lambda"] == 2.0 and config["use_peft"] is True
    from peft import AutoPeftModelForCausalLM

    reloaded = AutoPeftModelForCausalLM.from_pretrained(out)
    assert any("lora_" in n for n, _ in reloaded.named_parameters())


def test_bad_rows_are_skipped_and_counted_when_asked(tiny_model, tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", pref_rows(4) + [{"prompt": "x", "chosen": "y", "h_w": 0, "h_l": 1}])
    base = {"model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(tmp_path / "run"),
            "max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64, "gradient_checkpointing": False,
            "report_to": "none", "save_strategy": "no", "use_cpu": True}
    with pytest.raises(ValueError, match=r"pairs.jsonl:5.*rejected"):
        train_from_config(base)
    metrics = train_from_config(base, {"on_invalid": "skip"})
    assert metrics["data"]["train"]["n_rejected"] == 1 and metrics["data"]["train"]["n_used"] == 4
    assert (tmp_path / "run" / "train.rejects.jsonl").is_file()


@pytest.mark.parametrize("kw, match", [
    ({"loss_type": "hinge"}, "unsupported loss_type"),
    ({"loss_type": ["dpo", "fdpo"]}, "exactly one pairwise loss"),
    ({"loss_type": ["dpo", "sft"], "sft_weight": 0.1}, "either with sft_weight"),
    ({"loss_type": "cdpo", "label_smoothing": 0.7}, "label_smoothing"),
    ({"loss_type": "rdpo", "label_smoothing": 0.5}, "label_smoothing"),
    ({"fdpo_lambda": -1.0}, "fdpo_lambda"),
    ({"sft_weight": -0.1}, "sft_weight"),
    # ε = 0 is plain DPO under another name: an error naming the field, not a silent DPO run
    ({"loss_type": "cdpo"}, "field label_smoothing: cdpo needs label_smoothing"),
    ({"loss_type": "rdpo", "label_smoothing": 0.0}, "field label_smoothing: rdpo needs label_smoothing"),
    ({"loss_type": "dpo", "label_smoothing": 0.1}, "field label_smoothing: .*dpo ignores it"),
    ({"use_liger_kernel": True}, "field use_liger_kernel"),
    ({"beta": 0.0}, "field beta: β must be > 0"),
    ({"learning_rate": -1e-4}, "field learning_rate: must be > 0"),
    ({"max_steps": 0}, "field max_steps"),
    ({"per_device_train_batch_size": 0}, "field per_device_train_batch_size"),
    ({"gradient_accumulation_steps": 0}, "field gradient_accumulation_steps"),
])
def test_config_validation(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _args(FDPOConfig, tmp_path, **kw)


def test_trl_aliases_and_recipes_parse():
    from alignkit.train import load_recipe, parse_dict

    assert _args(FDPOConfig, Path("/tmp"), loss_type="robust", label_smoothing=0.1).loss_type == ["rdpo"]
    root = Path(__file__).resolve().parents[1] / "recipes"
    dirs = ("smollm2-135m", "qwen2.5-7b-instruct", "llama-3.1-8b-instruct")
    recipes = sorted(p for d in dirs for p in (root / d).glob("*.yaml") if not p.name.startswith("f2c"))
    assert {p.parent.name for p in recipes} == set(dirs) and len(recipes) == 8
    for p in recipes:
        _, args, model_args = parse_dict(load_recipe(p))
        assert args.pair_loss in ("dpo", "fdpo", "cdpo", "rdpo", "ipo"), p
        if "qlora" in p.name:
            assert model_args.load_in_4bit and model_args.use_peft and model_args.lora_r == 32


def test_fused_head_scores_only_the_labelled_positions_on_the_cpu(tiny_model, monkeypatch):
    """compact_lm_head_on_cpu: TRL's fused LM head projects only the positions with a label on the CPU too (the
    prompt positions are most of a preference pair), with the log-probabilities of the full computation."""
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from alignkit.trainers.fdpo_trainer import compact_lm_head_on_cpu

    assert compact_lm_head_on_cpu() and trl_utils._use_triton(torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    labels = ids.masked_fill(torch.arange(12) < 7, -100)  # a 7-token prompt, a 5-token completion
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids).logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    rows = []
    kernel = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            rows.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    trl_utils.add_fused_lm_head(model)
    with torch.no_grad():
        fused = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert rows == [2 * 5]  # the labelled positions only, not all 2 × 11
    mask = labels[:, 1:] != -100
    assert torch.allclose(fused[mask], full[mask], atol=1e-5) and (fused[~mask] == 0).all()


def test_reused_reference_log_probs_train_bit_identically(tiny_model, tmp_path):
    """reuse_ref_logps: a second run on the same batches takes every reference log-prob from the first and trains
    exactly as it would alone (same losses and grad norms to the last bit); other batches are computed afresh."""
    from alignkit.trainers import fdpo_trainer

    data = _write_jsonl(tmp_path / "pairs.jsonl", pref_rows(8, flags=[(0, 1)]))
    swapped = _write_jsonl(tmp_path / "swapped.jsonl", [
        {**r, "chosen": r["rejected"], "rejected": r["chosen"], "h_w": 1, "h_l": 0} for r in pref_rows(8)])

    def run(name: str, loss: str, path: Path, reuse: bool) -> list[tuple[float, float]]:
        metrics = train_from_config({
            "model_name_or_path": tiny_model, "dataset_path": str(path), "output_dir": str(tmp_path / name),
            "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_target_modules": "all-linear", "max_steps": 2,
            "learning_rate": 1e-3, "per_device_train_batch_size": 4, "max_length": 64, "report_to": "none",
            "gradient_checkpointing": False, "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
            "loss_type": loss, "apply_flip": False, "reuse_ref_logps": reuse, "seed": 0})
        return [(h["loss"], h["grad_norm"]) for h in metrics["log_history"] if "loss" in h]

    fdpo_trainer._REF_LOGPS.clear()
    alone = run("alone", "ipo", data, reuse=False)
    assert fdpo_trainer._REF_LOGPS == {}
    run("first", "dpo", data, reuse=True)
    assert len(fdpo_trainer._REF_LOGPS) == 2  # 8 pairs, batches of 4
    assert run("second", "ipo", data, reuse=True) == alone
    assert len(fdpo_trainer._REF_LOGPS) == 2  # every batch was a hit
    run("other", "dpo", swapped, reuse=True)  # other batches: computed, not mistaken for the cached ones
    assert len(fdpo_trainer._REF_LOGPS) == 4
    fdpo_trainer._REF_LOGPS.clear()
