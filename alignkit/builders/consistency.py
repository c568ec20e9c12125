"""Consistency sets (F²C, methods.md §3): every example rendered in K prompt formats, each with its answer choices.

Templates are PromptSource YAML files (``input ||| target`` jinja plus ``answer_choices``), loaded with a SafeLoader
subclass that understands PromptSource's ``!Template`` / ``!TemplateMetadata`` tags and rendered in a sandboxed jinja
environment. Output: one JSONL row per example plus a dataset card beside it::

    {"id": "rte-train-17", "source": "super_glue/rte", "split": "train", "label": 1, "n_choices": 2,
     "formats": [{"name": ..., "template_id": ..., "prompt": ..., "choices": ["Yes", "No"]}, ...],
     "heldout_formats": [... same shape, formats reserved for evaluation ...]}

``label`` is the gold index (used only by evaluation; F²C training never reads it).
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from alignkit.data.card import write_card
from alignkit.data.io import iter_jsonl, write_jsonl
from alignkit.resources import resolve_data


class PromptSourceLoader(yaml.SafeLoader):
    """SafeLoader that reads PromptSource's custom tags as plain mappings (no object construction)."""


def _as_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


for _tag in ("!Template", "!TemplateMetadata"):
    PromptSourceLoader.add_constructor(_tag, _as_mapping)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    template_id: str
    jinja: str
    answer_choices: str
    original_task: bool


def load_templates(path: str | os.PathLike) -> list[PromptTemplate]:
    """All templates of one PromptSource ``templates.yaml``, sorted by name (stable across YAML re-orderings)."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=PromptSourceLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), dict):
        raise ValueError(f"{path}: field 'templates': expected a mapping of template id -> template")
    out = []
    for tid, t in doc["templates"].items():
        for key in ("name", "jinja"):
            if not isinstance(t.get(key), str):
                raise ValueError(f"{path}: template {tid}: field {key!r} missing or not a string")
        out.append(PromptTemplate(name=t["name"], template_id=str(tid), jinja=t["jinja"],
                                  answer_choices=t.get("answer_choices") or "",
                                  original_task=bool((t.get("metadata") or {}).get("original_task", False))))
    return sorted(out, key=lambda t: t.name)


_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


def render(template: PromptTemplate, row: dict[str, Any]) -> tuple[str, list[str]]:
    """(prompt, answer choices) for one row; the prompt is the rendered text before ``|||``."""
    choices_text = _ENV.from_string(template.answer_choices).render(**row) if template.answer_choices else ""
    choices = [c.strip() for c in choices_text.split("|||")] if choices_text else []
    # Render the whole template and split afterwards, as PromptSource does: ``|||`` can sit inside an {% if %}.
    text = _ENV.from_string(template.jinja).render(**row, answer_choices=choices)
    return text.split("|||")[0].strip(), choices


@dataclass
class ConsistencyBuildConfig:
    data: str = field(metadata={"help": "SuperGLUE-style JSONL with a 'split' column "
                                        "(e.g. pkg:consistency/rte.jsonl)."})
    templates: str = field(metadata={"help": "PromptSource templates.yaml, or '<dataset>/<subset>' under "
                                             "<data dir>/promptsource_templates/ (e.g. 'super_glue/rte')."})
    output: str = field(metadata={"help": "Output JSONL; the dataset card is written beside it."})
    split: str = field(default="train", metadata={"help": "Rows whose 'split' equals this."})
    n: int | None = field(default=None, metadata={"help": "Sample this many examples (seeded); all when unset."})
    formats: list[str] | None = field(default=None, metadata={"help": "Template names to use (default: all "
                                                                       "original-task templates)."})
    heldout: list[str] | int = field(default=0, metadata={"help": "Formats reserved for evaluation: a list of "
                                                                  "template names, or a number drawn by seed."})
    all_templates: bool = field(default=False, metadata={"help": "Also use templates with original_task: false."})
    seed: int = field(default=0, metadata={"help": "Seed for the example sample and the held-out draw."})

    def __post_init__(self) -> None:
        self.data, self.templates = resolve_data(self.data), resolve_data(self.templates)
        if self.n is not None and self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if isinstance(self.heldout, int) and self.heldout < 0:
            raise ValueError(f"heldout must be >= 0, got {self.heldout}")

    def templates_path(self) -> Path:
        p = Path(self.templates)
        if p.is_file():
            return p
        q = Path(self.data).parent / "promptsource_templates" / self.templates / "templates.yaml"
        if q.is_file():
            return q
        raise FileNotFoundError(f"templates {self.templates!r}: neither a file nor {q}")


def _label(row: dict, path: Path, line: int) -> int:
    # PromptSource indexes answer_choices with the HF integer label; RTE/CB keep it in label_id, COPA in label.
    for key in ("label_id", "label"):
        if isinstance(row.get(key), int) and not isinstance(row.get(key), bool):
            return row[key]
    raise ValueError(f"{path}:{line}: field 'label_id'/'label': no integer label")


def build_consistency(cfg: ConsistencyBuildConfig) -> dict[str, Any]:
    """Build the set; returns the card extras (counts). Deterministic for a given config."""
    data = Path(cfg.data)
    tpath = cfg.templates_path()
    templates = load_templates(tpath)
    if cfg.formats is not None:
        known = {t.name for t in templates}
        missing = [f for f in cfg.formats if f not in known]
        if missing:
            raise ValueError(f"{tpath}: unknown template names {missing}; known: {sorted(known)}")
        templates = [t for t in templates if t.name in cfg.formats]
    elif not cfg.all_templates:
        templates = [t for t in templates if t.original_task]
    names = [t.name for t in templates]
    rng = random.Random(cfg.seed)
    if isinstance(cfg.heldout, int):
        if cfg.heldout >= len(names):
            raise ValueError(f"heldout={cfg.heldout} leaves no training format out of {len(names)}")
        heldout = set(rng.sample(names, cfg.heldout))
    else:
        unknown = [h for h in cfg.heldout if h not in names]
        if unknown:
            raise ValueError(f"held-out formats {unknown} are not among the selected templates {names}")
        heldout = set(cfg.heldout)

    rows = [(line_no, row) for line_no, row in iter_jsonl(data) if row.get("split") == cfg.split]
    if not rows:
        raise ValueError(f"{data}: no rows with split={cfg.split!r}")
    if cfg.n is not None and cfg.n < len(rows):
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), cfg.n))]

    stem = data.stem
    parts = tpath.parent.parts
    source = "/".join(parts[parts.index("promptsource_templates") + 1:]) if "promptsource_templates" in parts \
        else tpath.parent.name
    records, empty = [], {n: 0 for n in names}
    for line_no, row in rows:
        label = _label(row, data, line_no)
        rendered: dict[str, list[dict]] = {"formats": [], "heldout_formats": []}
        n_choices = None
        for t in templates:
            try:
                prompt, choices = render(t, {**row, "label": label})
            except TemplateError as e:
                raise ValueError(f"{data}:{line_no}: template {t.name!r}: {e}") from None
            if not prompt or not choices:
                empty[t.name] += 1  # e.g. COPA templates that only render for one question type
                continue
            if not 0 <= label < len(choices):
                raise ValueError(f"{data}:{line_no}: field 'label': {label} outside {len(choices)} choices of "
                                 f"template {t.name!r}")
            if n_choices is not None and len(choices) != n_choices:
                raise ValueError(f"{tpath}: template {t.name!r} has {len(choices)} choices, others {n_choices}")
            n_choices = len(choices)
            key = "heldout_formats" if t.name in heldout else "formats"
            rendered[key].append({"name": t.name, "template_id": t.template_id, "prompt": prompt, "choices": choices})
        records.append({"id": f"{stem}-{cfg.split}-{row.get('idx', line_no)}", "source": source, "split": cfg.split,
                        "label": label, "n_choices": n_choices, **rendered})
    write_jsonl(cfg.output, records)
    extra = {"formats": [n for n in names if n not in heldout], "heldout_formats": sorted(heldout),
             "empty_renders": empty, "templates_file": tpath.name}
    write_card(cfg.output, records, builder="consistency", config=asdict(cfg), extra=extra)
    return {"n": len(records), **extra}


CONFIG_CLASS = ConsistencyBuildConfig


def main(config: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """``alignkit build consistency`` entry (registry contract in alignkit/builders/__init__.py)."""
    from alignkit.builders.common import config_from_dict

    return build_consistency(config_from_dict(ConsistencyBuildConfig, config))
