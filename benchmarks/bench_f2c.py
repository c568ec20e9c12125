"""F²C step cost: one padded forward over all K×C (format, choice) sequences vs a per-format loop (K forwards of C
sequences) over the same examples, each followed by the same F²C loss and backward.

    python -m benchmarks.bench_f2c --output benchmarks/results [--model smollm2-135m-instruct] [--examples 2]

Each mode runs in its own process so that its peak RSS (kernel rusage) is its own. Writes ``bench_f2c.json`` and
``bench_f2c.md``. Target (issue, not asserted): batched ≥ 2× faster than the loop on this CPU. Run under
``flock /tmp/alignkit-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from alignkit.utils import atomic_write_json, atomic_write_text
from benchmarks.common import machine_info, repeat

REPO = Path(__file__).resolve().parents[1]

# Issue 13 item 5: what the ratio above means and why the trainer keeps the batched forward (written from the
# measurements; appended to every run's table).
F2C_READING = """**Reading.** On this CPU both layouts are compute-bound: 10 sequences of ~230 tokens already keep the \
2 cores
busy, so one call instead of ten saves only per-call overhead (kernel dispatch, one pass of weight reads per call), a
few percent, and the batched forward holds every activation of the step at once (about 1.6 GiB more peak RSS here).
The batched forward should win where a per-format forward leaves the device idle: on a GPU with small per-device
batches (B of 1-4, so C = 2 sequences per call), where a forward is bound by kernel launches and weight reads from
HBM rather than by FLOPs; there K×C sequences in one call cost about one call's latency instead of K, up to K× on the
forward, until B·K·C sequences fill the GPU, after which the two converge again. The trainer keeps the batched path
because it was never slower in any measurement we have (1.03× here); its memory cost grows with B·K·C, so lower
per_device_train_batch_size (with gradient accumulation) if it does not fit. The GPU ratio itself is not measured
yet: scripts/gpu_check.sh records the F²C step's time and memory under ZeRO, not this comparison."""


def _setup(model_name: str, examples: int, formats: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency
    from alignkit.models import resolve_model
    from alignkit.trainers.f2c_config import F2CConfig
    from alignkit.trainers.f2c_trainer import F2CCollator

    data = Path(tempfile.mkdtemp()) / "rte.jsonl"
    build_consistency(ConsistencyBuildConfig(data="pkg:consistency/rte.jsonl",
                                             templates="super_glue/rte", output=str(data), n=examples,
                                             heldout=10 - formats, seed=0))
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    path = resolve_model(model_name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train()
    args = F2CConfig(output_dir=str(data.parent), use_cpu=True, report_to=[])
    return model, F2CCollator(tok, max_length=256)(rows), args


def _step(model, batch, args, mode: str) -> float:
    import torch

    from alignkit.losses.f2c import f2c_batch_loss
    from alignkit.trainers.f2c_trainer import answer_forward

    b, k, c = (int(x) for x in batch["shape"])
    if mode == "batched":
        _, logp, tok_lp = answer_forward(model, batch)  # what F2CTrainer.compute_loss calls
    else:  # one forward per (example, format) over its C choices, trimmed to their longest sequence; the same
        # answer-position-only projection, so the ratio measures batching alone
        parts = []
        for g in range(b * k):
            rows = slice(g * c, (g + 1) * c)
            width = int(batch["attention_mask"][rows].sum(-1).max())
            sub = {"input_ids": batch["input_ids"][rows, :width],
                   "attention_mask": batch["attention_mask"][rows, :width],
                   "answer_pos": batch["answer_pos"][rows], "answer_ids": batch["answer_ids"][rows],
                   "answer_mask": batch["answer_mask"][rows]}
            parts.append(answer_forward(model, sub)[1:])
        logp, tok_lp = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    loss, _, _ = f2c_batch_loss(logp, tok_lp, batch["answer_mask"], (b, k, c), args)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return float(loss.item())


def child(mode: str, model_name: str, examples: int, formats: int, repeats: int) -> dict:
    import resource

    model, batch, args = _setup(model_name, examples, formats)
    loss = _step(model, batch, args, mode)
    t = repeat(lambda: _step(model, batch, args, mode), repeats=repeats, warmup=0)
    return {"mode": mode, "loss": loss, "time_s": t,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "sequences": int(batch["input_ids"].shape[0]), "max_tokens": int(batch["input_ids"].shape[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="benchmarks/results")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--examples", type=int, default=2, help="examples per step (B)")
    ap.add_argument("--formats", type=int, default=5, help="formats per example (K); RTE has 10 templates")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=["batched", "loop"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.model, a.examples, a.formats, a.repeats)))
        return 0
    res = {}
    for mode in ("batched", "loop"):
        cmd = [sys.executable, "-m", "benchmarks.bench_f2c", "--child", mode, "--model", a.model,
               "--examples", str(a.examples), "--formats", str(a.formats), "--repeats", str(a.repeats)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"),
                              check=True)
        res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    speedup = res["loop"]["time_s"]["median"] / res["batched"]["time_s"]["median"]
    out = {"machine": machine_info(), "model": a.model, "B": a.examples, "K": a.formats, "C": 2, **res,
           "speedup_batched_vs_loop": speedup, "loss_abs_diff": abs(res["loop"]["loss"] - res["batched"]["loss"]),
           "target_speedup": 2.0}
    d = Path(a.output)
    atomic_write_json(d / "bench_f2c.json", out)
    md = ["# F²C step: batched K×C forward vs per-format loop", "",
          f"Model {a.model}, B={a.examples} examples × K={a.formats} formats × C=2 choices "
          f"({res['batched']['sequences']} sequences, ≤ {res['batched']['max_tokens']} tokens), forward + F²C loss "
          f"+ backward, median of {a.repeats}.", "",
          "| mode | forward calls / step | median s / step | peak RSS MiB |", "|---|---:|---:|---:|"]
    for mode, calls in (("batched", 1), ("loop", a.examples * a.formats)):
        md.append(f"| {mode} | {calls} | {res[mode]['time_s']['median']:.2f} | {res[mode]['peak_rss_mib']:.0f} |")
    md += ["", f"Speed-up (loop / batched): **{speedup:.2f}×** (target ≥ 2×). Loss difference between the two: "
           f"{out['loss_abs_diff']:.2e}."]
    md += ["", F2C_READING]
    atomic_write_text(d / "bench_f2c.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
