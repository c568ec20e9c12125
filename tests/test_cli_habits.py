"""CLI habits users bring from other tools: --version, listing what is registered."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import alignkit


def test_version_flag_prints_the_installed_version():
    out = subprocess.run([sys.executable, "-m", "alignkit.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"alignkit {alignkit.__version__}"
    assert alignkit.__version__ == metadata.version("alignkit")  # one version, not two that drift
