"""The CLI starts cheap: a command that needs neither the server nor the agents does not import
them (FastAPI, uvicorn, the app, every adapter cost most of a second per process), and ``--help``
imports neither the store nor the models nor httpx (its budget is 0.3 s). A guard on what is
imported, not a timing test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Runs the real Typer app in a fresh interpreter, then prints the modules it loaded.
_SCRIPT = """
import json, sys
from sandbox_agent.cli import app
try:
    app(sys.argv[1:], prog_name="sandbox-agent")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

HEAVY = ("fastapi", "uvicorn", "sandbox_agent.server.app", "sandbox_agent.agents")


def _loaded(*args: str) -> tuple[object, set[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=60
    )
    head, _, tail = done.stdout.rpartition("\nMODULES ")
    assert tail, done.stderr
    report = json.loads(tail)
    return report["code"], set(report["modules"]), head


def test_sessions_list_imports_neither_the_server_nor_the_agents(tmp_path: Path) -> None:
    code, modules, output = _loaded(
        "sessions", "list", "--json", "--store", f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert code == 0
    assert json.loads(output) == []
    assert "sandbox_agent.cli.server" in modules  # every command is registered
    assert sorted(m for m in modules if m.split(".")[0] == "fastapi" or m in HEAVY) == []
    assert sorted(m for m in modules if m.startswith(("uvicorn.", "sandbox_agent.agents."))) == []


#: What ``--help`` must not load: the store, the event models, the HTTP client, Rich's help.
HELP_HEAVY = ("sandbox_agent.store", "sandbox_agent.events", "sandbox_agent.replay", "httpx")


@pytest.mark.parametrize(
    "args", [("--help",), ("replay", "--help"), ("api", "sessions", "create", "--help")]
)
def test_help_loads_no_store_no_models_no_http_client(args: tuple[str, ...]) -> None:
    code, modules, output = _loaded(*args)
    assert code == 0
    assert output.startswith("Usage: ")
    heavy = sorted(
        m for m in modules if m.startswith(HELP_HEAVY) or m.split(".")[0] == "sqlalchemy"
    )
    assert heavy == []
    assert sorted(m for m in modules if m.split(".")[0] in ("fastapi", "uvicorn")) == []
    # Plain help: Typer's Rich help would load Rich's Markdown and Pygments.
    assert sorted(m for m in modules if m.split(".")[0] in ("markdown_it", "pygments")) == []
    if args == ("--help",):
        assert "pydantic" not in modules


def test_the_cli_server_defaults_are_the_server_configs() -> None:
    from sandbox_agent.cli import server as cli
    from sandbox_agent.server import config

    for name in (
        "DEFAULT_HOST",
        "DEFAULT_PORT",
        "DEFAULT_MAX_BODY_BYTES",
        "DEFAULT_MAX_MESSAGE_CHARS",
        "DEFAULT_MAX_ATTACHMENTS",
    ):
        assert getattr(cli, name) == getattr(config, name), name


def test_the_server_package_still_exports_create_app_and_server_config() -> None:
    from sandbox_agent.server import ServerConfig, create_app
    from sandbox_agent.server.app import create_app as the_app_factory
    from sandbox_agent.server.config import ServerConfig as the_config

    assert create_app is the_app_factory
    assert ServerConfig is the_config


def test_the_credentials_help_names_the_agents_credentials_knows() -> None:
    from sandbox_agent.agents.credentials import AGENT_PROVIDERS
    from sandbox_agent.cli.credentials import AGENTS

    assert tuple(AGENT_PROVIDERS) == AGENTS
