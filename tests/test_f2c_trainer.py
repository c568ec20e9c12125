"""F2CTrainer on a tiny random Llama: batching, one forward per step, the all-skipped graph, LoRA training, and a
2-process DeepSpeed ZeRO-3 run through the documented launch line."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from alignkit.losses.f2c import answer_logprobs, sequence_scores
from alignkit.trainers.f2c_config import F2CConfig
from alignkit.trainers.f2c_trainer import F2CCollator, F2CTrainer

REPO = Path(__file__).resolve().parents[1]


def _fmt(name, prompt, choices):
    return {"name": name, "template_id": name, "prompt": prompt, "choices": choices}


def always_skipped(i):
    # the same prompt with the choice order swapped: the two formats always vote for different indices, 1-1 at K=2
    p = f"Premise {i}: the cat sat on the mat. Is the mat under the cat? Answer yes or no."
    return {"id": f"skip-{i}", "label": 0, "formats": [_fmt("a", p, ["Yes", "No"]), _fmt("b", p, ["No", "Yes"])]}


def always_agreeing(i, k=2):
    # identical formats always agree: a strict majority at any K
    p = f"Premise {i}: rain fell all night. Question: was the ground wet in the morning? True or false?"
    return {"id": f"agree-{i}", "label": 0, "formats": [_fmt(f"f{j}", p, ["True", "False maybe"]) for j in range(k)]}


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
            AutoTokenizer.from_pretrained(tiny_model))


def _trainer(model, tok, tmp_path, rows, **kw):
    args = F2CConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, save_strategy="no",
                     per_device_train_batch_size=2, logging_steps=1, dataloader_pin_memory=False, **kw)
    return F2CTrainer(model=model, args=args, train_dataset=rows, processing_class=tok)


def test_collator_positions_point_at_answer_tokens(tiny):
    _, tok = tiny
    batch = F2CCollator(tok)([always_agreeing(0, k=3), always_agreeing(1, k=3)])
    assert batch["shape"].tolist() == [2, 3, 2]
    assert batch["input_ids"].shape[0] == 12
    for i in range(12):
        n = int(batch["answer_mask"][i].sum())
        pos = batch["answer_pos"][i, :n]
        assert torch.equal(batch["input_ids"][i, pos + 1], batch["answer_ids"][i, :n])
        assert int(batch["attention_mask"][i].sum()) == int(pos[-1]) + 2  # the answer ends the sequence
    assert int(batch["answer_mask"][1].sum()) > int(batch["answer_mask"][0].sum())  # "False maybe" is longer
    with pytest.raises(ValueError, match="batch"):
        F2CCollator(tok)([always_agreeing(0, k=3), always_agreeing(1, k=2)])


def test_padded_batch_scores_equal_one_by_one_scores(tiny):
    model, tok = tiny
    batch = F2CCollator(tok)([always_skipped(0), always_agreeing(1)])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        _, tok_lp = answer_logprobs(logits, batch["answer_pos"], batch["answer_ids"])
        batched = sequence_scores(tok_lp, batch["answer_mask"])
        for i in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][i].sum())
            one = {k: batch[k][i: i + 1] for k in ("answer_pos", "answer_ids", "answer_mask")}
            lg = model(input_ids=batch["input_ids"][i: i + 1, :n]).logits
            _, lp = answer_logprobs(lg, one["answer_pos"], one["answer_ids"])
            assert sequence_scores(lp, one["answer_mask"]).item() == pytest.approx(batched[i].item(), abs=1e-4)


def test_one_forward_per_step_and_all_skipped_batch_still_backprops(tiny, tmp_path):
    model, tok = tiny
    tr = _trainer(model, tok, tmp_path, [always_skipped(0)])
    model.train()  # as inside Trainer.train (metrics go to the "train" bucket)
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        mixed = tr._prepare_inputs(tr.data_collator([always_skipped(0), always_agreeing(1)]))
        loss = tr.compute_loss(model, mixed)
        assert len(calls) == 1
        assert [c.skip for c in tr.last_controls] == [True, False] and tr.last_controls[1].label == 0
        assert loss.item() > 0
        skipped = tr._prepare_inputs(tr.data_collator([always_skipped(2), always_skipped(3)]))
        loss = tr.compute_loss(model, skipped)
        assert len(calls) == 2
        assert all(c.skip for c in tr.last_controls)
        assert loss.item() == 0.0 and loss.requires_grad
        model.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
    finally:
        h.remove()
        model.zero_grad()
    assert tr._metrics["train"]["f2c/skipped"] == [0.5, 1.0]


def test_lora_training_updates_adapter_and_logs(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rows = [always_agreeing(i, k=4) for i in range(4)]
    for r in rows:  # make the formats differ so there is a teacher/student split to learn from
        for j, f in enumerate(r["formats"]):
            f["prompt"] = f"Format {j}. " * (j + 1) + f["prompt"]
    tr = _trainer(model, tok, tmp_path, rows, max_steps=4, learning_rate=5e-3, tau=1e9)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 4 and all(math.isfinite(h["loss"]) for h in logs)
    assert all(0 <= h["f2c/agreement"] <= 100 and "f2c/cce" in h and "f2c/skipped" in h for h in logs)
    moved = max((p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters() if n in before)
    assert moved > 0
    assert logs[-1]["f2c/cce"] < logs[0]["f2c/cce"]  # same 4 examples every 2 steps: CCE on the consensus falls


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_zero3_f2c(tiny_model, tmp_path, shared_data):
    from transformers import AutoModelForCausalLM

    from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency

    data = tmp_path / "rte.jsonl"
    build_consistency(ConsistencyBuildConfig(data=str(shared_data / "consistency" / "rte.jsonl"),
                                             templates="super_glue/rte", output=str(data), n=4, heldout=7, seed=0))
    with open(data, "a", encoding="utf-8") as fh:  # some examples that are always skipped: ranks must not hang
        for i in range(4):
            fh.write(json.dumps(always_skipped(i)) + "\n")
    out = tmp_path / "out"
    recipe = {"trainer": "f2c", "model_name_or_path": tiny_model, "dataset_path": str(data), "output_dir": str(out),
              "max_steps": 4, "per_device_train_batch_size": 1, "learning_rate": 1e-3, "max_length": 128,
              "logging_steps": 1, "report_to": "none", "save_strategy": "no", "seed": 0,
              "dataloader_pin_memory": False, "lr_scheduler_type": "constant"}
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    from alignkit.cli.train import launch_command

    cmd = launch_command(str(recipe_path), str(REPO / "accelerate_configs" / "zero3.yaml"), num_processes=2, cpu=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2  # a real 2-rank group
    logs = [h for h in metrics["log_history"] if "loss" in h]
    assert len(logs) == 4 and all(math.isfinite(h["loss"]) for h in logs)
    assert all("f2c/skipped" in h and "f2c/agreement" in h for h in logs)
    trained = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    start = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    sd_t, sd_s = trained.state_dict(), start.state_dict()
    assert all(sd_t[k].shape == sd_s[k].shape and torch.isfinite(sd_t[k]).all() for k in sd_s)  # gathered on save
    assert max((sd_t[k] - sd_s[k]).abs().max().item() for k in sd_s) > 1e-4


def test_answer_forward_matches_full_logits(tiny):
    from alignkit.trainers.f2c_trainer import answer_forward

    model, tok = tiny
    batch = F2CCollator(tok)([always_skipped(0), always_agreeing(1)])
    with torch.no_grad():
        _, logp, tok_lp = answer_forward(model, batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref_logp, ref_tok = answer_logprobs(full, batch["answer_pos"], batch["answer_ids"])
    m = batch["answer_mask"].bool()
    assert torch.allclose(tok_lp[m], ref_tok[m], atol=1e-5)
    assert torch.allclose(logp[m], ref_logp[m], atol=1e-5)


# -- the loss per branch, hand-computed (no model) ------------------------------------------------------------------

def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _jsd(dists):
    """Mean over formats of ½[KL(M‖P) + KL(P‖M)], M the mean distribution (one answer position)."""
    m = [sum(d[j] for d in dists) / len(dists) for j in range(len(dists[0]))]
    return sum(0.5 * (_kl(m, d) + _kl(d, m)) for d in dists) / len(dists)


def _batch(ll_rows, dists):
    """Inputs of f2c_batch_loss for one example: ``ll_rows[k][c]`` become one-token answer log-probs, ``dists[k]``
    the full next-token distribution of format k's c* answer (the same for every choice: only c* is read)."""
    k, c = len(ll_rows), len(ll_rows[0])
    tok_lp = torch.tensor([[v] for row in ll_rows for v in row], dtype=torch.float64)
    logp = torch.tensor([[dists[f]] for f in range(k) for _ in range(c)], dtype=torch.float64).log()
    return logp, tok_lp, torch.ones(k * c, 1), (1, k, c)


def _args(tmp_path, **kw):
    return F2CConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kw)


D3 = [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2]]


def test_no_split_k_below_two_gets_cce_plus_alpha_jsd_over_all_formats(tmp_path):
    from alignkit.losses.f2c import f2c_batch_loss

    ll = [[-1.0, -2.0], [-1.0, -1.5], [-2.0, -1.0]]  # 2 of 3 vote 0 -> k = min(3, 1) = 1: no split
    args = _args(tmp_path, cce_weight=0.4, beta_jsd=0.35, alpha_noncons=0.8)
    loss, ctrls, stats = f2c_batch_loss(*_batch(ll, D3), args)
    assert ctrls[0].label == 0 and not ctrls[0].split and not ctrls[0].unanimous
    expected = 0.4 * (1.0 + 1.0 + 2.0) / 3 + 0.8 * _jsd(D3)
    assert loss.item() == pytest.approx(expected)
    assert stats["f2c/jsd_all"] == pytest.approx(0.8 * _jsd(D3)) and stats["f2c/jsd"] == 0.0
    zero = f2c_batch_loss(*_batch(ll, D3), _args(tmp_path, cce_weight=0.4, alpha_noncons=0.0))[0]
    assert zero.item() == pytest.approx(0.4 * 4.0 / 3)  # α = 0 (the authors' launcher): CCE only


def test_strong_unanimity_gets_cce_plus_beta_jsd_over_all_formats_and_no_flip_term(tmp_path):
    from alignkit.losses.f2c import f2c_batch_loss

    ll = [[-0.1, -2.1], [0.0, -3.0], [-0.2, -2.0]]  # margins 2, 3, 1.8 -> median 2 >= τ = 1.4
    args = _args(tmp_path, cce_weight=0.4, beta_jsd=0.35, alpha_noncons=0.8)
    loss, ctrls, stats = f2c_batch_loss(*_batch(ll, D3), args)
    assert ctrls[0].unanimous and not ctrls[0].split
    assert loss.item() == pytest.approx(0.4 * (0.1 + 0.0 + 0.2) / 3 + 0.35 * _jsd(D3))
    assert stats["f2c/align"] == 0.0 and stats["f2c/unanimous"] == 1.0 and stats["f2c/split"] == 0.0


def test_split_gets_cce_plus_flip_kl_plus_beta_jsd_among_teachers(tmp_path):
    from alignkit.losses.f2c import f2c_batch_loss

    ll = [[-1.0, -3.0], [-0.5, -1.0], [-2.0, -1.0], [-1.0, -2.5], [-3.0, -0.5]]  # teachers (0, 3), students 1, 2, 4
    dists = [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
    args = _args(tmp_path, cce_weight=0.4, beta_jsd=0.35, alpha_noncons=0.8)
    loss, ctrls, _ = f2c_batch_loss(*_batch(ll, dists), args)
    ct = ctrls[0]
    assert ct.teachers == (0, 3) and ct.students == (1, 2, 4) and ct.split
    t_mean = [(dists[0][j] + dists[3][j]) / 2 for j in range(3)]
    kl = sum(_kl(t_mean, dists[s]) for s in (1, 2, 4)) / 3
    cce = 0.4 * (1.0 + 0.5 + 2.0 + 1.0 + 3.0) / 5
    assert loss.item() == pytest.approx(cce + ct.weight * kl + 0.35 * _jsd([dists[0], dists[3]]))


def test_no_majority_contributes_nothing_and_the_mean_is_over_contributing_examples(tmp_path):
    from alignkit.losses.f2c import f2c_batch_loss

    tie = [[-1.0, -2.0], [-2.0, -1.0]]  # 1-1 at K = 2
    args = _args(tmp_path, cce_weight=1.0, beta_jsd=0.0, alpha_noncons=0.0)
    d2 = [[0.5, 0.5], [0.9, 0.1]]
    logp, tok_lp, mask, _ = _batch(tie, d2)
    loss, ctrls, stats = f2c_batch_loss(logp, tok_lp, mask, (1, 2, 2), args)
    assert ctrls[0].skip and loss.item() == 0.0 and stats["f2c/skipped"] == 1.0
    agree = [[-1.0, -2.0], [-0.5, -2.0]]  # both vote 0: k = min(3, 1) = 1, no split
    lp2, tl2, m2, _ = _batch(agree, d2)
    loss, ctrls, stats = f2c_batch_loss(torch.cat([logp, lp2]), torch.cat([tok_lp, tl2]), torch.cat([mask, m2]),
                                        (2, 2, 2), args)
    assert [c.skip for c in ctrls] == [True, False]
    assert loss.item() == pytest.approx((1.0 + 0.5) / 2)  # the kept example's CCE, not halved by the skipped one
    assert stats["f2c/skipped"] == 0.5


def test_class_quota_admits_up_to_the_base_share_plus_one(tmp_path):
    from alignkit.losses.f2c import ClassQuota, f2c_batch_loss

    q = ClassQuota([0.5, 0.5])
    # class 1 again and again: 1st (1 <= 0.5*1 + 1), 2nd (2 <= 0.5*2 + 1) pass, 3rd (3 > 0.5*3 + 1) is refused
    assert [q.admit(1) for _ in range(3)] == [True, True, False]
    assert q.admit(0) and q.admit(1) and not q.admit(1)  # a class-0 label makes room for one more class-1
    assert q.counts == [1, 3]
    with pytest.raises(ValueError, match="sum to 1"):
        ClassQuota([0.5, 0.6])
    full = ClassQuota([1.0, 0.0])
    ll = [[-1.0, -2.0], [-1.0, -1.5], [-2.0, -1.0]]
    flipped = [[r[1], r[0]] for r in ll]  # consensus on class 1, whose base share is 0
    first = f2c_batch_loss(*_batch(flipped, D3), _args(tmp_path), quota=full)[0]  # the one example of slack
    loss, ctrls, stats = f2c_batch_loss(*_batch(flipped, D3), _args(tmp_path), quota=full)
    assert first.item() > 0 and full.counts == [0, 1]
    assert ctrls[0].label == 1 and loss.item() == 0.0 and stats["f2c/quota_refused"] == 1.0
    assert stats["f2c/skipped"] == 0.0  # refused, not "no majority"


def test_dev_loss_early_stopping_counts_only_after_min_steps():
    from types import SimpleNamespace

    from alignkit.trainers.f2c_trainer import DevLossEarlyStopping

    cb = DevLossEarlyStopping(patience=2, min_steps=20)
    control = SimpleNamespace(should_training_stop=False)
    # (step, dev loss): no improvement at 5, 10, 15 does not count (before min_steps); 25 improves; 30, 35 do not
    for step, value in [(5, 1.0), (10, 1.1), (15, 1.2), (20, 1.05), (25, 0.9), (30, 0.95)]:
        cb.on_evaluate(None, SimpleNamespace(global_step=step), control, metrics={"eval_loss": value})
        assert not control.should_training_stop, step
    assert cb.best == 0.9 and cb.best_step == 25 and cb.bad == 1
    cb.on_evaluate(None, SimpleNamespace(global_step=35), control, metrics={"eval_loss": 0.9})  # equal: no new best
    assert control.should_training_stop and cb.stopped_at == 35


def test_config_rejects_bad_guard_values(tmp_path):
    with pytest.raises(ValueError, match="class_balance"):
        _args(tmp_path, class_balance="entropy")
    with pytest.raises(ValueError, match="collapse_threshold"):
        _args(tmp_path, collapse_threshold=1.5)
    with pytest.raises(ValueError, match="alpha_noncons"):
        _args(tmp_path, alpha_noncons=-1.0)
    with pytest.raises(ValueError, match="eval_strategy"):
        _args(tmp_path, early_stopping_patience=3)
    args = _args(tmp_path, early_stopping_patience=3, eval_strategy="steps", eval_steps=5)
    assert args.early_stopping_min_steps == 20


# -- collapse guard, class shares, dev-loss early stopping, resume, honoured recipe keys (tiny model) -------------

def test_class_shares_are_logged_per_logging_step(tiny, tmp_path):
    model, tok = tiny
    tr = _trainer(model, tok, tmp_path, [always_skipped(0)])
    model.train()
    tr.compute_loss(model, tr._prepare_inputs(tr.data_collator([always_skipped(0), always_agreeing(1)])))
    preds = [p for ct in tr.last_controls for p in ct.predictions]
    labels = [ct.label for ct in tr.last_controls if not ct.skip]
    assert labels == [tr.last_controls[1].label]  # the skipped example has no pseudo-label
    tr.log({"loss": 0.0})
    logged = tr.state.log_history[-1]
    for j in (0, 1):
        assert logged[f"f2c/pred_share_c{j}"] == pytest.approx(preds.count(j) / len(preds))
        assert logged[f"f2c/label_share_c{j}"] == pytest.approx(labels.count(j) / len(labels))
    tr.log({"loss": 0.0})  # counts restart at every logging step: nothing new to report
    assert "f2c/pred_share_c0" not in tr.state.log_history[-1]


def test_collapse_guard_warns_and_stops_when_asked(tiny_model, tmp_path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [always_agreeing(i) for i in range(8)]
    # With C = 2 some class always holds >= 50%: threshold 0.5 makes the guard fire once its window (4) is full,
    # i.e. after the first step of 2 examples × 2 formats.
    kw = dict(max_steps=3, collapse_threshold=0.5, collapse_window=4, learning_rate=1e-4)
    with caplog.at_level("WARNING", logger="alignkit.trainers.f2c_trainer"):
        tr = _trainer(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), tok, tmp_path, rows,
                      **kw)
        tr.train()
    assert tr.state.global_step == 3 and len(tr.collapse_events) == 3  # warns at every logging step, keeps going
    assert all(e["share"] >= 0.5 and e["window"] == 4 for e in tr.collapse_events)
    assert "collapse guard" in caplog.text
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all(h["f2c/collapse"] == 1.0 for h in logs)
    assert all(h["f2c/pred_share_c0"] + h["f2c/pred_share_c1"] == pytest.approx(1.0) for h in logs)
    tr = _trainer(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), tok, tmp_path / "stop",
                  rows, stop_on_collapse=True, **kw)
    tr.train()
    assert tr.state.global_step == 1 and len(tr.collapse_events) == 1
    tr = _trainer(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), tok, tmp_path / "big",
                  rows, **{**kw, "collapse_window": 100})
    tr.train()
    assert tr.collapse_events == []  # 12 predictions never fill a window of 100


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _recipe(tiny_model, tmp_path, **kw):
    data = _write_jsonl(tmp_path / "train.jsonl", [always_agreeing(i, k=3) for i in range(6)])
    return {"trainer": "f2c", "model_name_or_path": tiny_model, "dataset_path": data,
            "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 1, "learning_rate": 1e-3,
            "max_length": 128, "logging_steps": 1, "report_to": "none", "use_cpu": True, "seed": 0,
            "dataloader_pin_memory": False, "lr_scheduler_type": "constant", **kw}


def test_f2c_resumes_from_the_newest_complete_checkpoint_of_the_same_config(tiny_model, tmp_path):
    from transformers import TrainerCallback

    from alignkit.train import train_from_config

    class Kill(TrainerCallback):  # an interruption after checkpoint-2 was written
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    class Steps(TrainerCallback):
        n = 0

        def on_step_end(self, *a, **k):
            Steps.n += 1

    recipe = _recipe(tiny_model, tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(recipe, callbacks=[Kill()])
    assert (tmp_path / "out" / "checkpoint-2").is_dir() and not (tmp_path / "out" / "metrics.json").exists()
    again = train_from_config(recipe, callbacks=[Steps()])
    assert Path(again["resumed_from"]).name == "checkpoint-2"
    assert again["global_step"] == 4 and Steps.n == 2  # two new steps, not four from scratch
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert Path(saved["resumed_from"]).name == "checkpoint-2"
    # a changed F2C setting is another run: stop and name the field; --overwrite starts over
    with pytest.raises(ValueError, match="tau"):
        train_from_config({**recipe, "tau": 2.0})
    fresh = train_from_config({**recipe, "tau": 2.0, "overwrite": True, "max_steps": 2})
    assert fresh["resumed_from"] is None and fresh["global_step"] == 2


def test_dev_loss_early_stopping_with_eval_dataset_path_and_honoured_model_keys(tiny_model, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from alignkit.train import train_from_config

    seen: dict = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    dev = _write_jsonl(tmp_path / "dev.jsonl", [always_agreeing(100 + i, k=3) for i in range(3)])
    # lr 1e-30 leaves every weight as it is, so the dev loss never improves after the first evaluation: with
    # patience 1 the run stops at the first evaluation at or after min_steps (step 2), not at max_steps (6).
    recipe = _recipe(tiny_model, tmp_path, max_steps=6, learning_rate=1e-30, eval_dataset_path=dev,
                     eval_strategy="steps", eval_steps=1, early_stopping_patience=1, early_stopping_min_steps=2,
                     attn_implementation="eager", class_balance="quota", class_balance_examples=4)
    m = train_from_config(recipe)
    assert seen["attn_implementation"] == "eager"
    assert m["data"]["eval"]["n_used"] == 3 and m["global_step"] == 2
    assert m["f2c"]["early_stopping"]["stopped_at"] == 2 and m["f2c"]["early_stopping"]["best_step"] == 1
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    evals = [h for h in saved["log_history"] if "eval_loss" in h]
    assert len(evals) == 2 and evals[0]["eval_loss"] == evals[1]["eval_loss"] > 0
    assert sum(m["f2c"]["base_class_shares"]) == pytest.approx(1.0) and sum(m["f2c"]["quota_counts"]) <= 2
    with pytest.raises(ValueError, match="dev set"):
        train_from_config({**recipe, "eval_dataset_path": None, "output_dir": str(tmp_path / "o2")})
    with pytest.raises(ValueError, match="use_peft"):
        train_from_config(_recipe(tiny_model, tmp_path, max_steps=1, load_in_4bit=True))
    with pytest.raises(ValueError, match="on_invalid"):
        train_from_config(_recipe(tiny_model, tmp_path, max_steps=1, on_invalid="skip"))


def test_f2c_run_writes_the_shared_output_folder_layout(tiny_model, tmp_path):
    """F²C goes through the same run_training as F-DPO: the resolved config and metrics.json with the common
    top-level keys (train, final, log_history, data, ...), its own keys under 'f2c'."""
    from alignkit.train import train_from_config

    out = tmp_path / "out"
    m = train_from_config(_recipe(tiny_model, tmp_path, max_steps=2, save_strategy="no", tau=1.7))
    saved = json.loads((out / "metrics.json").read_text())
    common = {"train", "final", "log_history", "data", "resumed_from", "global_step", "world_size", "peak_rss_mib",
              "peak_memory_mib"}
    assert common | {"f2c"} == set(saved) and "flip" not in m
    assert saved["train"]["train_runtime"] > 0 and saved["global_step"] == 2 and saved["final"]["loss"] >= 0
    assert saved["data"]["train"]["n_used"] == 6 and saved["data"]["eval"] is None
    assert saved["f2c"]["collapse_events"] == [] and saved["f2c"]["class_balance"] == "none"
    config = yaml.safe_load((out / "alignkit_config.yaml").read_text())
    assert config["trainer"] == "f2c" and config["tau"] == 1.7 and config["model_path_resolved"] == tiny_model
