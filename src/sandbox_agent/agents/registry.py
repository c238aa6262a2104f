"""Agent ids, and what is made of the catalog with ``AgentSettings``: a session's adapter
(``create_adapter``), whether an agent is installed (``is_installed``).

This module sits above the adapters: it holds each agent's adapter factory (``ADAPTERS``), which
imports the adapter's module only when a first adapter is made (so that the CLI starts without
them), and no adapter imports it. What the adapters need to know of their agent (capabilities,
modes, models) is the catalog's; the settings they read are ``settings.py``'s.

Ids: ``claude``, ``codex``, ``opencode``, ``amp``, ``mock``, and ``acp:<name>`` for any Agent
Client Protocol agent. ``acp:claude``, ``acp:codex`` and ``acp:opencode`` are built in (pinned npm
packages, ``catalog.py``); others are configured by command line (``--acp-agent NAME=COMMAND``).
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable

from sandbox_agent.agents.base import AgentAdapter, EventSink
from sandbox_agent.agents.catalog import ACP_PREFIX, AGENT_IDS, SPECS, AgentSpec, spec_of
from sandbox_agent.agents.errors import UnsupportedAgent
from sandbox_agent.agents.settings import AgentSettings

__all__ = [
    "ACP_PREFIX",
    "ADAPTERS",
    "AGENT_IDS",
    "AdapterFactory",
    "create_adapter",
    "executable",
    "is_installed",
    "known_acp_agents",
    "parse_acp_command",
    "parse_agent_id",
    "resolve_agent",
]

_ACP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: Makes a new, unstarted adapter: (sink, settings, agent id) -> adapter.
AdapterFactory = Callable[[EventSink, AgentSettings, str], AgentAdapter]


# -- the adapters, imported when first made -------------------------------------------------
def _mock(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.mock import MockAgent

    return MockAgent(sink, delay=settings.mock_delay_ms / 1000)


def _claude(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.claude import ClaudeAgent

    return ClaudeAgent(sink, settings)


def _codex(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.codex import CodexAgent

    return CodexAgent(sink, settings)


def _opencode(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.opencode import OpenCodeAgent

    return OpenCodeAgent(sink, settings)


def _amp(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.amp import AmpAgent

    return AmpAgent(sink, settings)


def _acp(sink: EventSink, settings: AgentSettings, agent_id: str) -> AgentAdapter:
    from sandbox_agent.agents.acp import AcpAgent

    return AcpAgent(sink, settings, agent_id)


#: The adapter factory of each agent of ``AGENT_IDS``; every ``acp:<name>`` agent, built in or
#: configured, is made by the ACP adapter.
ADAPTERS: dict[str, AdapterFactory] = {
    "claude": _claude,
    "codex": _codex,
    "opencode": _opencode,
    "amp": _amp,
    "mock": _mock,
}


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
    make = _acp if spec.id.startswith(ACP_PREFIX) else ADAPTERS[spec.id]
    return make(sink, settings, spec.id)


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
