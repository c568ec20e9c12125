"""``alignkit recipes``: list the training recipes shipped with alignkit (usable by name: ``alignkit train NAME``)."""

from __future__ import annotations

import argparse

import yaml

from alignkit.resources import describe, list_recipes, recipe_path, resource_dir


def recipe_summary(name: str) -> str:
    """One line: trainer, loss and model of a training recipe, or the first comment line of any other YAML."""
    path = recipe_path(name)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(doc, dict) and "model_name_or_path" in doc:
        trainer = doc.get("trainer", "fdpo")
        method = doc.get("loss_type", "fdpo") if trainer == "fdpo" else trainer
        return f"{method:<5} {doc['model_name_or_path']}"
    return describe(path)


def main(args: argparse.Namespace) -> int:
    names = list_recipes()
    width = max(map(len, names), default=0)
    print(f"# recipes in {resource_dir('recipe')} (run one with: alignkit train NAME)")
    for name in names:
        print(f"{name:<{width}}  {recipe_summary(name)}")
    return 0


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.set_defaults(func=main)
