"""``sandbox-agent install-agent``: install agent CLIs from the npm registry (``install.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sandbox_agent.cli.app import app, console, err_console, fail


@app.command("install-agent")
def install_agent_command(
    agents: Annotated[
        list[str],
        typer.Argument(
            metavar="AGENT...",
            help="claude, codex, opencode, amp, acp:claude, acp:codex or acp:opencode.",
            show_default=False,
        ),
    ],
    reinstall: Annotated[
        bool, typer.Option("-r", "--reinstall", help="Install again even if installed.")
    ] = False,
    agent_version: Annotated[
        str | None,
        typer.Option(
            "--agent-version", help="This version instead of the pinned one (one agent only)."
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--agents-dir",
            help="Install here (default: $SANDBOX_AGENT_AGENTS_DIR, then <data dir>/agents).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show every line of npm's output.")
    ] = False,
) -> None:
    """Install agent CLIs (pinned npm packages) with npm into the agents dir.

    Needs Node.js 20+ and npm on PATH, and the npm registry reachable. Exits 1 with a one-line
    reason when npm is missing, the registry cannot be reached, or the package fails to install.
    """
    if agent_version is not None and len(agents) > 1:
        fail("--agent-version applies to one agent only")
    # The agents package (pydantic models, every adapter) only for this command: the CLI starts
    # fast for the others.
    from sandbox_agent.agents import UnsupportedAgent, parse_agent_id, spec_of
    from sandbox_agent.agents.install import agents_dir, installed_version

    target = (directory or agents_dir()).resolve()
    for name in agents:
        try:
            agent = parse_agent_id(name)
        except UnsupportedAgent as exc:
            fail(str(exc))
        found = spec_of(agent)
        if found.builtin:
            console().print(
                f"{agent} is built in: nothing to install",
                highlight=False,
                markup=False,
                emoji=False,
            )
            continue
        package = found.npm
        if package is None:
            fail(f"{agent}: no npm package is known; configure it with --acp-agent NAME=COMMAND")
        wanted = agent_version or package.version
        if not reinstall and installed_version(agent, target) == wanted:
            console().print(
                f"{agent} {wanted} is installed already in {target}",
                highlight=False,
                markup=False,
                emoji=False,
            )
            continue
        spec = f"{package.package}@{wanted}"
        version = _install(agent, spec, agent_version, reinstall, target, verbose)
        console().print(
            f"installed {agent} {version} in {target}", highlight=False, markup=False, emoji=False
        )


def _install(
    agent: str, spec: str, version: str | None, reinstall: bool, target: Path, verbose: bool
) -> str:
    """Run the install, showing npm's progress: every line with ``verbose``, else the latest
    one next to a spinner on a terminal (nothing otherwise)."""
    import asyncio

    from rich.markup import escape

    from sandbox_agent.agents.install import InstallError, install

    title = f"installing {escape(agent)} ({escape(spec)})"

    def run(on_output: Callable[[str], None] | None) -> str:
        return asyncio.run(
            install(
                agent, version=version, reinstall=reinstall, directory=target, on_output=on_output
            )
        )

    try:
        if verbose:
            err_console().print(title, highlight=False, markup=False, emoji=False)
            return run(lambda line: err_console().print(line, markup=False))
        if not err_console().is_terminal:
            return run(None)
        with err_console().status(title) as status:
            width = max(20, err_console().width - len(spec) - len(agent) - 20)

            def show(line: str) -> None:
                if line.strip():
                    status.update(f"{title} [dim]{escape(line.strip()[:width])}[/]")

            return run(show)
    except InstallError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"install failed: {agent}: {exc}")
