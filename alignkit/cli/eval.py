"""``alignkit eval``: run a suite over one or more models side by side and write results.json, report.md, plots.

    alignkit eval --suite evals/quick.yaml --model base=smollm2-135m-instruct --model fdpo=runs/fdpo/adapter
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from alignkit.cli.common import UsageError, add_set_argument, error_line, overrides
from alignkit.config import apply_overrides


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=None, help="suite YAML, or a shipped suite name: quick, full, demo")
    p.add_argument("--list-suites", action="store_true", help="list the shipped suites and exit")
    p.add_argument("--model", action="append", default=[], metavar="LABEL=SPEC",
                   help="model to evaluate (repeatable): a name/dir for resolve_model, a LoRA adapter dir, or "
                        "BASE+ADAPTER_DIR; default base=smollm2-135m-instruct")
    p.add_argument("--adapter-base", default=None, help="base model for adapter dirs (else their adapter_config)")
    p.add_argument("--out", default=None, help="output folder (default runs/eval/<suite name>); rerun to resume")
    p.add_argument("--backend", choices=("vllm", "hf"), default=None, help="override the suite's backend")
    p.add_argument("--limit", type=int, default=None, help="cap every task at N items (smoke runs)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option (VALUE parsed as YAML), e.g. tensor_parallel_size=4 or lora_mode=request")
    add_set_argument(p, "override a suite key (VALUE parsed as YAML; dotted keys and list indices, e.g. "
                        "--set tasks.0.limit=5 or --set backend_options.vllm.max_model_len=2048); repeatable")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--list-tasks", action="store_true", help="list the registered tasks (name, version) and exit")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="register the tasks defined in DIR/*.py (classes decorated with register_task), as "
                        "lm-eval's --include_path does; repeatable")
    p.add_argument("--output-format", action="append", default=[], choices=("alignkit", "lm-eval"),
                   help="also write lm-evaluation-harness's results layout (OUT/lm_eval/<label>/results.json); "
                        "alignkit's own results.json is always written")
    p.add_argument("--report-to", action="append", default=[], choices=("tensorboard", "wandb", "trackio"),
                   help="log every task's metrics and the report table to a tracker (repeatable; "
                        "pip install 'alignkit[track]')")
    p.set_defaults(func=main)


def include_tasks(folders: list[str]) -> list[str]:
    """Import every ``*.py`` in each folder so its ``@register_task`` classes join the registry; returns the names
    registered. A name that is already registered is refused by ``register_task``."""
    import importlib.util

    from alignkit.evals.tasks import TASKS

    before = set(TASKS)
    for folder in folders:
        d = Path(folder)
        if not d.is_dir():
            raise UsageError(f"--include-path {folder}: not a directory")
        for path in sorted(d.glob("*.py")):
            name = f"alignkit_user_tasks.{d.resolve().name}.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return sorted(set(TASKS) - before)


def list_tasks() -> int:
    """One line per registered task: name, version and the first line of its docstring."""
    from alignkit.evals.tasks import TASKS

    for name in sorted(TASKS):
        cls = TASKS[name]
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<26} v{cls.version:<3} {doc[0] if doc else ''}")
    return 0


def default_out_dir(suite_name: str) -> Path:
    """``runs/eval/<suite name>``, the name reduced to one safe path component (letters, digits, '.', '_', '-'),
    so a suite named ``../../x`` or ``/etc`` cannot put the run outside ``runs/eval/``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", suite_name).strip("._") or "suite"
    return Path("runs") / "eval" / safe


def list_suites() -> int:
    """Print every shipped suite: its name (usable as ``--suite NAME``), backend and tasks."""
    from alignkit.resources import list_suites as names
    from alignkit.resources import resource_dir, suite_path

    print(f"# suites in {resource_dir('suite')} (run one with: alignkit eval --suite NAME)")
    for name in names():
        doc = yaml.safe_load(suite_path(name).read_text(encoding="utf-8")) or {}
        tasks = ", ".join(str(t.get("task")) for t in doc.get("tasks", []) if isinstance(t, dict))
        print(f"{name:<8} backend={doc.get('backend', '?')}  tasks: {tasks}")
    return 0


def main(args: argparse.Namespace) -> int:
    from alignkit.evals.runner import Suite, parse_model, run_suite
    from alignkit.resources import suite_path

    if args.include_path:
        include_tasks(args.include_path)
    if args.list_tasks:
        return list_tasks()
    if args.list_suites:
        return list_suites()
    if not args.suite:
        raise UsageError("--suite is required (a suite YAML or a shipped name; see --list-suites)")
    try:  # a path, or a shipped suite name
        suite = Suite.from_yaml(suite_path(args.suite), overrides(args.set))
    except (FileNotFoundError, ValueError) as exc:  # a missing suite or a bad field: a usage error (exit 2)
        raise UsageError(error_line(exc)) from exc
    backend = args.backend or suite.backend
    options = overrides(args.backend_option, "--backend-option")  # backend keyword options, VALUE parsed as YAML
    suite.backend_options[backend] = apply_overrides(suite.backend_options.get(backend) or {}, options)
    try:  # a bad label or a missing adapter dir is a usage error (exit 2)
        models = [parse_model(m, args.adapter_base) for m in (args.model or ["base=smollm2-135m-instruct"])]
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(error_line(exc)) from exc
    out = Path(args.out) if args.out else default_out_dir(suite.name)
    results = run_suite(suite, models, out, backend=args.backend, limit=args.limit, progress=not args.no_progress)
    report_md = (out / "report.md").read_text(encoding="utf-8")
    print(report_md)
    print(f"wrote {out / 'results.json'}, {out / 'report.md'} and {out / 'plots'} ({len(results)} task results)")
    if "lm-eval" in args.output_format or args.report_to:
        import json

        doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
        if "lm-eval" in args.output_format:
            from alignkit.evals.lm_eval_format import write_lm_eval_results

            for path in write_lm_eval_results(doc, out):
                print(f"wrote {path} (lm-evaluation-harness layout)")
        if args.report_to:
            from alignkit.evals.tracking import report_results

            for where in report_results(doc, report_md, out, list(dict.fromkeys(args.report_to))):
                print(f"logged to {where}")
    return 0
