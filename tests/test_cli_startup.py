"""The CLI starts cheap: a command that needs neither the server nor the agents does not import
them (FastAPI, uvicorn, the app, every adapter cost most of a second per process), a command
imports only its own module of the CLI, and ``--help`` imports neither the store nor the models
nor pydantic nor httpx nor asyncio (its budget is 0.3 s). A guard on what is imported, not a
timing test: ``benchmarks/cli.py`` measures the time."""

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


def _run(*args: str) -> tuple[object, set[str], str, str]:
    """(exit code, modules loaded, stdout, stderr) of ``sandbox-agent *args`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=60
    )
    head, _, tail = done.stdout.rpartition("\nMODULES ")
    assert tail, done.stderr
    report = json.loads(tail)
    return report["code"], set(report["modules"]), head, done.stderr


def _loaded(*args: str) -> tuple[object, set[str], str]:
    code, modules, output, _ = _run(*args)
    return code, modules, output


def _cli_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith("sandbox_agent.cli."))


def test_sessions_list_imports_neither_the_server_nor_the_agents(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    subprocess.run([sys.executable, "-m", "sandbox_agent", "db", "upgrade", url], check=True)
    code, modules, output = _loaded("sessions", "list", "--json", "--store", url)
    assert code == 0
    assert json.loads(output) == []
    # Only the command's own module: the others load when asked for (``COMMAND_MODULES``).
    assert _cli_modules(modules) == ["sandbox_agent.cli.app", "sandbox_agent.cli.sessions"]
    assert sorted(m for m in modules if m.split(".")[0] == "fastapi" or m in HEAVY) == []
    assert sorted(m for m in modules if m.startswith(("uvicorn.", "sandbox_agent.agents."))) == []


#: What ``--help`` must not load: the store, the event models, the HTTP client, Rich's help.
HELP_HEAVY = ("sandbox_agent.store", "sandbox_agent.events", "sandbox_agent.replay", "httpx")

#: Nor these packages: pydantic (Typer builds a TypeAdapter to coerce a None, about 0.2 s),
#: asyncio (0.1 s), the web stack, and Rich's Markdown and Pygments (Typer's Rich help).
HELP_HEAVY_PACKAGES = (
    "pydantic",
    "pydantic_core",
    "asyncio",
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "markdown_it",
    "pygments",
)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("replay", "--help"),
        ("sessions", "--help"),
        ("api", "sessions", "create", "--help"),
    ],
)
def test_help_loads_no_store_no_models_no_http_client(args: tuple[str, ...]) -> None:
    code, modules, output = _loaded(*args)
    assert code == 0
    assert output.startswith("Usage: ")
    assert sorted(m for m in modules if m.startswith(HELP_HEAVY)) == []
    assert sorted(m for m in modules if m.split(".")[0] in HELP_HEAVY_PACKAGES) == []


def test_replay_help_loads_only_the_replay_command() -> None:
    code, modules, output = _loaded("replay", "--help")
    assert code == 0
    assert output.startswith("Usage: sandbox-agent replay [OPTIONS] [sessions]...")
    assert "--private-reasoning" in output
    assert _cli_modules(modules) == ["sandbox_agent.cli.app", "sandbox_agent.cli.replay"]


def test_help_lists_every_command_in_the_order_of_the_command_table() -> None:
    from sandbox_agent.cli.app import COMMAND_MODULES

    code, modules, output = _loaded("--help")
    assert code == 0
    listed = output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.startswith("  ")] == list(COMMAND_MODULES)
    assert set(_cli_modules(modules)) == {
        f"sandbox_agent.cli.{m}" for m in ("app", *COMMAND_MODULES.values())
    }


def test_the_help_listing_is_the_one_of_the_fully_built_commands() -> None:
    # ``--help`` lists the commands from stand-ins without parameters: the same text as the
    # listing of the commands as Typer builds them to run.
    import typer.main
    from typer.core import TyperGroup

    from sandbox_agent.cli.app import app, load_commands

    load_commands()
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    ctx = root.make_context("sandbox-agent", [], resilient_parsing=True)
    built, listed = ctx.make_formatter(), ctx.make_formatter()
    TyperGroup.format_commands(root, ctx, built)
    root.format_commands(ctx, listed)
    assert listed.getvalue() == built.getvalue()
    assert "replay" in built.getvalue() and "sessions" in built.getvalue()


def test_the_command_table_names_each_commands_module() -> None:
    from sandbox_agent.cli.app import COMMAND_MODULES, app, load_commands

    load_commands()
    registered = {
        info.name or info.callback.__name__: info.callback.__module__
        for info in app.registered_commands
        if info.callback is not None
    }
    for info in app.registered_groups:
        group = info.typer_instance
        assert group is not None
        modules = {c.callback.__module__ for c in group.registered_commands if c.callback}
        modules |= {
            c.callback.__module__
            for g in group.registered_groups
            if g.typer_instance
            for c in g.typer_instance.registered_commands
            if c.callback
        }
        (registered[str(info.name)],) = modules
    assert registered == {name: f"sandbox_agent.cli.{m}" for name, m in COMMAND_MODULES.items()}


def test_a_mistyped_command_still_gets_a_suggestion() -> None:
    code, _, _, errors = _run("replya")
    assert code == 2
    assert "No such command 'replya'. Did you mean 'replay'?" in errors


def test_the_cli_server_defaults_are_the_server_configs() -> None:
    from sandbox_agent.cli import server as cli
    from sandbox_agent.server import config

    for name in (
        "DEFAULT_HOST",
        "DEFAULT_PORT",
        "DEFAULT_MAX_BODY_BYTES",
        "DEFAULT_MAX_MESSAGE_CHARS",
        "DEFAULT_MAX_ATTACHMENTS",
        "DEFAULT_LEASE_SECONDS",
        "DEFAULT_CANCEL_GRACE_SECONDS",
    ):
        assert getattr(cli, name) == getattr(config, name), name
    from sandbox_agent.sessions import files

    for name in (
        "DEFAULT_MAX_FILE_BYTES",
        "DEFAULT_MAX_TAR_ENTRIES",
        "DEFAULT_MAX_TAR_BYTES",
        "DEFAULT_MAX_PATH_CHARS",
    ):
        assert getattr(cli, name) == getattr(files, name), name


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


def test_the_startup_benchmark_measures_the_help_against_python_itself() -> None:
    # The figures themselves are not tested (shared machine): only that the benchmark runs.
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cli.py"
    done = subprocess.run(
        [sys.executable, str(script), "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)["figures"]
    assert {"python -c pass", "sandbox-agent --help", "sandbox-agent replay --help"} <= set(figures)
    assert all(row["best_s"] > 0 and row["x_python_pass"] > 0 for row in figures.values())
