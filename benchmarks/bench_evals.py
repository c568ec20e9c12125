"""Eval backend throughput: vLLM vs transformers on identical prompts and generation lengths, and log-likelihood
scoring throughput on TruthfulQA MC requests, each backend in its own process (vLLM changes the process's torch
thread settings, which would skew a transformers run after it).

    python -m benchmarks.bench_evals --output benchmarks/results [--model smollm2-135m-instruct] [--prompts 16]
        [--max-new-tokens 64] [--questions 10]

Writes ``bench_evals.json`` and ``bench_evals.md``. Target (issue, not asserted): vLLM ÷ HF generation throughput
≥ 1.25× on this CPU. Generated tokens are counted by re-tokenising each backend's own outputs (greedy outputs agree,
so lengths match). Run under ``flock /tmp/alignkit-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from alignkit.utils import atomic_write_json, atomic_write_text
from benchmarks.common import machine_info, repeat

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["the water cycle", "photosynthesis", "the French revolution", "volcanoes", "the printing press",
          "black holes", "bees", "the Roman empire", "tides", "vaccines", "glaciers", "the internet",
          "coral reefs", "steam engines", "the moon landing", "rainbows"]


def worker(backend_name: str, model: str, n_prompts: int, max_new_tokens: int, n_questions: int) -> dict:
    from alignkit.evals.tasks.truthfulqa import load_mc, mc_prompt
    from alignkit.inference import SamplingConfig, get_backend
    from alignkit.resources import data_path

    t0 = time.perf_counter()
    opts = {"max_model_len": 1024} if backend_name == "vllm" else {"batch_size": n_prompts}
    b = get_backend(backend_name, model, **opts)
    start_s = time.perf_counter() - t0
    prompts = [[{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} in detail."}] for i in range(n_prompts)]
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    outs: list[str] = []
    gen = repeat(lambda: outs.__setitem__(slice(None), b.generate(prompts, sampling)), repeats=2, warmup=1)
    gen_tokens = sum(len(b.tokenizer.encode(o, add_special_tokens=False)) for o in outs)
    rows = load_mc(str(data_path("truthfulqa/truthful_qa_multiple_choice_validation.jsonl")), n_questions)
    reqs = [(mc_prompt(r["question"]), " " + c) for r in rows for c in r["mc2_targets"]["choices"]]
    ll = repeat(lambda: b.loglikelihood(reqs), repeats=2, warmup=1)
    scored_tokens = sum(len(b.tokenizer.encode(c + x)) for c, x in reqs)
    return {"backend": backend_name, "engine_start_s": round(start_s, 2), "prompts": n_prompts,
            "max_new_tokens": max_new_tokens, "generated_tokens": gen_tokens, "generate_s": gen,
            "gen_tok_per_s": gen_tokens / gen["median"], "loglik_requests": len(reqs),
            "loglik_s": ll, "loglik_req_per_s": len(reqs) / ll["median"],
            "loglik_tok_per_s": scored_tokens / ll["median"], "outputs_head": outs[:2]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="benchmarks/results")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--questions", type=int, default=10)
    p.add_argument("--worker", choices=("vllm", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        Path(a.json).write_text(json.dumps(worker(a.worker, a.model, a.prompts, a.max_new_tokens, a.questions)))
        return 0
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in ("hf", "vllm"):
        tmp = out / f".bench_evals_{name}.json"
        subprocess.run([sys.executable, "-m", "benchmarks.bench_evals", "--worker", name, "--json", str(tmp),
                        "--model", a.model, "--prompts", str(a.prompts), "--max-new-tokens", str(a.max_new_tokens),
                        "--questions", str(a.questions)], cwd=REPO, check=True)
        runs[name] = json.loads(tmp.read_text())
        tmp.unlink()
    ratio_gen = runs["vllm"]["gen_tok_per_s"] / runs["hf"]["gen_tok_per_s"]
    ratio_ll = runs["vllm"]["loglik_tok_per_s"] / runs["hf"]["loglik_tok_per_s"]
    same_text = runs["vllm"]["outputs_head"] == runs["hf"]["outputs_head"]
    doc = {"machine": machine_info(), "model": a.model, "runs": runs, "vllm_over_hf_generation": ratio_gen,
           "vllm_over_hf_loglik": ratio_ll, "target_generation_ratio": 1.25, "same_greedy_text_head": same_text}
    atomic_write_json(out / "bench_evals.json", doc)
    md = ["# Eval backends: vLLM vs transformers", "",
          f"Model `{a.model}`, {a.prompts} chat prompts × {a.max_new_tokens} new tokens (greedy); "
          f"TruthfulQA MC2 scoring of {runs['hf']['loglik_requests']} (question, choice) requests. "
          f"Machine: {doc['machine'].get('cpu')} ({doc['machine'].get('cpu_count')} cores).", "",
          "| backend | engine start s | gen tok/s | loglik req/s | loglik tok/s |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        md.append(f"| {name} | {r['engine_start_s']:.1f} | {r['gen_tok_per_s']:.1f} | {r['loglik_req_per_s']:.1f} "
                  f"| {r['loglik_tok_per_s']:.0f} |")
    md += ["", f"vLLM ÷ HF generation throughput: **{ratio_gen:.2f}×** (target ≥ 1.25×); "
               f"log-likelihood scoring: **{ratio_ll:.2f}×**. Same greedy text (first two prompts): {same_text}."]
    atomic_write_text(out / "bench_evals.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
