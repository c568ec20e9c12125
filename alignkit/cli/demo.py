"""``alignkit demo [--quick]``: the end-to-end demo (:func:`alignkit.demo.run_demo`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    from alignkit.demo import __doc__ as demo_doc

    p = sub.add_parser(name, help=help_text, description=(demo_doc or help_text).split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the smaller run (≤ 8 minutes on 2 cores)")
    p.add_argument("--output", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--backend", default=None, choices=("vllm", "hf"), help="eval backend (default: the suite's, vllm)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from alignkit.demo import run_demo

    run_demo(args.output, quick=args.quick, backend=args.backend)
    return 0
