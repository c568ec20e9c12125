"""The noise-robustness experiment: judge noise, method keys, statistics, and a tiny sweep end to end (structure and
resumption are asserted, numbers are not)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from alignkit.data.transforms import fdpo_flip, inject_judge_noise, inject_noise
from alignkit.experiments.noise_sweep import (
    METRICS,
    NoiseSweepConfig,
    count_runs,
    degeneracy_stats,
    method_keys,
    per_item_scores,
    run_noise_sweep,
    seeds_bootstrap,
    sweep_plan,
)
from alignkit.experiments.noise_sweep.sweep import train_key


def _rows(n: int) -> list[dict]:
    return [{"prompt": f"q{i}", "chosen": f"fact{i}", "rejected": f"wrong{i}", "h_w": 0, "h_l": 1} for i in range(n)]


# -- judge noise --------------------------------------------------------------------------------------------------
def test_judge_noise_flips_flags_independently_and_records_truth():
    rows = _rows(2000)
    noisy, n_flipped = inject_judge_noise(rows, 0.2, seed=3)
    assert noisy == inject_judge_noise(rows, 0.2, seed=3)[0]  # seeded
    assert noisy != inject_judge_noise(rows, 0.2, seed=4)[0]
    flips_w = sum(r["judge_noise"]["h_w"] for r in noisy)
    flips_l = sum(r["judge_noise"]["h_l"] for r in noisy)
    assert n_flipped == flips_w + flips_l
    assert 300 < flips_w < 500 and 300 < flips_l < 500  # ≈ 0.2 × 2000 each
    both = sum(r["judge_noise"]["h_w"] and r["judge_noise"]["h_l"] for r in noisy)
    assert 50 < both < 115  # independent: ≈ 0.04 × 2000, not 0 (exclusive) or 400 (the same draw)
    for r, n in zip(rows, noisy):
        assert (n["h_w_true"], n["h_l_true"]) == (0, 1)
        assert n["h_w"] == int(n["judge_noise"]["h_w"]) and n["h_l"] == 1 - int(n["judge_noise"]["h_l"])
        assert (n["chosen"], n["rejected"]) == (r["chosen"], r["rejected"])  # the order is not touched
    assert "h_w_true" not in rows[0]  # inputs are not mutated


def test_judge_noise_is_refused_twice_and_needs_flags():
    once, _ = inject_judge_noise(_rows(3), 0.3, 0)
    with pytest.raises(ValueError, match="row 0: judge noise was already applied"):
        inject_judge_noise(once, 0.3, 0)
    with pytest.raises(ValueError, match="row 1: judge noise needs both h_w and h_l"):
        inject_judge_noise([_rows(1)[0], {"prompt": "p", "chosen": "a", "rejected": "b"}], 0.1, 0)
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\]"):
        inject_judge_noise(_rows(1), 1.5, 0)


def test_true_flags_travel_with_their_responses_through_the_flip():
    # a clean (0,1) pair whose two flags the judge got wrong looks like (1,0): F-DPO's flip swaps it into the
    # wrong order, and the recorded truth must follow the responses
    row = {**_rows(1)[0], "h_w": 1, "h_l": 0, "h_w_true": 0, "h_l_true": 1, "judge_noise": {"h_w": True, "h_l": False}}
    (flipped,) = fdpo_flip([row])
    assert flipped["chosen"] == "wrong0" and (flipped["h_w"], flipped["h_l"]) == (0, 1)
    assert (flipped["h_w_true"], flipped["h_l_true"]) == (1, 0)
    assert flipped["judge_noise"] == {"h_w": False, "h_l": True}


def test_order_noise_draws_do_not_depend_on_delta():
    rows = _rows(50)
    a, idx_a = inject_noise(rows, 0.2, 7)
    b, _ = inject_judge_noise(a, 0.3, 7)
    assert [r["noised"] for r in b] == [i in idx_a for i in range(50)]
    # with F-DPO's flip, ε alone is undone (flags travel): only judge noise leaves misordered pairs behind
    assert all(r["chosen"].startswith("fact") for r in fdpo_flip(a))
    assert any(r["chosen"].startswith("wrong") for r in fdpo_flip(b))


def test_data_noise_cli_writes_judge_noise(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(40)))
    out = tmp_path / "out.jsonl"
    res = subprocess.run([sys.executable, "-m", "alignkit.cli", "data", "noise", str(src), "-o", str(out),
                          "--eps", "0.25", "--delta", "0.3", "--seed", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(r["noised"] for r in rows) == 10
    assert all({"h_w_true", "h_l_true", "judge_noise"} <= set(r) for r in rows)
    card = json.loads(out.with_name("out.card.json").read_text())
    assert card["config"]["delta"] == 0.3
    assert card["config"]["judge_flags_flipped"] == sum(r["judge_noise"]["h_w"] + r["judge_noise"]["h_l"] for r in rows)
    # the swapped pairs carry their true flags with them: (1,0) in truth
    assert all((r["h_w_true"], r["h_l_true"]) == ((1, 0) if r["noised"] else (0, 1)) for r in rows)


# -- methods, plan, statistics ------------------------------------------------------------------------------------
def test_method_keys():
    assert method_keys("cdpo@true", 0.3, 10.0) == {"loss_type": "cdpo", "label_smoothing": 0.3, "apply_flip": False}
    assert method_keys("rdpo@0.1", 0.3, 10.0)["label_smoothing"] == 0.1
    assert method_keys("cdpo@true", 0.0, 10.0) is None  # plain DPO at ε = 0: the dpo run stands in
    assert method_keys("dpo+flip", 0.2, 10.0) == {"loss_type": "fdpo", "fdpo_lambda": 0.0, "apply_flip": True}
    assert method_keys("fdpo", 0.2, 7.0)["fdpo_lambda"] == 7.0
    assert method_keys("dpo", 0.2, 7.0)["apply_flip"] is False and method_keys("ipo", 0, 1)["apply_flip"] is False


def test_plan_trains_flag_blind_methods_once_per_eps():
    cfg = NoiseSweepConfig(methods=["dpo", "cdpo@true", "fdpo"], eps=[0.0, 0.2], delta=[0.0, 0.1, 0.3], seeds=[0, 1, 2])
    plan = sweep_plan(cfg)
    assert sum(1 for m, _, _ in plan if m == "dpo") == 2
    assert sum(1 for m, _, _ in plan if m == "fdpo") == 6
    # per seed: dpo ×2, cdpo@true at ε=0.2 only, fdpo ×6 minus (ε=0.2, δ=0), which trains on the (ε=0, δ=0) data
    assert count_runs(cfg) == {"calibration": 4, "per_seed": [8, 8, 8], "sweep": 24}


def test_dpo_with_a_flip_that_changes_nothing_is_the_dpo_run():
    """The F-DPO loss at λ = 0 is the DPO loss: DPO + flip trains as DPO does on the data the flip leaves, so with
    correct flags it is DPO's ε = 0 run at every ε, and with judge noise a run of its own."""
    recipe = {"learning_rate": 1e-4, "output_dir": "a", "dataset_path": "x.jsonl", "fdpo_lambda": 10.0}
    dpo = train_key({**recipe, **method_keys("dpo", 0.0, 10.0)}, "view")
    assert train_key({**recipe, **method_keys("dpo+flip", 0.3, 10.0), "output_dir": "b"}, "view") == dpo
    assert train_key({**recipe, **method_keys("fdpo", 0.0, 10.0)}, "view") != dpo  # λ = 10 is another loss
    assert train_key({**recipe, **method_keys("dpo+flip", 0.0, 10.0)}, "other view") != dpo
    cfg = NoiseSweepConfig(methods=["dpo", "dpo+flip"], eps=[0.0, 0.2], delta=[0.0, 0.3], seeds=[0])
    # dpo ×2 and dpo+flip at δ = 0.3 ×2 (its ε = 0 and 0.2 runs with δ = 0 are DPO's ε = 0 run)
    assert count_runs(cfg)["per_seed"] == [4]


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match=r"eps values must be in \[0, 0.5\)"):
        NoiseSweepConfig(output_dir=str(tmp_path), eps=[0.6])
    with pytest.raises(ValueError, match="unknown method 'cdpo'"):
        NoiseSweepConfig(methods=["cdpo"])
    with pytest.raises(ValueError, match="overrides may not set"):
        NoiseSweepConfig(overrides={"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="n_generate must be <= n_test"):
        NoiseSweepConfig(n_test=10, n_generate=20)
    with pytest.raises(ValueError, match="calibration.steps"):
        NoiseSweepConfig(calibration={"steps": [0]})


def test_seeds_bootstrap_and_degeneracy():
    s = seeds_bootstrap([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], n_resamples=500, confidence=0.95)
    assert s["mean"] == pytest.approx((0.75 + 0.25 + 0.75) / 3)
    assert s["low"] < s["mean"] < s["high"] and (s["seed_min"], s["seed_max"]) == (0.25, 0.75)
    assert s["n_seeds"] == 3 and s["n"] == 12
    flat = seeds_bootstrap([[1, 1], [1, 1]], n_resamples=500, confidence=0.95)
    assert flat["low"] == flat["high"] == 1.0
    d = degeneracy_stats(["It was founded in 1850.", "", "a b c d a b c d"])
    assert d["empty"] == pytest.approx(1 / 3) and d["repeated"] == pytest.approx(1 / 3)
    assert 0 < d["distinct_2"] < 1 and d["mean_length"] == pytest.approx((5 + 0 + 8) / 3)


def test_cli_dry_run_counts_the_cpu_config():
    res = subprocess.run([sys.executable, "-m", "alignkit.cli", "experiment", "noise-sweep", "--config",
                          "recipes/experiments/noise-sweep-cpu.yaml", "--dry-run"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    runs = json.loads(res.stdout)["runs"]
    assert runs["sweep"] >= 3 * 8 and runs["calibration"] >= 2
    bad = subprocess.run([sys.executable, "-m", "alignkit.cli", "experiment", "noise-sweep", "--config",
                          "recipes/experiments/noise-sweep-cpu.yaml", "--dry-run", "--set", "sedes=[0]"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown key(s) ['sedes']" in bad.stderr


def test_shared_prompt_scorer_matches_full_loglikelihood(tiny_model):
    from alignkit.builders.factworld import build_factworld
    from alignkit.experiments.noise_sweep import Evaluator

    _, items = build_factworld(0, 11, rho=0.0, seed=5)
    ev = Evaluator(NoiseSweepConfig(model=tiny_model, backend_options={"batch_size": 4}), tiny_model)
    fast = ev.logprobs(items, None)  # each prompt once for its two answers, the system turn once for all
    unshared = Evaluator(NoiseSweepConfig(model=tiny_model, backend_options={"batch_size": 4,
                                                                             "prefix_sharing": False}), tiny_model)
    full = unshared.backend.loglikelihood(unshared._requests(items))  # every (prompt, answer) in full
    assert len(fast) == 11
    for i, (a, b) in enumerate(fast):
        assert a == pytest.approx(full[2 * i].logprob, abs=1e-3)
        assert b == pytest.approx(full[2 * i + 1].logprob, abs=1e-3)


# -- end to end ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_noise_sweep_tiny_end_to_end_and_resume(tmp_path, tiny_model, monkeypatch):
    import alignkit.train

    cfg = NoiseSweepConfig(
        output_dir=str(tmp_path / "sweep"), record_dir=str(tmp_path / "record"), model=tiny_model,
        methods=["dpo", "cdpo@true", "fdpo", "dpo+flip"],
        eps=[0.0, 0.4], delta=[0.0, 0.3], seeds=[0, 1], n_train=8, n_val=6, n_test=8, n_generate=4,
        n_val_generate=4, max_new_tokens=4, calibration={"learning_rates": [1e-3], "steps": [1, 2]},
        backend="hf", backend_options={"batch_size": 8, "merge_lora": True}, n_resamples=200,
        overrides={"per_device_train_batch_size": 2, "max_length": 128, "logging_steps": 1},
    )
    real = alignkit.train.train_from_config
    calls: list[str] = []

    class Interrupted(Exception):
        pass

    def interrupted_after_5(recipe, *a, **k):
        if len(calls) == 5:
            raise Interrupted  # as a kill between two runs would
        calls.append(recipe["output_dir"])
        return real(recipe, *a, **k)

    monkeypatch.setattr(alignkit.train, "train_from_config", interrupted_after_5)
    with pytest.raises(Interrupted):
        run_noise_sweep(cfg, progress=lambda msg: None)
    first = list(calls)

    calls.clear()
    monkeypatch.setattr(alignkit.train, "train_from_config", lambda recipe, *a, **k: calls.append(
        recipe["output_dir"]) or real(recipe, *a, **k))
    result = run_noise_sweep(cfg, progress=lambda msg: None)
    counts = count_runs(cfg)
    # the rerun trains only what the interrupted run had not; the chosen calibration run is copied, not retrained
    assert not set(first) & set(calls)
    assert len(first) + len(calls) == counts["calibration"] + counts["sweep"] - 1

    out = tmp_path / "sweep"
    doc = json.loads((out / "results.json").read_text())
    cal = doc["calibration"]
    assert len(cal["table"]) == 2 and cal["chosen"]["max_steps"] in (1, 2)
    # the log-likelihood check is made only when the base is below the ceiling (a base at 1.0 cannot be beaten)
    ceiling = cal["base"]["loglik_acc"]["high"] >= 1.0
    want = {"reward_above_base", "not_degenerate"} | (set() if ceiling else {"loglik_above_base"})
    assert all(set(row["checks"]) == want for row in cal["table"])
    cells = {(c["method"], c["eps"], c["delta"]): c for c in doc["summary"]}
    assert set(cells) == {(m, e, d) for m in cfg.methods for e in cfg.eps for d in cfg.delta}
    for c in cells.values():
        assert set(METRICS) <= set(c) and c["reward_acc"]["n"] == 2 * 8 and c["hallucination_rate"]["n_seeds"] == 2
        assert c["reward_acc"]["low"] <= c["reward_acc"]["mean"] <= c["reward_acc"]["high"]
        assert {"mean_length", "distinct_2", "empty", "repeated"} == set(c["degeneracy"])
    # cdpo@true at ε = 0 is the dpo run; flag-blind methods are the same runs in every δ panel
    assert cells[("cdpo@true", 0.0, 0.0)]["reuses"] == "dpo"
    assert cells[("cdpo@true", 0.0, 0.0)]["reward_acc"] == cells[("dpo", 0.0, 0.0)]["reward_acc"]
    assert cells[("dpo", 0.4, 0.3)]["reward_acc"] == cells[("dpo", 0.4, 0.0)]["reward_acc"]
    # judge noise reached F-DPO's data, recorded per row; the trainer's flip counts are in the runs
    rows = [json.loads(line) for line in (out / "data" / "seed0" / "train_eps0.4_delta0.3.jsonl").open()]
    assert all("h_w_true" in r and "judge_noise" in r for r in rows)
    assert any(r["judge_noise"]["h_w"] or r["judge_noise"]["h_l"] for r in rows)
    fdpo_runs = [r for r in doc["runs"] if r["method"] == "fdpo"]
    assert len(fdpo_runs) == 2 * 2 * 2 and all("train" in r["flip_counts"] for r in fdpo_runs)
    # with perfect flags the flip undoes every order swap: F-DPO at ε = 0.4, δ = 0 is its ε = 0 run, said so
    for r in fdpo_runs:
        if r["eps"] == 0.0:
            assert r["same_training_as"] is None
        elif r["delta"] == 0.0:
            assert r["same_training_as"] == "eps0_delta0/fdpo"
            assert r["flip_counts"]["train"] == round(0.4 * 8)  # every swapped pair is swapped back
    assert cells[("fdpo", 0.4, 0.0)]["reward_acc"] == cells[("fdpo", 0.0, 0.0)]["reward_acc"]
    # DPO + flip with correct flags trains exactly as DPO at ε = 0 does (the flip leaves the ε = 0 rows; λ = 0 is DPO)
    for r in doc["runs"]:
        if r["method"] == "dpo+flip" and r["delta"] == 0.0:
            assert r["same_training_as"] == "eps0_delta0/dpo"
    assert cells[("dpo+flip", 0.4, 0.0)]["reward_acc"] == cells[("dpo", 0.0, 0.0)]["reward_acc"]
    # every model's training and evaluation time is recorded and summed for the report
    bases = 1 + 2  # validation, and the test items of each seed
    assert doc["time"]["models"] == bases + counts["calibration"] + counts["sweep"] and doc["time"]["untimed"] == 0
    assert doc["time"]["train_seconds"] > 0 and doc["time"]["eval_seconds"] > 0
    for metric in METRICS:
        assert (out / f"{metric}_vs_noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Calibration" in report and "**δ = 0.3**" in report and "| fdpo |" in report
    assert "`fdpo` at ε = 0.4, δ = 0 is the run `eps0_delta0/fdpo` (seeds 0, 1)" in report
    assert "`dpo+flip` at ε = 0, δ = 0 is the run `eps0_delta0/dpo` (seeds 0, 1)" in report
    assert "## Compute time" in report

    # a third run retrains nothing, re-evaluates nothing, and gives the same summary
    calls.clear()
    again = run_noise_sweep(cfg, progress=lambda msg: None)
    assert calls == [] and again["summary"] == result["summary"]

    # the record alone (no adapters, no output_dir) resumes the sweep elsewhere: nothing is retrained
    shutil.rmtree(out)
    assert len(list((tmp_path / "record").rglob("*.json"))) == bases + counts["calibration"] + counts["sweep"]
    elsewhere = run_noise_sweep(cfg, progress=lambda msg: None)
    assert calls == [] and elsewhere["summary"] == result["summary"]

    # the publishing script copies the report and plots and rewrites only the README block between its markers
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- noise-sweep:begin -->\nOLD-BLOCK\n<!-- noise-sweep:end -->\noutro\n")
    res = subprocess.run([sys.executable, "scripts/noise_sweep_report.py", "--out", str(out), "--docs",
                          str(tmp_path / "docs"), "--readme", str(readme)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "OLD-BLOCK" not in text
    assert "| fdpo | 0.3 |" in text and "against the best flag-blind baseline F-DPO" in text
    assert "Reward margin kept at ε = 0.4, as a share of the same method's margin at ε = 0" in text
    construction = next(line for line in text.splitlines() if line.startswith("By construction, not measured:"))
    assert "fdpo at ε = 0.4, δ = 0 is the run eps0_delta0/fdpo" in construction
    assert "dpo+flip at ε = 0.4, δ = 0 is the run eps0_delta0/dpo" in construction
    assert "h elapsed** with 1 worker process(es)" in text
    assert text.index("Hallucination rate of generated answers") < text.index("Held-out preference accuracy") \
        < text.index("Held-out implicit reward margin")
    doc = (tmp_path / "docs" / "noise_sweep.md").read_text()
    assert "](noise_sweep/reward_acc_vs_noise.png)" in doc
    assert (tmp_path / "docs" / "noise_sweep" / "hallucination_rate_vs_noise.png").is_file()


def test_per_item_scores_hand_computed():
    """Implicit reward = policy − reference log-likelihood; rank and margin of factual over hallucinated."""
    policy = [[-1.0, -5.0], [-2.0, -2.0], [-3.0, -1.0]]
    ref = [[-2.0, -4.0], [-2.0, -2.0], [-1.0, -2.0]]
    s = per_item_scores(policy, ref)
    assert s["reward_correct"] == [1.0, 0.5, 0.0]  # rewards (1, -1), (0, 0), (-2, 1)
    assert s["reward_margin"] == [2.0, 0.0, -3.0]
    assert s["loglik_correct"] == [1.0, 0.5, 0.0]


@pytest.mark.slow
def test_noise_sweep_with_two_workers(tmp_path, tiny_model):
    """workers=2: the runs are split over two spawned processes (whole (seed, data) groups each), the serial pass
    after them only reads what they recorded, and the report has every cell and the elapsed time."""
    cfg = NoiseSweepConfig(
        output_dir=str(tmp_path / "sweep"), record_dir=str(tmp_path / "record"), model=tiny_model,
        methods=["dpo", "ipo", "fdpo"], eps=[0.0, 0.4], delta=[0.0, 0.3], seeds=[0, 1], n_train=8, n_val=6,
        n_test=8, n_generate=4, n_val_generate=4, max_new_tokens=4, workers=2,
        calibration={"learning_rates": [1e-3], "steps": [1]}, backend="hf",
        backend_options={"batch_size": 8, "merge_lora": True}, n_resamples=200,
        overrides={"per_device_train_batch_size": 2, "max_length": 128, "logging_steps": 1, "reuse_ref_logps": True},
    )
    messages: list[str] = []
    result = run_noise_sweep(cfg, progress=messages.append)
    counts = count_runs(cfg)
    doc = json.loads((tmp_path / "sweep" / "results.json").read_text())
    records = [json.loads(p.read_text()) for p in (tmp_path / "record").rglob("*.json")]
    by_worker = [r["seconds"]["worker"] for r in records if "train" in r["seconds"]]
    # every sweep training was made by a worker (the calibration by the parent), and both workers had work
    assert by_worker.count(None) == counts["calibration"]
    assert {0, 1} <= set(by_worker) and len(by_worker) == counts["calibration"] + counts["sweep"]
    assert any("2 worker processes" in m for m in messages)
    assert {(c["method"], c["eps"], c["delta"]) for c in result["summary"]} == {
        (m, e, d) for m in cfg.methods for e in cfg.eps for d in cfg.delta}
    t = doc["time"]
    # the workers overlap: elapsed (the union of the models' intervals) is below the sum of their times
    assert t["workers"] == [None, 0, 1] and 0 < t["elapsed_seconds"] < t["train_seconds"] + t["eval_seconds"]
    assert "h elapsed" in (tmp_path / "sweep" / "report.md").read_text()
