"""Per-rank memory of 2-process DDP vs ZeRO-2 vs ZeRO-3 on the same model and data (CPU, gloo).

    python -m benchmarks.bench_distributed --output benchmarks/results [--hidden 1024 --layers 16 --steps 3]

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


MMAP_THRESHOLD = 1 << 20  # bytes; see run_one


def run_one(config: str, model: str, steps: int, work: Path) -> dict:
    import psutil

    from alignkit.cli.train import launch_command

    work.mkdir(parents=True, exist_ok=True)
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
    # glibc returns freed blocks of at least 1 MiB to the system at once. By default its threshold rises to 32 MiB after
    # the first large free, and ZeRO-3's per-layer gathered weights (1-32 MiB, allocated and freed every step) then
    # fragment the heap: measured on the 51M model, ZeRO-3's per-rank peak is 2034 MiB with glibc's default and 1782
    # with this, DDP's 1976 either way. The same setting for every config, so the peaks compare the state they hold.
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    t0 = time.perf_counter()
    # stderr to a file, not a pipe: nothing reads a pipe until the run ends, and once the workers' warnings fill its
    # buffer one rank blocks writing while the other waits for it in a collective (seen as a hang in ZeRO-3's
    # gradient reduce-scatter, which warns once per call on gloo).
    err_path = work / f"stderr-{config}.log"
    with open(err_path, "wb") as err_file:
        proc = psutil.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
        peaks: dict[int, tuple[int, float]] = {}  # pid -> (peak RSS, seconds after launch it was reached)
        while proc.poll() is None:
            try:
                for child in proc.children(recursive=True):
                    if "alignkit.train" in " ".join(child.cmdline()):
                        rss = child.memory_info().rss
                        if rss > peaks.get(child.pid, (0, 0.0))[0]:
                            peaks[child.pid] = (rss, time.perf_counter() - t0)
            except psutil.Error:
                pass
            time.sleep(0.05)
    if proc.returncode != 0:
        err = err_path.read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"{config} run failed:\n{err[-3000:]}")
    wall = time.perf_counter() - t0
    ranks = sorted(peaks.values(), reverse=True)[:2]
    return {"config": config, "wall_s": round(wall, 1),
            "per_rank_peak_rss_mib": [round(r / 2**20, 1) for r, _ in ranks],
            # seconds after launch when each rank peaked (compare with wall_s: the final save is its last seconds)
            "per_rank_peak_at_s": [round(t, 1) for _, t in ranks]}


def approx_params(vocab: int, hidden: int, layers: int, intermediate: int) -> int:
    """Parameters of the random Llama (tied embeddings, full-width attention); norms are negligible."""
    return vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * intermediate)


# Bytes per parameter held by each rank for fp32 weights (4) + gradients (4) + Adam moments (8), N = 2 ranks.
# DDP replicates all three; ZeRO-2 shards gradients and optimizer state; ZeRO-3 also shards the weights (1/N).
IDEAL_STATE_BYTES = {"cpu_ddp.yaml": 16.0, "zero2.yaml": 4 + 12 / 2, "zero3.yaml": 16 / 2}
CONFIGS = {"cpu_ddp.yaml": "DDP", "zero2.yaml": "ZeRO-2", "zero3.yaml": "ZeRO-3"}


def check_memory(n_params: int) -> None:
    """Refuse to start when two DDP ranks might not fit: an out-of-memory kill takes down everything on the machine.
    DDP needs ~20 bytes per parameter per rank (16 of state + 4 of gradient buckets) plus ~1.5 GiB of runtime."""
    import psutil

    need = 2 * (20 * n_params + 1.5 * 2**30)
    avail = psutil.virtual_memory().available
    if need > 0.8 * avail:
        raise SystemExit(f"bench_distributed: two DDP ranks of a {n_params / 1e6:.0f}M model need about "
                         f"{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB is available; "
                         "pass a smaller --hidden/--layers")


def run(out: Path, *, hidden: int = 1024, layers: int = 16, steps: int = 3) -> dict:
    """Each config at the measured size and at a tiny size; the tiny run's peak is the process's own runtime
    (torch, DeepSpeed, gloo, data), so ``big - tiny`` is the memory the model's state costs each rank."""
    from alignkit.models import build_tiny_llama

    inter = int(hidden * 2.75) // 64 * 64
    model = str(build_tiny_llama(hidden_size=hidden, num_layers=layers, num_heads=hidden // 64,
                                 intermediate_size=inter))
    small = str(build_tiny_llama(hidden_size=64, num_layers=1, num_heads=1, intermediate_size=128))
    from transformers import AutoConfig

    n_params = approx_params(AutoConfig.from_pretrained(model).vocab_size, hidden, layers, inter)
    check_memory(n_params)
    mean = lambda r: sum(r["per_rank_peak_rss_mib"]) / max(1, len(r["per_rank_peak_rss_mib"]))  # noqa: E731
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:  # one run at a time: their peaks must not add up on the machine
            base = run_one(config, small, 1, Path(tmp) / f"small-{config}")
            big = run_one(config, model, steps, Path(tmp) / f"big-{config}")
            state = mean(big) - mean(base)
            rows[config] = {"run": big, "runtime": base, "state_mib": round(state, 1),
                            "ideal_state_mib": round(IDEAL_STATE_BYTES[config] * n_params / 2**20, 1)}
    ddp = rows["cpu_ddp.yaml"]
    for r in rows.values():
        r["peak_over_ddp"] = round(mean(r["run"]) / mean(ddp["run"]), 3)
        r["state_over_ddp"] = round(r["state_mib"] / ddp["state_mib"], 3)
        r["state_over_ideal"] = round(r["state_mib"] / r["ideal_state_mib"], 3)
        r["state_over_one_over_n"] = round(r["state_mib"] / (16 * n_params / 2 / 2**20), 3)
    result = {"malloc_mmap_threshold": MMAP_THRESHOLD,
              "model": {"hidden": hidden, "layers": layers, "intermediate": inter, "approx_params": n_params},
              "steps": steps, "runs": rows,
              "zero3_over_ddp_mean_rank_rss": rows["zero3.yaml"]["peak_over_ddp"],
              "zero2_over_ddp_mean_rank_rss": rows["zero2.yaml"]["peak_over_ddp"]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "bench_distributed.json", result)
    md = [
        "## Distributed memory: 2-process DDP vs ZeRO-2 vs ZeRO-3 (CPU, gloo)",
        "",
        f"Random Llama, hidden {hidden}, {layers} layers, MLP {inter} (~{n_params / 1e6:.0f}M parameters), full "
        f"fine-tuning in fp32 with Adam, F-DPO, {steps} steps, batch 2 per rank. Peak RSS per rank, sampled every "
        "50 ms from outside. *State* = the rank's peak minus the same config's peak on a 1-layer, 64-wide model "
        "(the runtime's own memory). *Ideal* = bytes per parameter each rank must hold with 2 ranks: DDP 16 "
        "(weights 4 + gradients 4 + Adam 8), ZeRO-2 10 (gradients and Adam sharded), ZeRO-3 8 (everything sharded, "
        "1/N of DDP's 16). Workers run with glibc's MALLOC_MMAP_THRESHOLD_ at 1 MiB (every config), so ZeRO-3's "
        "per-step gathered weights do not fragment the heap (bench_distributed.run_one).",
        "",
        "| run | rank peaks (MiB) | runtime peak (MiB) | state (MiB) | ideal state (MiB) | state ÷ ideal | "
        "peak ÷ DDP | state ÷ DDP state | state ÷ (16 B/param ÷ 2) | wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, name in CONFIGS.items():
        r = rows[config]
        md.append(f"| {name} | {r['run']['per_rank_peak_rss_mib']} | {mean(r['runtime']):.0f} | {r['state_mib']:.0f} "
                  f"| {r['ideal_state_mib']:.0f} | {r['state_over_ideal']} | {r['peak_over_ddp']} | "
                  f"{r['state_over_ddp']} | {r['state_over_one_over_n']} | {r['run']['wall_s']} |")
    md += [
        "",
        f"ZeRO-2 ÷ DDP mean per-rank peak: **{result['zero2_over_ddp_mean_rank_rss']}**; "
        f"ZeRO-3 ÷ DDP: **{result['zero3_over_ddp_mean_rank_rss']}** (ideal state ratios 0.625 and 0.5).",
        "",
        "Reading: a state ÷ ideal above 1 is memory a rank holds beyond the weights, gradients and Adam moments it "
        "must keep: DDP's gradient buckets (a second gradient copy), DeepSpeed's flat fp32 partitions and "
        "communication buffers, and activations of the batch. The last column is the stage's distance from "
        "the 1/N limit for all three kinds of state.",
    ]
    atomic_write_text(out / "bench_distributed.md", "\n".join(md) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="benchmarks/results")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args(argv)
    res = run(Path(a.output), hidden=a.hidden, layers=a.layers, steps=a.steps)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
