"""The GPU check behind scripts/gpu_check.sh: bf16 F-DPO and F²C under ZeRO-2/3 on one GPU, step time + peak memory,
then the quick eval suite on the vLLM backend with its wall time.

``--dry-run`` runs the same code path on the CPU (CI does): the tiny random model only, one step, fp32, the
single-process launcher without DeepSpeed, and the eval command printed instead of run — so the recipes, the launch
and the reading of both trainers' ``metrics.json`` are checked wherever there is no GPU."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignkit.utils import atomic_write_json, atomic_write_text  # noqa: E402


def local_models(limit: int) -> list[str]:
    """The tiny random model, the embedded SmolLM2, and snapshots in the HF cache (small ones first)."""
    from alignkit.models import build_tiny_llama, resolve_model

    found = [str(build_tiny_llama()), resolve_model("smollm2-135m-instruct")]
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    snaps = []
    for cfg in hub.glob("models--*/snapshots/*/config.json"):
        size = sum(f.stat().st_size for f in cfg.parent.glob("*.safetensors"))
        if size:
            snaps.append((size, str(cfg.parent)))
    found += [p for _, p in sorted(snaps)]
    return found[:limit]


def summarise(metrics_path: Path, steps: int) -> dict:
    """Step time, peak memory and final loss from a run's metrics.json (one layout for F-DPO and F²C)."""
    m = json.loads(metrics_path.read_text())
    steps_done = m.get("global_step") or steps
    return {"step_s": round(m["train"]["train_runtime"] / steps_done, 3),
            "peak_gpu_mib": m.get("peak_memory_mib"), "peak_rss_mib": m.get("peak_rss_mib"),
            "final_loss": (m.get("final") or {}).get("loss"), "global_step": m.get("global_step")}


def run(trainer: str, zero: str, model: str, steps: int, work: Path, *, dry_run: bool = False) -> dict:
    from alignkit.cli.train import launch_command

    out = work / f"{trainer}-{zero}-{abs(hash(model)) % 10**6}"
    precision = {"bf16": False} if dry_run else {"bf16": True, "dtype": "bfloat16"}
    common = {"model_name_or_path": model, "output_dir": str(out), "max_steps": steps, **precision,
              "logging_steps": 1, "report_to": "none", "save_strategy": "no", "seed": 0,
              "gradient_checkpointing": not dry_run, "use_peft": False}
    if trainer == "fdpo":
        from alignkit.builders.factworld import main as factworld

        data = factworld({"output_dir": str(work / "factworld"), "n_train": 64, "n_test": 8, "rho": 0.3},
                         progress=False)
        recipe = {**common, "trainer": "fdpo", "dataset_path": data["train"], "loss_type": "fdpo",
                  "per_device_train_batch_size": 4, "max_length": 256, "learning_rate": 1e-6}
    else:
        recipe = {**yaml.safe_load((REPO / "recipes/smollm2-135m/f2c-rte.yaml").read_text()), **common,
                  "dataset_path": "pkg:consistency/rte.jsonl", "learning_rate": 1e-5}
    if trainer == "f2c" and dry_run:
        recipe.update(consistency_examples=2, per_device_train_batch_size=1, gradient_accumulation_steps=1)
    rp = work / f"{out.name}.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    if dry_run:  # CPU, one process, no DeepSpeed: the launch and the metrics reading are what is checked
        cmd = launch_command(str(rp), None, num_processes=1, cpu=True)
    else:
        cmd = launch_command(str(rp), str(REPO / "accelerate_configs" / f"{zero}.yaml"), num_processes=1, cpu=False)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"trainer": trainer, "zero": zero, "model": model, "ok": False, "error": proc.stderr[-1500:]}
    return {"trainer": trainer, "zero": zero, "model": model, "ok": True, "wall_s": round(wall, 1),
            **summarise(out / "metrics.json", steps)}


def eval_quick(out: Path, *, dry_run: bool = False) -> dict:
    """The quick suite on the embedded model with the vLLM backend (CUDA defaults: bf16, CUDA graphs, 0.9 memory)."""
    cmd = [sys.executable, "-m", "alignkit.cli", "eval", "--suite", "quick", "--backend", "vllm",
           "--model", "base=smollm2-135m-instruct", "--out", str(out / "eval-quick"), "--no-progress"]
    if dry_run:
        return {"command": cmd, "ok": True, "ran": False}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return {"command": cmd, "ok": proc.returncode == 0, "ran": True, "wall_s": round(time.perf_counter() - t0, 1),
            **({} if proc.returncode == 0 else {"error": proc.stderr[-1500:]})}


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-models", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--output", default="gpu_check_out")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU rehearsal: tiny model, 1 step, no DeepSpeed, eval command printed, not run")
    ap.add_argument("--no-eval", action="store_true", help="skip the quick-suite vLLM evaluation")
    a = ap.parse_args(argv)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    if a.dry_run:
        card, models, steps, zeros = "CPU (dry run)", local_models(1), 1, ("none",)
    else:
        card, models, steps, zeros = torch.cuda.get_device_name(0), local_models(a.max_models), a.steps, \
            ("zero2", "zero3")
    rows = []
    for model in models:
        for trainer in ("fdpo", "f2c"):
            for zero in zeros:
                r = run(trainer, zero, model, steps, out, dry_run=a.dry_run)
                print(json.dumps(r), flush=True)
                rows.append(r)
    evaluation = None if a.no_eval else eval_quick(out, dry_run=a.dry_run)
    if evaluation:
        print(json.dumps(evaluation), flush=True)
    atomic_write_json(out / "gpu_check.json", {"device": card, "runs": rows, "eval_quick": evaluation})
    md = [f"## GPU check on {card} ({'fp32, CPU' if a.dry_run else 'bf16, 1 GPU'})", "",
          "| trainer | ZeRO | model | step (s) | peak GPU MiB | ok |", "|---|---|---|---|---|---|"]
    md += [f"| {r['trainer']} | {r['zero']} | {Path(r['model']).name} | {r.get('step_s', '-')} | "
           f"{r.get('peak_gpu_mib', '-')} | {r['ok']} |" for r in rows]
    if evaluation and evaluation["ran"]:
        md += ["", f"Quick suite, vLLM backend, embedded model: {evaluation.get('wall_s')} s "
                   f"({'ok' if evaluation['ok'] else 'failed'})."]
    atomic_write_text(out / "gpu_check.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["ok"] for r in rows) and (evaluation is None or evaluation["ok"]) else 1


if __name__ == "__main__":
    sys.exit(main())
