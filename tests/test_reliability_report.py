"""The reliability table is computed: a sample session with a passing, a failing and a skipped case goes through the
plugin (tests/reliability_plugin.py) and scripts/reliability_report.py; rows lost is measured, and the failing and
skipped cases are listed as such. Running the suite never writes docs/reliability.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

def test_counts(reliability_log):
    rows_in, out, rejected = 10, 7, 2
    reliability_log.record("bad input (skip mode)", "lossy", "one row vanished", rows_in=rows_in, rows_out=out,
                           rejected=rejected)

def test_static(reliability_log):
    reliability_log.record("security", "scan", "clean")

def test_breaks(reliability_log):
    reliability_log.record("fault", "half done", "recorded, then failed", rows_in=3, rows_out=3)
    assert 1 == 2, "the case broke"

def test_needs_gpu(reliability_log):
    pytest.skip("no GPU here")

def test_untagged():
    pass

@pytest.mark.gpu
def test_on_gpu_only(reliability_log):
    reliability_log.record("fault", "gpu", "never runs here")
'''


def test_plugin_and_script_measure_and_list_every_outcome(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    report = tmp_path / "rel.json"
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{REPO}")
    doc = REPO / "docs" / "reliability.md"
    before = doc.stat().st_mtime_ns if doc.exists() else None
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "reliability_plugin", "-p", "no:cacheprovider",
                        "-m", "reliability and not gpu", f"--reliability-report={report}",
                        str(tmp_path / "test_sample.py"),
                        "--rootdir", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr  # one failure
    entries = {e["test"].split("::")[-1]: e for e in json.loads(report.read_text())}
    # untagged tests are not cases; a tagged one left out by -m is listed as deselected
    assert set(entries) == {"test_counts", "test_static", "test_breaks", "test_needs_gpu", "test_on_gpu_only"}
    assert entries["test_on_gpu_only"]["outcome"] == "deselected" and not entries["test_on_gpu_only"]["records"]
    assert entries["test_counts"]["outcome"] == "passed"
    assert entries["test_counts"]["records"][0]["rows_lost"] == 1  # 10 - (7 + 2), measured
    assert entries["test_static"]["records"][0]["rows_lost"] is None  # no rows moved: n/a, not 0
    assert entries["test_breaks"]["outcome"] == "failed" and "the case broke" in entries["test_breaks"]["reason"]
    assert entries["test_needs_gpu"]["outcome"] == "skipped" and "no GPU here" in entries["test_needs_gpu"]["reason"]

    build = tmp_path / "build"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "reliability_report.py"), "--from-json", str(report),
                        "--build-dir", str(build)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    md = (build / "reliability.md").read_text()
    assert "| bad input (skip mode) | lossy | one row vanished | passed | — | 10 | 7 | 2 | n/a | 1 |" in md
    assert "| fault | half done | recorded, then failed | failed: " in md
    assert "| (not recorded) | test_needs_gpu | — | skipped: " in md and "no GPU here" in md
    assert "| (not recorded) | test_on_gpu_only | — | deselected |" in md
    assert "| security | scan | clean | passed | — | n/a | n/a | n/a | n/a | n/a |" in md
    assert "**lost 1**" in md
    assert (doc.stat().st_mtime_ns if doc.exists() else None) == before  # only --publish writes docs/


def test_the_suite_does_not_write_tracked_files():
    """No conftest or plugin hook writes under docs/ (the old conftest regenerated docs/reliability.md)."""
    for path in (REPO / "tests" / "conftest.py", REPO / "tests" / "reliability_plugin.py"):
        text = path.read_text()
        assert "docs" not in text.replace("docs/reliability.md", "").replace("(docs/", "("), path
    assert "--reliability-report" in (REPO / "tests" / "reliability_plugin.py").read_text()
