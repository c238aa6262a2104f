"""Agent ids, the server-wide ``AgentSettings``, and what is made of the catalog with them: a
session's adapter (``create_adapter``), whether an agent is installed (``is_installed``).

Ids: ``claude``, ``codex``, ``opencode``, ``amp``, ``mock``, and ``acp:<name>`` for any Agent
Client Protocol agent. ``acp:claude``, ``acp:codex`` and ``acp:opencode`` are built in (pinned npm
packages, ``catalog.py``); others are configured by command line (``--acp-agent NAME=COMMAND``).
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sandbox_agent.agents.base import AgentAdapter, EventSink
from sandbox_agent.agents.catalog import ACP_PREFIX, AGENT_IDS, SPECS, AgentSpec, spec_of
from sandbox_agent.agents.errors import UnsupportedAgent
from sandbox_agent.agents.install import agents_dir, command_of
from sandbox_agent.agents.mock import DEFAULT_DELAY
from sandbox_agent.agents.shared import SharedServers
from sandbox_agent.paths import data_dir

__all__ = [
    "ACP_PREFIX",
    "AGENT_IDS",
    "AgentSettings",
    "create_adapter",
    "executable",
    "is_installed",
    "known_acp_agents",
    "parse_acp_command",
    "parse_agent_id",
    "resolve_agent",
]

_ACP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


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


def parse_acp_command(value: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=COMMAND ARGS...`` (``--acp-agent``) as (name, argv); ``ValueError`` if malformed."""
    name, sep, command = value.partition("=")
    argv = tuple(shlex.split(command))
    if not sep or not _ACP_NAME.fullmatch(name) or not argv:
        raise ValueError(
            f"expected NAME=COMMAND (name of letters, digits, '.', '_', '-'): {value!r}"
        )
    return name, argv


def parse_agent_id(value: str) -> str:
    """``value`` if it names an agent (built-in or ``acp:<name>``); else ``UnsupportedAgent``."""
    if value in AGENT_IDS:
        return value
    if value.startswith(ACP_PREFIX):
        if _ACP_NAME.fullmatch(value.removeprefix(ACP_PREFIX)):
            return value
        raise UnsupportedAgent(
            value, "an ACP agent id is acp:<name>, the name made of letters, digits, '.', '_', '-'"
        )
    raise UnsupportedAgent(value, f"known agents are {', '.join(AGENT_IDS)} and acp:<name>")


def known_acp_agents(settings: AgentSettings) -> list[str]:
    """The ACP agent ids this server knows: the built-in ones and those configured."""
    names = {a for a in SPECS if a.startswith(ACP_PREFIX)}
    names |= {ACP_PREFIX + n for n in settings.acp_commands}
    return sorted(names)


def resolve_agent(agent_id: str, settings: AgentSettings | None = None) -> AgentSpec:
    """The spec of an agent this server can run: ``UnsupportedAgent`` for an unknown id, or an
    ACP name neither built in nor configured in ``settings``."""
    agent_id = parse_agent_id(agent_id)
    settings = settings or AgentSettings()
    if agent_id.startswith(ACP_PREFIX) and agent_id not in known_acp_agents(settings):
        raise UnsupportedAgent(
            agent_id,
            "unknown ACP agent: built in are "
            + ", ".join(known_acp_agents(AgentSettings()))
            + "; configure others with --acp-agent NAME=COMMAND",
        )
    return spec_of(agent_id)


def create_adapter(
    agent_id: str, sink: EventSink, settings: AgentSettings | None = None
) -> AgentAdapter:
    """A new, unstarted adapter of ``agent_id`` emitting to ``sink``.

    Raises ``UnsupportedAgent`` for an unknown id (an ACP name neither built in nor configured).
    Whether the agent's CLI is installed is checked when the adapter starts.
    """
    settings = settings or AgentSettings()
    spec = resolve_agent(agent_id, settings)
    return spec.adapter(sink, settings, spec.id)


def executable(agent_id: str, settings: AgentSettings) -> str | None:
    """The agent's executable, resolved (for an ``--acp-agent`` command its first word); None
    for a built-in agent or one that is not found."""
    if spec_of(agent_id).builtin:
        return None
    command = settings.command(agent_id)
    return shutil.which(command[0]) if command else None


def is_installed(agent_id: str, settings: AgentSettings) -> bool:
    """Whether ``agent_id`` can run here: a built-in agent (the mock) always, others once their
    executable is found."""
    return spec_of(agent_id).builtin or executable(agent_id, settings) is not None
