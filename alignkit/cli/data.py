"""``alignkit data validate|flip|noise|stats`` (imports no torch, vLLM or TRL: a test holds it to that)."""

from __future__ import annotations

import argparse
import json
import sys

from alignkit.cli.common import debug_enabled, report
from alignkit.data.card import write_card
from alignkit.data.io import read_records, write_records, write_rejects
from alignkit.data.schema import DataError
from alignkit.data.transforms import bucket_stats, fdpo_flip_counted, inject_judge_noise, inject_noise


def _add_io(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("input", help="JSONL, Parquet, a datasets folder, or a hub id")
    if output:
        p.add_argument("-o", "--output", required=True,
                       help="output .jsonl or .parquet (card and rejects go beside it)")
    p.add_argument("--on-invalid", choices=("error", "skip"), default="error",
                   help="stop at the first bad row (default) or skip bad rows, "
                        "writing them with reasons beside the output")
    p.add_argument("--no-require-flags", action="store_true", help="accept rows without h_w/h_l (unlabelled pairs)")


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    ds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    v = ds.add_parser("validate", help="check every row; report file:line field: reason")
    _add_io(v, output=False)
    v.add_argument("--allow-empty", action="store_true", help="a file with no rows passes (default: an error)")
    v.set_defaults(func=_validate)

    f = ds.add_parser("flip", help="apply the F-DPO label flip (h_w=1,h_l=0 pairs are swapped)")
    _add_io(f)
    f.set_defaults(func=_flip)

    n = ds.add_parser("noise", help="seeded label noise: swap chosen/rejected on a fraction eps of rows (order "
                                    "noise) and/or flip each h_w/h_l flag with probability delta (judge noise)")
    _add_io(n)
    n.add_argument("--eps", type=float, required=True,
                   help="fraction of rows whose chosen/rejected are swapped, flags travelling with them, in [0, 1]")
    n.add_argument("--delta", type=float, default=0.0,
                   help="judge noise: each h_w and h_l flag flipped independently with this probability, in [0, 1], "
                        "after the swaps; the true flags are kept in h_w_true/h_l_true (default 0: flags untouched)")
    n.add_argument("--seed", type=int, default=0, help="seed of both noise draws (each has its own stream)")
    n.set_defaults(func=_noise)

    s = ds.add_parser("stats", help="counts per (h_w, h_l) bucket, flips, noise swaps")
    _add_io(s, output=False)
    s.set_defaults(func=_stats)


def _guard(fn):
    """Bad data, a missing input or an out-of-range value: one line and exit 1, also for in-process callers."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (DataError, FileNotFoundError, ValueError) as e:
            if debug_enabled():
                raise
            report(e)
            return 1
    return run


def _read(args: argparse.Namespace):
    return read_records(args.input, on_invalid=args.on_invalid, require_flags=not args.no_require_flags)


@_guard
def _validate(args: argparse.Namespace) -> int:
    res = _read(args)
    for r in res.rejects:
        fld = f"field '{r['field']}': " if r["field"] else ""
        print(f"{r['file']}:{r['line']}: {fld}{r['reason']}", file=sys.stderr)
    print(json.dumps({"valid": len(res.records), "rejected": res.n_rejected}))
    if res.n_rows == 0 and not args.allow_empty:
        # an empty file is valid row by row, but nothing can be trained or evaluated on it
        print(f"error: {res.source}: no rows (pass --allow-empty if that is expected)", file=sys.stderr)
        return 1
    return 1 if res.rejects else 0


def _finish(args, records, res, builder: str, config: dict, extra: dict | None = None) -> int:
    write_records(args.output, records)
    write_rejects(args.output, res.rejects)
    write_card(args.output, records, builder=builder, config=config, rejects=res.rejects, extra=extra)
    print(json.dumps({"written": len(records), "rejected": res.n_rejected, "output": args.output, **(extra or {})}))
    return 0


@_guard
def _flip(args: argparse.Namespace) -> int:
    res = _read(args)
    rows, swapped = fdpo_flip_counted(res.records)  # swaps exactly the (h_w=1, h_l=0) rows, whatever `flipped` says
    return _finish(args, rows, res, "data.flip", {"input": args.input}, extra={"flip": {"swapped": swapped}})


@_guard
def _noise(args: argparse.Namespace) -> int:
    res = _read(args)
    records, idx = inject_noise(res.records, args.eps, args.seed)
    config = {"input": args.input, "eps": args.eps, "seed": args.seed}
    if args.delta > 0:  # delta 0 leaves the rows exactly as order noise wrote them (no h_w_true columns)
        records, n_flags = inject_judge_noise(records, args.delta, args.seed)
        config.update(delta=args.delta, judge_flags_flipped=n_flags)
    return _finish(args, records, res, "data.noise", config)


@_guard
def _stats(args: argparse.Namespace) -> int:
    res = _read(args)
    stats = bucket_stats(res.records)
    stats["rejected"] = res.n_rejected
    print(json.dumps(stats, indent=2))
    return 0
