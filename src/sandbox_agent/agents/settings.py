"""``AgentSettings``: the server-wide settings every adapter reads.

It sits below the adapters and above the catalog and the installer (it finds an agent's command
through them), so that an adapter imports it without importing the registry that makes adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sandbox_agent.agents.catalog import ACP_PREFIX
from sandbox_agent.agents.install import agents_dir, command_of
from sandbox_agent.agents.mock import DEFAULT_DELAY
from sandbox_agent.agents.shared import SharedServers
from sandbox_agent.paths import data_dir


@dataclass(frozen=True)
class AgentSettings:
    """Server-wide settings the adapters read."""

    #: Milliseconds the mock waits before each event (``--mock-delay-ms``).
    mock_delay_ms: int = round(DEFAULT_DELAY * 1000)
    #: Where agent CLIs are installed (None: ``install.agents_dir()``).
    agents_dir: Path | None = None
    #: Where agent stderr goes, one file per agent process (None: ``<data dir>/logs/agents``).
    log_dir: Path | None = None
    #: ACP agents configured by command line: name -> argv.
    acp_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Environment added to every agent process (credentials; never logged).
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)
    #: Install a missing agent when a session asks for it (``--auto-install``).
    auto_install: bool = False
    #: The shared agent servers (Codex app-server, OpenCode serve) of this server.
    shared: SharedServers = field(default_factory=SharedServers, compare=False, repr=False)

    def logs(self) -> Path:
        return self.log_dir or data_dir() / "logs" / "agents"

    def installed_in(self) -> Path:
        return self.agents_dir or agents_dir()

    def command(self, agent_id: str) -> list[str] | None:
        """The command line that starts ``agent_id``; None when it is not installed."""
        if agent_id.startswith(ACP_PREFIX):
            configured = self.acp_commands.get(agent_id.removeprefix(ACP_PREFIX))
            if configured:
                return list(configured)
        return command_of(agent_id, self.installed_in())
