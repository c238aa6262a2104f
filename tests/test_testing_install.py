"""The kit as a user gets it: a fresh venv with only ``sandbox-agent[testing]`` installed (from
this checkout, its dependencies from the package index) lists the plugin's fixtures in
``pytest --fixtures``, with no conftest and no configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# About 30 s (a venv and an install from the package index): in the slow suite, which CI runs.
@pytest.mark.slow
def test_a_fresh_venv_with_the_testing_extra_lists_the_plugins_fixtures(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{ROOT}[testing]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    project = tmp_path / "project"  # a user's project: no conftest, no pytest configuration
    project.mkdir()
    listed = subprocess.run(
        [str(python), "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode in (0, 5), listed.stdout[-3000:] + listed.stderr[-3000:]
    out = listed.stdout
    for fixture in ("event_store", "sandbox_server", "assert_consistent"):
        assert f"\n{fixture}" in out, f"{fixture} not listed:\n{out[-3000:]}"
    assert "sandbox_agent/testing" in out or "sandbox_agent.testing" in out
