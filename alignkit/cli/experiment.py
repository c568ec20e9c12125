"""``alignkit experiment noise-sweep --config recipes/experiments/noise-sweep-cpu.yaml``."""

from __future__ import annotations

import argparse
import json

from alignkit.cli.common import add_set_argument, overrides


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    es = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    n = es.add_parser("noise-sweep", help="preference accuracy and hallucination vs order noise ε and judge noise δ, "
                                          "per method, over seeds (resumable)")
    n.add_argument("--config", default="recipes/experiments/noise-sweep-cpu.yaml", help="experiment YAML")
    add_set_argument(p=n, help_text="override a config key (VALUE parsed as YAML), e.g. --set seeds=[0]; repeatable")
    n.add_argument("--dry-run", action="store_true", help="check the config and print the run counts; train nothing")
    n.set_defaults(func=_noise_sweep)


def load_config(path: str, sets: list[str]):
    """The :class:`NoiseSweepConfig` of ``path`` with ``--set`` overrides, checked by
    :func:`alignkit.config.load_config` (a bad key, type or value is a one-line error naming the file, line and field;
    exit 2)."""
    from alignkit.config import load_config as load
    from alignkit.experiments.noise_sweep import NoiseSweepConfig

    return load(NoiseSweepConfig, path, overrides(sets), what="experiment config",
                unknown="unknown key(s) {keys}{hint}")


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
