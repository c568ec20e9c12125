"""``alignkit eval``: run a suite over one or more models side by side and write results.json, report.md, plots.

    alignkit eval --suite evals/quick.yaml --model base=smollm2-135m-instruct --model fdpo=runs/fdpo/adapter
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.add_argument("--suite", required=True, help="suite YAML (evals/quick.yaml, evals/full.yaml)")
    p.add_argument("--model", action="append", default=[], metavar="LABEL=SPEC",
                   help="model to evaluate (repeatable): a name/dir for resolve_model, a LoRA adapter dir, or "
                        "BASE+ADAPTER_DIR; default base=smollm2-135m-instruct")
    p.add_argument("--adapter-base", default=None, help="base model for adapter dirs (else their adapter_config)")
    p.add_argument("--out", default=None, help="output folder (default runs/eval/<suite name>); rerun to resume")
    p.add_argument("--backend", choices=("vllm", "hf"), default=None, help="override the suite's backend")
    p.add_argument("--limit", type=int, default=None, help="cap every task at N items (smoke runs)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option (VALUE parsed as YAML), e.g. tensor_parallel_size=4 or lora_mode=request")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from alignkit.evals.runner import Suite, parse_model, run_suite

    suite = Suite.from_yaml(args.suite)
    backend = args.backend or suite.backend
    for item in args.backend_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --backend-option wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        suite.backend_options.setdefault(backend, {})[key] = yaml.safe_load(value)
    models = [parse_model(m, args.adapter_base) for m in (args.model or ["base=smollm2-135m-instruct"])]
    out = Path(args.out or Path("runs") / "eval" / suite.name)
    results = run_suite(suite, models, out, backend=args.backend, limit=args.limit, progress=not args.no_progress)
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.json'}, {out / 'report.md'} and {out / 'plots'} ({len(results)} task results)")
    return 0
