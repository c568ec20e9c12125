"""The GPU check behind scripts/gpu_check.sh: bf16 F-DPO and F²C under ZeRO-2/3 on one GPU, step time + peak memory."""

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


def run(trainer: str, zero: str, model: str, steps: int, work: Path) -> dict:
    from alignkit.cli.train import launch_command

    out = work / f"{trainer}-{zero}-{abs(hash(model)) % 10**6}"
    common = {"model_name_or_path": model, "output_dir": str(out), "max_steps": steps, "bf16": True,
              "dtype": "bfloat16", "logging_steps": 1, "report_to": "none", "save_strategy": "no", "seed": 0,
              "gradient_checkpointing": True, "use_peft": False}
    if trainer == "fdpo":
        from alignkit.builders.factworld import main as factworld

        data = factworld({"output_dir": str(work / "factworld"), "n_train": 64, "n_test": 8, "rho": 0.3},
                         progress=False)
        recipe = {**common, "trainer": "fdpo", "dataset_path": data["train"], "loss_type": "fdpo",
                  "per_device_train_batch_size": 4, "max_length": 256, "learning_rate": 1e-6}
    else:
        recipe = {**yaml.safe_load((REPO / "recipes/smollm2-135m/f2c-rte.yaml").read_text()), **common,
                  "dataset_path": "pkg:consistency/rte.jsonl", "learning_rate": 1e-5}
    rp = work / f"{out.name}.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    cmd = launch_command(str(rp), str(REPO / "accelerate_configs" / f"{zero}.yaml"), num_processes=1, cpu=False)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"trainer": trainer, "zero": zero, "model": model, "ok": False, "error": proc.stderr[-1500:]}
    m = json.loads((out / "metrics.json").read_text())
    steps_done = m.get("global_step") or steps
    return {"trainer": trainer, "zero": zero, "model": model, "ok": True, "wall_s": round(wall, 1),
            "step_s": round(m["train"]["train_runtime"] / steps_done, 3),
            "peak_gpu_mib": m.get("peak_memory_mib"), "final_loss": m.get("final", {}).get("loss")}


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-models", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--output", default="gpu_check_out")
    a = ap.parse_args()
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name(0)
    rows = []
    for model in local_models(a.max_models):
        for trainer in ("fdpo", "f2c"):
            for zero in ("zero2", "zero3"):
                r = run(trainer, zero, model, a.steps, out)
                print(json.dumps(r), flush=True)
                rows.append(r)
    atomic_write_json(out / "gpu_check.json", {"device": card, "runs": rows})
    md = [f"## GPU check on {card} (bf16, 1 GPU)", "", "| trainer | ZeRO | model | step (s) | peak GPU MiB | ok |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['trainer']} | {r['zero']} | {Path(r['model']).name} | {r.get('step_s', '-')} | "
           f"{r.get('peak_gpu_mib', '-')} | {r['ok']} |" for r in rows]
    atomic_write_text(out / "gpu_check.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
