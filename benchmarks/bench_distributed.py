"""Per-rank memory of a 2-process ZeRO-3 run vs 2-process DDP on the same model and data (CPU, gloo).

    python -m benchmarks.bench_distributed --output benchmarks/results [--hidden 512 --layers 4 --steps 4]

Full fine-tuning of a random Llama (so parameters, gradients and Adam state dominate memory), F-DPO loss, the
repo's accelerate configs. Each rank's peak RSS is sampled from outside (psutil, every 50 ms) so the training code is
measured untouched. Writes ``bench_distributed.json`` / ``.md``. Expected: ZeRO-3 shards parameters, gradients and
optimizer state, so its per-rank peak is lower once the model is large enough to dominate the runtime's own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from alignkit.utils import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: what colour is item {i}?", "chosen": f"Item {i} is blue.",
             "rejected": f"Item {i} is a red {i * 7} metre whale.", "h_w": i % 2, "h_l": 1 - i % 2} for i in range(n)]


def run_one(config: str, model: str, steps: int, work: Path) -> dict:
    import psutil

    from alignkit.trainers.cli import launch_command

    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _pairs(16)), encoding="utf-8")
    out = work / f"out-{config.split('.')[0]}"
    recipe = {"model_name_or_path": model, "dataset_path": str(data), "output_dir": str(out), "loss_type": "fdpo",
              "max_steps": steps, "per_device_train_batch_size": 2, "learning_rate": 1e-4, "max_length": 64,
              "logging_steps": 1, "report_to": "none", "save_strategy": "no", "seed": 0,
              "dataloader_pin_memory": False, "gradient_checkpointing": False}
    rp = work / f"recipe-{config}.yaml"
    rp.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    cmd = launch_command(str(rp), str(REPO / "accelerate_configs" / config), num_processes=2, cpu=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        try:
            for child in proc.children(recursive=True):
                if "alignkit.train" in " ".join(child.cmdline()):
                    peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{config} run failed:\n{err[-3000:]}")
    ranks = sorted(peaks.values(), reverse=True)[:2]
    return {"config": config, "wall_s": round(time.perf_counter() - t0, 1),
            "per_rank_peak_rss_mib": [round(r / 2**20, 1) for r in ranks]}


def run(out: Path, *, hidden: int = 512, layers: int = 4, steps: int = 4) -> dict:
    from alignkit.models import build_tiny_llama

    model = str(build_tiny_llama(hidden_size=hidden, num_layers=layers, num_heads=hidden // 64,
                                 intermediate_size=hidden * 4))
    with tempfile.TemporaryDirectory() as tmp:
        ddp = run_one("cpu_ddp.yaml", model, steps, Path(tmp))
        z3 = run_one("zero3.yaml", model, steps, Path(tmp))
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    n_params = cfg.vocab_size * cfg.hidden_size + layers * (4 * hidden * hidden + 3 * hidden * cfg.intermediate_size)
    mean = lambda r: sum(r["per_rank_peak_rss_mib"]) / max(1, len(r["per_rank_peak_rss_mib"]))  # noqa: E731
    result = {"model": {"hidden": hidden, "layers": layers, "approx_params": n_params}, "steps": steps,
              "ddp": ddp, "zero3": z3, "zero3_over_ddp_mean_rank_rss": round(mean(z3) / mean(ddp), 3)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "bench_distributed.json", result)
    md = [
        "## Distributed memory: 2-process ZeRO-3 vs DDP (CPU, gloo)",
        "",
        f"Random Llama, hidden {hidden}, {layers} layers (~{n_params / 1e6:.0f}M parameters), full fine-tuning, "
        f"F-DPO, {steps} steps, batch 2 per rank. Peak RSS per rank, sampled every 50 ms.",
        "",
        "| run | rank peaks (MiB) | wall (s) |",
        "|---|---|---|",
        f"| DDP | {ddp['per_rank_peak_rss_mib']} | {ddp['wall_s']} |",
        f"| ZeRO-3 | {z3['per_rank_peak_rss_mib']} | {z3['wall_s']} |",
        "",
        f"ZeRO-3 ÷ DDP mean per-rank peak RSS: **{result['zero3_over_ddp_mean_rank_rss']}**.",
        "",
        f"Reading: fp32 weights + gradients + Adam moments are 16 bytes per parameter, "
        f"{16 * n_params / 2**20:.0f} MiB for this model; sharding over 2 ranks can save at most half of that per "
        "rank. A ratio above 1 means DeepSpeed's own runtime and ZeRO-3 buffers outweigh that saving at this size; "
        "the ratio is expected to fall below 1 (not measured here) once the model's states dominate the process "
        "(pass --hidden/--layers).",
    ]
    atomic_write_text(out / "bench_distributed.md", "\n".join(md) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="benchmarks/results")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args(argv)
    res = run(Path(a.output), hidden=a.hidden, layers=a.layers, steps=a.steps)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
