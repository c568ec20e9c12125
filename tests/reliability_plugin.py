"""pytest plugin behind the reliability table (docs/reliability.md).

Tests that inject a fault or feed bad input take the ``reliability_log`` fixture and record what they exercised,
with the row counts they measured. Every such test is tagged ``reliability`` at collection, so
``pytest -m reliability`` runs exactly them. With ``--reliability-report PATH`` the plugin writes, at the end of the
session, one JSON entry per tagged test collected: its pytest outcome (passed, failed, skipped with the reason,
deselected, not run) and its records — a failing, skipped or deselected case is listed as such, never dropped.
Without the option nothing is written: the test suite never rewrites a tracked file.
``scripts/reliability_report.py`` runs the tagged tests and renders the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alignkit.utils import atomic_write_text

_ENTRIES: dict[str, dict[str, Any]] = {}  # nodeid -> {"test", "outcome", "reason", "records"}


class ReliabilityLog:
    """What one test records. Row counts are measured by the test; leave them ``None`` when the case moves no rows
    (a static scan, a recipe check) — the table then says "n/a", never 0."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid

    def record(self, category: str, case: str, outcome: str, *, rows_in: int | None = None,
               rows_out: int | None = None, rejected: int | None = None, cached: int | None = None,
               mechanism: str | None = None) -> None:
        """``rows_in``: rows the case started from; ``rows_out``: rows in its output; ``rejected``: rows written to
        a rejects file / counted as rejected; ``cached``: rows kept in a cache for a rerun and in no output yet.
        Rows lost = rows_in - (rows_out + rejected + cached). ``mechanism`` says how a fault was produced (e.g.
        "tmpfs (real ENOSPC)" or "simulated")."""
        counts = (rows_in, rows_out, rejected, cached)
        if rows_in is not None and rows_out is None:
            raise ValueError("reliability_log.record: rows_in needs rows_out (and rejected/cached when there are any)")
        lost = None if rows_in is None else rows_in - sum(c or 0 for c in counts[1:])
        entry = _ENTRIES.setdefault(self.nodeid, {"test": self.nodeid, "outcome": "running", "reason": "",
                                                  "records": []})
        entry["records"].append({"category": category, "case": case, "outcome": outcome, "rows_in": rows_in,
                                 "rows_out": rows_out, "rejected": rejected, "cached": cached, "rows_lost": lost,
                                 "mechanism": mechanism})


@pytest.fixture
def reliability_log(request) -> ReliabilityLog:
    return ReliabilityLog(request.node.nodeid)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", default=None, metavar="PATH",
                     help="write the outcomes and records of the reliability-tagged tests to PATH (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: a fault-injection or bad-input case (uses reliability_log)")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability_log" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.reliability)
            _ENTRIES.setdefault(item.nodeid, {"test": item.nodeid, "outcome": "not run", "reason": "", "records": []})


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:  # a tagged case left out by -m/-k is listed as such, not dropped
        if item.nodeid in _ENTRIES:
            _ENTRIES[item.nodeid]["outcome"] = "deselected"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _ENTRIES.get(report.nodeid)
    if entry is None:
        return
    if report.skipped:
        entry["outcome"] = "skipped"
        entry["reason"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    elif report.failed:
        entry["outcome"] = "failed" if report.when == "call" else f"error in {report.when}"
        crash = getattr(report.longrepr, "reprcrash", None)  # "AssertionError: ..." of the failing line
        text = crash.message if crash is not None else (report.longreprtext or "")
        entry["reason"] = (text.strip().splitlines() or [""])[0]
    elif report.when == "call" and entry["outcome"] in ("not run", "running"):
        entry["outcome"] = "passed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--reliability-report")
    if not path:
        return
    entries = [e for _, e in sorted(_ENTRIES.items())]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
