"""Send an eval's numbers to an experiment tracker (``alignkit eval --report-to …``), as TRL's ``report_to`` does for
training: each task's metrics (value and 95% interval bounds) per model, and the report table as text.

``tensorboard`` writes event files under ``OUT/tensorboard/<model label>/``; ``wandb`` logs one run per model, named
``<suite>-<label>``, to ``$WANDB_PROJECT`` (default ``alignkit-eval``) under ``$WANDB_DIR`` (default ``OUT``), as one
step holding the scalars, a ``results`` table (task, metric, value, interval, n) and the report as ``report``
(``WANDB_MODE=offline`` keeps it local; ``wandb sync`` uploads it later); ``trackio`` logs the scalars likewise. The
trackers are the optional extra ``alignkit[track]``; a missing one is a clear error, not a silent no-op.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb", "trackio")


def _scalars(doc: dict[str, Any], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in doc["results"]:
        if r["model"] != label:
            continue
        for name, m in r["metrics"].items():
            for suffix, key in (("", "value"), ("/ci_low", "ci_low"), ("/ci_high", "ci_high")):
                v = m.get(key)
                if isinstance(v, (int, float)) and not math.isnan(v):
                    out[f"{r['task']}/{name}{suffix}"] = float(v)
    return out


RESULT_COLUMNS = ["task", "metric", "value", "ci_low", "ci_high", "n"]


def _rows(doc: dict[str, Any], label: str) -> list[list[Any]]:
    """The report table of one model: a row per (task, metric), as results.json holds it."""
    return [[r["task"], name, m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("n")]
            for r in doc["results"] if r["model"] == label for name, m in r["metrics"].items()]


def _require(module: str, tracker: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"--report-to {tracker}: the package {module.split('.')[0]!r} is not installed "
                           "(pip install 'alignkit[track]')") from exc


def report_results(doc: dict[str, Any], report_md: str, out_dir: str | Path, trackers: list[str]) -> list[str]:
    """Log ``doc`` (a results.json document) to every tracker named; returns what was written, for the CLI."""
    unknown = [t for t in trackers if t not in TRACKERS]
    if unknown:
        raise ValueError(f"--report-to: unknown tracker(s) {unknown}; choose from {', '.join(TRACKERS)}")
    labels = list(dict.fromkeys(r["model"] for r in doc["results"]))
    suite = (doc.get("suite") or {}).get("name", "eval")
    written = []
    for tracker in trackers:
        for label in labels:
            scalars = _scalars(doc, label)
            if tracker == "tensorboard":
                _require("tensorboard", tracker)
                from torch.utils.tensorboard import SummaryWriter

                logdir = Path(out_dir) / "tensorboard" / label
                with SummaryWriter(log_dir=str(logdir)) as w:
                    for key, value in scalars.items():
                        w.add_scalar(key, value, global_step=0)
                    w.add_text("report", report_md, global_step=0)
                written.append(str(logdir))
            elif tracker == "wandb":
                wandb = _require("wandb", tracker)
                run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "alignkit-eval", name=f"{suite}-{label}",
                                 dir=os.environ.get("WANDB_DIR") or str(out_dir), job_type="eval",
                                 config={"suite": doc.get("suite"), "model": label,
                                         "provenance": doc.get("provenance")},
                                 reinit="finish_previous")  # a training run still open in this process is closed
                try:  # one step: the numbers, the table and the report belong together
                    run.log({**scalars, "results": wandb.Table(columns=RESULT_COLUMNS, data=_rows(doc, label)),
                             "report": wandb.Html(f"<pre>{html.escape(report_md)}</pre>")})
                finally:
                    run.finish()
                written.append(f"wandb run {suite}-{label}")
            else:
                trackio = _require("trackio", tracker)
                trackio.init(project="alignkit-eval", name=f"{suite}-{label}", config={"model": label})
                trackio.log(scalars)
                trackio.finish()
                written.append(f"trackio run {suite}-{label}")
    return written
