"""``alignkit experiment noise-sweep --config recipes/experiments/noise-sweep-cpu.yaml``."""

from __future__ import annotations

import argparse

import yaml


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    es = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    n = es.add_parser("noise-sweep", help="hallucination rate vs injected label noise ε, per method, over seeds")
    n.add_argument("--config", default="recipes/experiments/noise-sweep-cpu.yaml", help="experiment YAML")
    n.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (VALUE parsed as YAML), e.g. --set seeds=[0]")
    n.set_defaults(func=_noise_sweep)


def _noise_sweep(args: argparse.Namespace) -> int:
    from alignkit.experiments.noise_sweep import NoiseSweepConfig, run_noise_sweep

    with open(args.config, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise SystemExit(f"{args.config}: the experiment config must be a YAML mapping")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value)
    try:
        cfg = NoiseSweepConfig(**raw)
    except TypeError as e:
        raise SystemExit(f"{args.config}: {e}") from e
    summary = run_noise_sweep(cfg)
    print(f"wrote {summary['report']}")
    return 0
