"""Builder and judge speed: fact-world generation, flip + validate + stats, rule-based variants, vLLM judge overhead.

    python -m benchmarks.bench_builders --output benchmarks/results [--n 100000] [--vllm] [--vllm-items 64]

Writes ``bench_builders.json`` and ``bench_builders.md`` to ``--output``. Targets (issue "Data builders"; not
asserted anywhere): flip + validate + stats over 100k pairs < 10 s; rule-based variants >= 5,000 pairs/s on one
core; judge labelling through vLLM >= 0.8 x plain vLLM generation tokens/s for the same prompts (both measured in
the same process on the same engine, so the ratio is the judge's own overhead: prompt building, parsing, cache).
Run the ``--vllm`` part under ``flock /tmp/alignkit-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from alignkit.utils import atomic_write_json, atomic_write_text


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_cpu(n: int) -> dict:
    from alignkit.builders.factworld import build_factworld
    from alignkit.builders.hallucinate import rule_variants
    from alignkit.data.schema import record_problems
    from alignkit.data.transforms import bucket_stats, fdpo_flip

    (train, _), t_gen = _timed(lambda: build_factworld(n, 0, rho=0.4, seed=0, share_00=0.2, share_11=0.2))

    def flip_validate_stats():
        bad = sum(1 for r in train if record_problems(r))
        flipped = fdpo_flip(train)
        return bad, bucket_stats(flipped)

    (bad, stats), t_fvs = _timed(flip_validate_stats)
    assert bad == 0
    factual = [r for r in train if (r["h_w"], r["h_l"]) == (0, 1)]
    (pairs, rejects), t_rule = _timed(lambda: rule_variants(factual, seed=0))
    return {
        "n_pairs": n,
        "factworld_generate_s": round(t_gen, 3), "factworld_pairs_per_s": round(n / t_gen),
        "flip_validate_stats_s": round(t_fvs, 3), "flip_validate_stats_target_s": 10.0,
        "flipped": stats["flipped"],
        "rule_variants_sources": len(factual), "rule_variants_written": len(pairs),
        "rule_variants_pairs_per_s": round(len(factual) / t_rule), "rule_variants_target_per_s": 5000,
    }


def bench_vllm(model: str, n_items: int, max_tokens: int) -> dict:
    from vllm import SamplingParams

    from alignkit.builders.factworld import build_factworld, judge_items
    from alignkit.judges import VLLMJudge, make_engine, run_judge
    from alignkit.judges.llm import item_messages

    _, test = build_factworld(0, n_items, rho=0.0, seed=0)
    items = judge_items(test, [t["gold"] for t in test])
    engine = make_engine(model, max_model_len=1024)
    chats = [item_messages(it, "binary") for it in items]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    engine.chat(chats[:4], params, use_tqdm=False)  # warm-up

    outs, t_plain = _timed(lambda: engine.chat(chats, params, use_tqdm=False))
    plain_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    judge = VLLMJudge(model, engine=engine, max_tokens=max_tokens)
    with tempfile.TemporaryDirectory() as d:
        (js, stats), t_judge = _timed(lambda: run_judge(judge, items, cache=Path(d) / "c.jsonl",
                                                        batch_size=n_items, progress=False))
    judge_tokens = judge.last_generated_tokens
    plain_tps, judge_tps = plain_tokens / t_plain, judge_tokens / t_judge
    return {
        "model": model, "items": n_items, "max_tokens": max_tokens,
        "plain_tokens": plain_tokens, "plain_s": round(t_plain, 3), "plain_tokens_per_s": round(plain_tps, 1),
        "judge_tokens": judge_tokens, "judge_s": round(t_judge, 3), "judge_tokens_per_s": round(judge_tps, 1),
        "ratio_judge_over_plain": round(judge_tps / plain_tps, 3), "ratio_target": 0.8,
        "judge_status": stats["status"],
    }


def _markdown(res: dict) -> str:
    c = res["cpu"]
    lines = [
        "# Builder and judge benchmarks", "",
        f"Machine: {res['machine']}", "",
        "| measurement | value | target |", "|---|---|---|",
        f"| fact world, {c['n_pairs']:,} pairs | {c['factworld_generate_s']} s "
        f"({c['factworld_pairs_per_s']:,} pairs/s) | seconds |",
        f"| flip + validate + stats, {c['n_pairs']:,} pairs | {c['flip_validate_stats_s']} s | < 10 s |",
        f"| rule-based variants | {c['rule_variants_pairs_per_s']:,} pairs/s "
        f"({c['rule_variants_written']:,} of {c['rule_variants_sources']:,} written) | >= 5,000 pairs/s |",
    ]
    v = res.get("vllm")
    if v:
        lines.append(f"| vLLM judge vs plain generation ({v['model']}, {v['items']} items, greedy, "
                     f"{v['max_tokens']} max tokens) | {v['judge_tokens_per_s']} vs {v['plain_tokens_per_s']} tok/s "
                     f"= {v['ratio_judge_over_plain']} | >= 0.8 |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="benchmarks/results")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--vllm", action="store_true", help="also measure the vLLM judge (starts an engine)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--vllm-items", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args(argv)
    return run(Path(args.output), n=args.n, vllm=args.vllm, model=args.model, vllm_items=args.vllm_items,
               max_tokens=args.max_tokens)


def run(out: Path, *, n: int = 100_000, vllm: bool = False, model: str = "smollm2-135m-instruct",
        vllm_items: int = 64, max_tokens: int = 16) -> dict:
    from benchmarks.common import machine_info

    info = machine_info()
    res = {"machine": f"{info['cpu']}, {info['cpu_count']} CPUs", "machine_info": info, "cpu": bench_cpu(n)}
    if vllm:
        res["vllm"] = bench_vllm(model, vllm_items, max_tokens)
    atomic_write_json(out / "bench_builders.json", res)
    atomic_write_text(out / "bench_builders.md", _markdown(res))
    print(_markdown(res))
    return res


if __name__ == "__main__":
    main()
