"""The kit as a user gets it: a fresh venv with only ``sandbox-agent[testing]`` installed (from
this checkout, its dependencies from the package index) lists the plugin's fixtures in
``pytest --fixtures``, with no conftest and no configuration; and the SDK as a backend gets it,
with no extra: no FastAPI, and ``sandbox-agent server`` names the extra to install."""

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


#: A backend that only uses the SDK and a store: no server is contacted.
_SDK_ONLY = """
import asyncio, importlib.util, sys
from sandbox_agent import SandboxAgent
from sandbox_agent.api import CreateSessionRequest
from sandbox_agent.sdk import ApiClient

async def main():
    async with await SandboxAgent.connect("http://127.0.0.1:9", store=sys.argv[1]) as sdk:
        assert (await sdk.list_sessions()).items == []
    async with ApiClient.open("http://127.0.0.1:9") as api:
        assert CreateSessionRequest(agent="mock").wire() == {"agent": "mock"}
    assert [m for m in ("fastapi", "starlette", "uvicorn", "acp") if m in sys.modules] == []
    print("ok", [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m)])

asyncio.run(main())
"""


# About 30 s, as above: in the slow suite.
@pytest.mark.slow
def test_a_fresh_venv_without_extras_runs_the_sdk_without_fastapi(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    store = f"sqlite:///{tmp_path / 'backend.db'}"
    done = subprocess.run(
        [str(python), "-c", _SDK_ONLY, store], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok []"), done.stderr[-3000:]
    server = subprocess.run(
        [str(venv / "bin" / "sandbox-agent"), "server"], capture_output=True, text=True, timeout=60
    )
    assert server.returncode == 1
    assert "pip install 'sandbox-agent[server]'" in server.stderr, server.stderr[-3000:]
