"""Training runs, the calibration and the sweep itself (`run_noise_sweep`)."""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from alignkit.experiments.noise_sweep.config import NoiseSweepConfig, method_keys, method_slug, reads_flags, repo_path
from alignkit.experiments.noise_sweep.data import SeedData, noised_rows, noisy_train, seed_data, training_view
from alignkit.experiments.noise_sweep.evaluate import Evaluator, degeneracy_stats, degenerate_reasons, per_item_scores
from alignkit.experiments.noise_sweep.report import plot_metric, write_report
from alignkit.experiments.noise_sweep.stats import METRICS, single_interval, summarise_cell
from alignkit.utils import atomic_write_json, atomic_write_text, stable_hash

RESULTS_VERSION = 2


# -- training -------------------------------------------------------------------------------------------------------
def train_key(recipe: dict[str, Any], data_key: str) -> str:
    """A training run's identity: its recipe and what its data trains on (:func:`training_view`, after the flip
    when the run flips), so two cells with identical training are one run. Left out: where it writes and reads,
    ``apply_flip`` (the data view holds the flip) and ``reuse_ref_logps`` (bit-identical either way). The F-DPO loss
    with λ = 0 is the DPO loss, so DPO + flip on data the flip leaves as DPO sees it (no pair flagged (1, 0), or every
    order-noised pair swapped back) is the DPO run: bit-identical training, checked on the 2026-12-02 sweep."""
    ident = {k: v for k, v in recipe.items() if k not in ("output_dir", "dataset_path", "apply_flip",
                                                           "reuse_ref_logps")}
    if ident.get("loss_type") == "fdpo" and ident.get("fdpo_lambda") == 0.0:
        ident["loss_type"] = "dpo"
    if ident.get("loss_type") != "fdpo":
        ident.pop("fdpo_lambda", None)
    return stable_hash([ident, data_key])


def train_run(recipe: dict[str, Any], run_dir: Path, key: str, reuse: Sequence[Path] = ()) -> Path:
    """Train ``recipe`` into ``run_dir`` unless a finished run with the same ``key`` is there (or in one of the
    ``reuse`` folders, which is then copied). An unfinished or different run in ``run_dir`` is removed first (the
    folder belongs to the sweep), so the trainer never resumes a run with other settings."""
    from alignkit.train import train_from_config

    if _finished(run_dir, key):
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    src = next((d for d in reuse if _finished(d, key)), None)
    if src is not None:  # e.g. the calibration run that was chosen is the sweep's DPO run at ε = 0
        shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("*_eval.json"))
        return run_dir
    train_from_config({**recipe, "output_dir": str(run_dir)})
    gc.collect()  # a sweep trains ~100 models in one process
    atomic_write_text(run_dir / "sweep_key", key)
    return run_dir


def _finished(run_dir: Path, key: str) -> bool:
    marker = run_dir / "sweep_key"
    return marker.is_file() and marker.read_text() == key and (run_dir / "metrics.json").is_file()


def base_training_recipe(cfg: NoiseSweepConfig) -> dict[str, Any]:
    from alignkit.train import load_recipe

    recipe = load_recipe(repo_path(cfg.base_recipe))
    recipe.update({"model_name_or_path": cfg.model, "max_train_samples": cfg.n_train, "report_to": "none",
                   "save_strategy": "no"})
    recipe.update(cfg.overrides)
    return recipe


# -- the record: what the report needs, apart from the adapters -------------------------------------------------
_METRIC_KEYS = ("flip_counts", "global_step", "final", "train")


class Record:
    """Small per-model results (per-item log-probabilities, answers, judgements, training metrics) under
    ``record_dir``, one JSON file per evaluated model, keyed by the training run's identity and the evaluation
    settings, never by file paths. They are a few tens of kB each, so a sweep's record can be committed: a rerun on
    another machine reuses every recorded run without its adapter, and the report can be rebuilt from it. Without
    ``record_dir`` nothing is written and nothing is reused from here (``output_dir`` still caches)."""

    def __init__(self, root: str | None) -> None:
        self.root = Path(root) if root else None
        self.seconds: dict[str, dict[str, float]] = {}  # per model used: the wall seconds it took when it was made
        self.worker: int | None = None  # the worker process writing (parallel sweeps), recorded with each model

    def get(self, name: str, key: str) -> dict[str, Any] | None:
        path = self.root / f"{name}.json" if self.root else None
        if path is None or not path.is_file():
            return None
        doc = json.loads(path.read_text())
        if doc.get("key") != key:
            return None
        self.seconds[name] = doc.get("seconds", {})
        return doc

    def put(self, name: str, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        doc = {"key": key, **payload}
        if "seconds" in doc:  # when it was made (unix time), to measure a sweep's elapsed time across processes
            doc["seconds"] = {**doc["seconds"], "finished": round(time.time(), 1), "worker": self.worker}
        self.seconds[name] = doc.get("seconds", {})
        if self.root:
            atomic_write_json(self.root / f"{name}.json", doc)
        return doc

    def time_spent(self) -> dict[str, Any]:
        """Training and evaluation seconds summed over every model this sweep used, each as measured when its record
        was made (in this process or an earlier one: the sum is the sweep's compute time, however it was split)."""
        train = sum(s.get("train", 0.0) for s in self.seconds.values())
        ev = sum(s.get("eval", 0.0) for s in self.seconds.values())
        cpu = sum(s.get("cpu", 0.0) for s in self.seconds.values())
        # elapsed: the union of the models' [start, finish] intervals (parallel workers overlap; the gaps between
        # interrupted sessions do not count)
        spans = sorted((s["finished"] - s.get("train", 0.0) - s.get("eval", 0.0), s["finished"])
                       for s in self.seconds.values() if "finished" in s)
        elapsed, end = 0.0, float("-inf")
        for a, b in spans:
            elapsed += max(0.0, b - max(a, end))
            end = max(end, b)
        return {"models": len(self.seconds), "untimed": sum(1 for s in self.seconds.values() if not s),
                "trained": sum(1 for s in self.seconds.values() if s.get("train", 0.0) > 0),
                "train_seconds": round(train, 1), "eval_seconds": round(ev, 1), "hours": round((train + ev) / 3600, 2),
                "cpu_hours": round(cpu / 3600, 2), "elapsed_hours": round(elapsed / 3600, 2),
                "elapsed_seconds": round(elapsed, 1),
                "workers": sorted({s.get("worker") for s in self.seconds.values() if s},
                                  key=lambda w: -1 if w is None else w)}


def _with_scores(raw: dict[str, Any], ref: list[list[float]] | None) -> dict[str, Any]:
    doc = {k: raw[k] for k in ("logprobs", "outputs", "hallucinated")}
    return {**doc, **per_item_scores(doc["logprobs"], ref)} if ref is not None else doc


def scored_base(ev: Evaluator, rec: Record, name: str, path: Path, items: list[dict], n_generate: int) -> dict:
    """The base model's evaluation (its own reference)."""
    key = stable_hash(["base", ev.settings_key(items, n_generate)])
    hit = rec.get(name, key)
    if hit is None:
        start, cpu = time.perf_counter(), time.process_time()
        doc = ev.evaluate(path, items, n_generate, None, None)
        hit = rec.put(name, key, {**_with_scores(doc, None),
                                  "seconds": {"eval": round(time.perf_counter() - start, 1),
                                              "cpu": round(time.process_time() - cpu, 1)}})
    return _with_scores(hit, hit["logprobs"])


def scored_run(ev: Evaluator, rec: Record, name: str, recipe: dict[str, Any], tkey: str, run_dir: Path,
               split: str, items: list[dict], n_generate: int, ref: list[list[float]],
               reuse: Sequence[Path] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(evaluation, training metrics) of one training run: from the record, else trained (or found in
    ``output_dir``) and evaluated on ``items``, then recorded."""
    key = stable_hash([tkey, split, ev.settings_key(items, n_generate)])
    hit = rec.get(name, key)
    if hit is None:
        start, cpu = time.perf_counter(), time.process_time()
        train_run(recipe, run_dir, tkey, reuse)  # ~0 s when the run was already in output_dir or copied from reuse
        trained = time.perf_counter()
        doc = ev.evaluate(run_dir / f"{split}_eval.json", items, n_generate, str(run_dir.resolve()), ref)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        hit = rec.put(name, key, {"train_key": tkey, **_with_scores(doc, None),
                                  "metrics": {k: metrics[k] for k in _METRIC_KEYS if k in metrics},
                                  "seconds": {"train": round(trained - start, 1),
                                              "eval": round(time.perf_counter() - trained, 1),
                                              "cpu": round(time.process_time() - cpu, 1)}})
    return _with_scores(hit, ref), hit["metrics"]


# -- calibration ----------------------------------------------------------------------------------------------------
def calibrate(cfg: NoiseSweepConfig, out: Path, ev: Evaluator, rec: Record, data: SeedData, recipe: dict[str, Any],
              progress: Callable[[str], None]) -> dict[str, Any]:
    """Train DPO at ε = 0 for every (lr, steps) of the grid on the calibration seed and score it on the
    validation split (never the test items). A setting passes when (1) its implicit-reward accuracy interval lies
    above ½ (the base's value: its implicit reward is 0 for every answer), (2) its log-likelihood ranking accuracy
    interval lies above the base's interval — checked only when the base's interval ends below 1.0, since a base
    that already ranks every validation pair right cannot be beaten there — and (3) its answers are not degenerate.
    The passing setting with the highest validation reward accuracy is chosen (ties: fewer steps, then lower lr).
    When none passes, the best non-degenerate one is used and the report says so."""
    cdir = out / "calibration"
    base = scored_base(ev, rec, "calibration/base", cdir / "base_eval.json", data.val, cfg.n_val_generate)
    base_ll = single_interval(base["loglik_correct"], cfg)
    base_deg = degeneracy_stats(base["outputs"])
    train_path, rows = noisy_train(cfg, data, 0.0, 0.0, out)
    data_key, _ = training_view(rows, apply_flip=False)
    table = []
    for lr in cfg.calibration.learning_rates:
        for steps in cfg.calibration.steps:
            progress(f"calibration lr={lr:g} steps={steps}")
            run = {**recipe, **method_keys("dpo", 0.0, cfg.fdpo_lambda), "dataset_path": str(train_path),
                   "learning_rate": lr, "max_steps": steps, "seed": data.seed}
            doc, _ = scored_run(ev, rec, f"calibration/lr{lr:g}_steps{steps}", run, train_key(run, data_key),
                                cdir / f"lr{lr:g}_steps{steps}", "val", data.val, cfg.n_val_generate,
                                base["logprobs"])
            ra = single_interval(doc["reward_correct"], cfg)
            la = single_interval(doc["loglik_correct"], cfg)
            deg = degeneracy_stats(doc["outputs"])
            reasons = degenerate_reasons(deg, base_deg, cfg.degeneracy)
            # the log-likelihood ranking check applies only when the base leaves room above it: a base already at
            # 1.0 (every validation pair ranked right) cannot be beaten, and requiring it would reject every setting
            checks = {"reward_above_base": ra["low"] > 0.5, "not_degenerate": not reasons}
            if base_ll["high"] < 1.0:
                checks["loglik_above_base"] = la["low"] > base_ll["high"]
            table.append({"learning_rate": lr, "max_steps": steps, "reward_acc": ra, "loglik_acc": la,
                          "degeneracy": deg, "degenerate_reasons": reasons, "checks": checks,
                          "passed": all(checks.values())})
    passing = [r for r in table if r["passed"]]
    pool = passing or [r for r in table if r["checks"]["not_degenerate"]] or table
    best = max(pool, key=lambda r: (r["reward_acc"]["mean"], -r["max_steps"], -r["learning_rate"]))
    return {"seed": data.seed, "n_val": len(data.val), "n_val_generate": cfg.n_val_generate,
            "base": {"loglik_acc": base_ll, "degeneracy": base_deg, "reward_acc": 0.5},
            "table": table, "chosen": {"learning_rate": best["learning_rate"], "max_steps": best["max_steps"]},
            "passed": bool(passing)}


# -- the sweep ------------------------------------------------------------------------------------------------------
def seed_pass(cfg: NoiseSweepConfig, out: Path, ev: Evaluator, rec: Record, data: SeedData, recipe: dict[str, Any],
              ref: list[list[float]], say: Callable[[str], None], owned: Callable[[str], bool] | None = None,
              ) -> tuple[dict[tuple[str, float, float], dict], list[dict[str, Any]]]:
    """Train and score every cell of one seed's plan (one training per identity, see :func:`train_key`); returns
    the scored documents per (method, ε, δ) and one summary row per cell. With ``owned`` (a worker) only the
    identities it accepts are trained and scored, and nothing is returned."""
    plan = sweep_plan(cfg)
    trained: dict[tuple[str, float, float], dict] = {}
    runs: list[dict[str, Any]] = []
    by_key: dict[str, tuple[dict, dict, str]] = {}
    seed = data.seed
    for i, (method, eps, delta) in enumerate(plan):
        keys = method_keys(method, eps, cfg.fdpo_lambda)
        if keys is None:
            continue  # plain DPO: filled from the dpo run by the caller
        cell = f"eps{eps:g}_delta{delta:g}/{method_slug(method)}"
        train_path, rows = noisy_train(cfg, data, eps, delta, out)
        data_key, swapped = training_view(rows, apply_flip=keys["apply_flip"])
        run = {**recipe, **keys, "dataset_path": str(train_path), "seed": seed}
        tkey = train_key(run, data_key)
        same_as = by_key[tkey][2] if tkey in by_key else None
        mine = owned is None or owned(tkey)
        say(f"seed {seed} ({cfg.seeds.index(seed) + 1}/{len(cfg.seeds)}), {method} ε={eps:g} δ={delta:g} "
            f"({i + 1}/{len(plan)})" + (f": the same training as {same_as}" if same_as else "")
            + ("" if mine else ": another worker's"))
        if same_as:
            doc, metrics, _ = by_key[tkey]
            metrics = {**metrics, "flip_counts": {"train": swapped}}
        elif mine:
            doc, metrics = scored_run(ev, rec, f"seed{seed}/{cell}", run, tkey, out / "runs" / f"seed{seed}" / cell,
                                      "test", data.test, cfg.n_generate, ref,
                                      reuse=sorted((out / "calibration").glob("lr*_steps*")))
            by_key[tkey] = (doc, metrics, cell)
        else:
            by_key[tkey] = ({}, {}, cell)
        if owned is not None:
            continue  # a worker only trains and records; the serial pass after the workers builds the summary
        trained[(method, eps, delta)] = doc
        runs.append({"seed": seed, "method": method, "eps": eps, "delta": delta, "cell": cell,
                     "same_training_as": same_as, "flip_counts": metrics.get("flip_counts", {}),
                     "global_step": metrics.get("global_step"),
                     "final_loss": metrics.get("final", {}).get("loss"),
                     "train_seconds": metrics.get("train", {}).get("train_runtime"),
                     **{k: statistics.fmean(v for v in doc[f] if v is not None) if any(
                         v is not None for v in doc[f]) else None for k, (f, _, _) in METRICS.items()},
                     "degeneracy": degeneracy_stats(doc["outputs"])})
    return trained, runs


def seed_identities(cfg: NoiseSweepConfig, data: SeedData, recipe: dict[str, Any]) -> dict[str, str]:
    """The distinct trainings of one seed's plan, in plan order: training identity (:func:`train_key`) -> its
    training-data view. Builds the rows; writes no files."""
    out: dict[str, str] = {}
    for method, eps, delta in sweep_plan(cfg):
        keys = method_keys(method, eps, cfg.fdpo_lambda)
        if keys is not None:
            view, _ = training_view(noised_rows(data, eps, delta)[0], apply_flip=keys["apply_flip"])
            out.setdefault(train_key({**recipe, **keys, "seed": data.seed}, view), view)
    return out


# -- parallel workers -----------------------------------------------------------------------------------------------
def assign_workers(cfg: NoiseSweepConfig, datas: dict[int, SeedData], recipe: dict[str, Any],
                   n: int) -> dict[str, int]:
    """Training identity -> worker. The identities of one (seed, training data) stay together, since the reference
    pass is shared within a process only (``reuse_ref_logps``); groups go largest first to the least loaded worker."""
    groups: dict[tuple[int, str], list[str]] = {}
    for seed in cfg.seeds:
        for tkey, view in seed_identities(cfg, datas[seed], recipe).items():
            groups.setdefault((seed, view), []).append(tkey)
    load, owner = [0] * n, {}
    for _, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        w = load.index(min(load))
        load[w] += len(members)
        owner.update({t: w for t in members})
    return owner


def _worker(cfg: NoiseSweepConfig, recipe: dict[str, Any], owner: dict[str, int], index: int, threads: int) -> None:
    import torch

    from alignkit.models import resolve_model

    torch.set_num_threads(threads)

    def say(msg: str) -> None:
        print(f"[noise-sweep worker {index + 1}/{cfg.workers}] {msg}", flush=True)

    out, rec = Path(cfg.output_dir), Record(cfg.record_dir)
    rec.worker = index
    ev = Evaluator(cfg, resolve_model(cfg.model))
    try:
        for seed in cfg.seeds:
            data = seed_data(cfg, seed)
            base = scored_base(ev, rec, f"seed{seed}/base", out / "eval" / f"seed{seed}" / "base.json", data.test,
                               cfg.n_generate)  # scored by the parent before the workers started
            seed_pass(cfg, out, ev, rec, data, recipe, base["logprobs"], say, owned=lambda t: owner[t] == index)
    finally:
        ev.close()


def run_workers(cfg: NoiseSweepConfig, datas: dict[int, SeedData], recipe: dict[str, Any],
                say: Callable[[str], None]) -> None:
    """Train and score the sweep's runs in ``cfg.workers`` processes (spawned, so each starts a clean torch), each
    with an equal share of the cores. Every finished run is in output_dir (and record_dir) as in a serial sweep, so
    the serial pass that follows only reads them, and a failed or killed worker loses only its run in progress."""
    import multiprocessing
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // cfg.workers)
    owner = assign_workers(cfg, datas, recipe, cfg.workers)
    say(f"{len(owner)} trainings over {cfg.workers} worker processes, {threads} thread(s) each")
    ctx = multiprocessing.get_context("spawn")
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: str(threads) for k in saved})  # read by the children's OpenMP/MKL at start-up
    try:
        procs = [ctx.Process(target=_worker, args=(cfg, recipe, owner, k, threads), name=f"noise-sweep-worker{k}")
                 for k in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    failed = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"noise sweep: {', '.join(failed)} failed; every finished run is kept, so a rerun resumes")


def run_noise_sweep(cfg: NoiseSweepConfig, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from alignkit.models import resolve_model

    say = progress or (lambda msg: print(f"[noise-sweep] {msg}", flush=True))
    out = Path(cfg.output_dir)
    base_path = resolve_model(cfg.model)
    ev = Evaluator(cfg, base_path)
    recipe = base_training_recipe(cfg)
    datas = {s: seed_data(cfg, s) for s in cfg.seeds}
    cal_data = datas.get(cfg.calibration_seed) or seed_data(cfg, cfg.calibration_seed)
    rec = Record(cfg.record_dir)
    try:
        calibration = calibrate(cfg, out, ev, rec, cal_data, recipe, say)
        chosen = calibration["chosen"]
        say(f"calibration chose lr={chosen['learning_rate']:g}, steps={chosen['max_steps']} "
            f"({'passed' if calibration['passed'] else 'NO setting passed'})")
        recipe = {**recipe, **chosen}

        if cfg.workers > 1:
            for seed in cfg.seeds:  # before the workers: every run is scored against its seed's base
                scored_base(ev, rec, f"seed{seed}/base", out / "eval" / f"seed{seed}" / "base.json", datas[seed].test,
                            cfg.n_generate)
            ev.close()  # the workers load their own models
            run_workers(cfg, datas, recipe, say)

        docs: dict[tuple[str, float, float, int], dict] = {}
        runs: list[dict[str, Any]] = []
        base_docs = {}
        for seed in cfg.seeds:
            data = datas[seed]
            base_docs[seed] = scored_base(ev, rec, f"seed{seed}/base", out / "eval" / f"seed{seed}" / "base.json",
                                          data.test, cfg.n_generate)
            trained, seed_runs = seed_pass(cfg, out, ev, rec, data, recipe, base_docs[seed]["logprobs"], say)
            runs += seed_runs
            for method in cfg.methods:  # every panel gets every method
                for eps in cfg.eps:
                    for delta in cfg.delta:
                        src = (method if method_keys(method, eps, cfg.fdpo_lambda) is not None else "dpo", eps,
                               delta if reads_flags(method) else cfg.delta[0])
                        docs[(method, eps, delta, seed)] = trained[src]
    finally:
        ev.close()

    summary = []
    for method in cfg.methods:
        for eps in cfg.eps:
            for delta in cfg.delta:
                cell = summarise_cell([docs[(method, eps, delta, s)] for s in cfg.seeds], cfg)
                cell.update(method=method, eps=eps, delta=delta,
                            reuses=("dpo" if method_keys(method, eps, cfg.fdpo_lambda) is None else None))
                summary.append(cell)
    base_cell = summarise_cell(list(base_docs.values()), cfg)
    base_deg = base_cell["degeneracy"]
    for cell in summary:
        cell["degenerate_reasons"] = degenerate_reasons(cell["degeneracy"], base_deg, cfg.degeneracy)
    doc = {"version": RESULTS_VERSION, "config": asdict(cfg), "calibration": calibration, "base": base_cell,
           "runs": runs, "summary": summary, "time": rec.time_spent()}
    atomic_write_json(out / "results.json", doc)
    plots = [plot_metric(doc, m, out / f"{m}_vs_noise.png") for m in METRICS]
    report = write_report(doc, plots, out / "report.md")
    return {"report": str(report), "plots": [str(p) for p in plots], "results": str(out / "results.json"),
            "summary": summary}


def sweep_plan(cfg: NoiseSweepConfig) -> list[tuple[str, float, float]]:
    """Every (method, ε, δ) that is trained: flag-blind methods once per ε (at the first δ), flag-reading ones per δ."""
    plan = []
    for eps in cfg.eps:
        for method in cfg.methods:
            for delta in (cfg.delta if reads_flags(method) else cfg.delta[:1]):
                plan.append((method, eps, delta))
    return plan


def count_runs(cfg: NoiseSweepConfig) -> dict[str, Any]:
    """Training runs of a full sweep (for sizing): the calibration grid, and per seed one run per distinct (method
    keys, training data) of the plan — the DPO stand-ins and the cells whose data the flip makes identical
    (:func:`training_view`) are not trained again. Builds each seed's rows (no files written)."""
    per_seed = [len(seed_identities(cfg, seed_data(cfg, seed), {})) for seed in cfg.seeds]
    return {"calibration": len(cfg.calibration.learning_rates) * len(cfg.calibration.steps),
            "per_seed": per_seed, "sweep": sum(per_seed)}
