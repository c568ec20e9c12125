"""``alignkit experiment noise-sweep --config recipes/experiments/noise-sweep-cpu.yaml``."""

from __future__ import annotations

import argparse
import dataclasses
import json

import yaml


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    es = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    n = es.add_parser("noise-sweep", help="preference accuracy and hallucination vs order noise ε and judge noise δ, "
                                          "per method, over seeds (resumable)")
    n.add_argument("--config", default="recipes/experiments/noise-sweep-cpu.yaml", help="experiment YAML")
    n.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (VALUE parsed as YAML), e.g. --set seeds=[0]")
    n.add_argument("--dry-run", action="store_true", help="check the config and print the run counts; train nothing")
    n.set_defaults(func=_noise_sweep)


def load_config(path: str, sets: list[str]):
    from alignkit.experiments.noise_sweep import NoiseSweepConfig

    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise SystemExit(f"{path}: the experiment config must be a YAML mapping")
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(NoiseSweepConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return NoiseSweepConfig(**raw)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"{path}: {e}") from e


def _noise_sweep(args: argparse.Namespace) -> int:
    from alignkit.experiments.noise_sweep import count_runs, run_noise_sweep

    cfg = load_config(args.config, args.set)
    counts = count_runs(cfg)
    if args.dry_run:
        print(json.dumps({"output_dir": cfg.output_dir, "runs": counts}))
        return 0
    print(f"[noise-sweep] {counts['calibration']} calibration runs + {counts['sweep']} sweep runs "
          f"({counts['per_seed']} per seed) into {cfg.output_dir}; a rerun resumes", flush=True)
    summary = run_noise_sweep(cfg)
    print(f"wrote {summary['report']}")
    return 0
