"""Without the ``server`` extra (FastAPI, uvicorn), the commands that run a server say which
extra to install, and exit 1; the other commands work. FastAPI is blocked in a fresh
interpreter (``sys.modules[name] = None`` makes its import fail as if it were not installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Blocks the web stack, then runs the real Typer app with the arguments.
_SCRIPT = """
import sys
for name in ("fastapi", "uvicorn", "starlette"):
    sys.modules[name] = None
from sandbox_agent.cli import app
app(sys.argv[1:], prog_name="sandbox-agent")
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("server", "-p", "1"), "sandbox-agent server"),
        (("daemon", "start", "-p", "1"), "sandbox-agent daemon start"),
    ],
)
def test_a_server_command_without_fastapi_names_the_extra_to_install(
    args: tuple[str, ...], command: str
) -> None:
    done = _run(*args)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    reason = done.stderr.strip()
    assert reason.startswith(f"error: {command} needs the server's web stack"), reason
    assert reason.endswith("pip install 'sandbox-agent[server]'"), reason
    assert "Traceback" not in done.stderr


def test_a_store_command_without_fastapi_still_works(tmp_path: Path) -> None:
    (tmp_path / "x.db").touch()  # an empty SQLite database (sessions list creates no store)
    done = _run("sessions", "list", "--json", "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
