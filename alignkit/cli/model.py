"""``alignkit model resolve NAME``: build (once) and print the local directory of a model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    ms = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    r = ms.add_parser("resolve", help="print the loadable path of a model (builds the embedded default on first use)")
    r.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    r.set_defaults(func=_resolve)
    t = ms.add_parser("tiny", help="build a tiny random Llama with the SmolLM2 tokenizer for tests; print its path")
    t.add_argument("--hidden-size", type=int, default=128)
    t.add_argument("--num-layers", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_tiny)


def _resolve(args: argparse.Namespace) -> int:
    from alignkit.models import resolve_model

    print(resolve_model(args.name))
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from alignkit.models import build_tiny_llama

    print(build_tiny_llama(hidden_size=args.hidden_size, num_layers=args.num_layers, seed=args.seed))
    return 0
