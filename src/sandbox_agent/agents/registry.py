"""Agent ids and the factory that makes a session's adapter.

Ids: ``claude``, ``codex``, ``opencode``, ``amp``, ``mock``, and ``acp:<name>`` for any Agent
Client Protocol agent configured by command line. This build runs only the mock; the others are
known ids whose adapters come later, and ``create_adapter`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox_agent.agents.base import AgentAdapter, EventSink
from sandbox_agent.agents.errors import UnsupportedAgent
from sandbox_agent.agents.mock import DEFAULT_DELAY, MockAgent

#: The built-in agent ids, in the order ``GET /v1/agents`` lists them.
AGENT_IDS: tuple[str, ...] = ("claude", "codex", "opencode", "amp", "mock")

ACP_PREFIX = "acp:"
_ACP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class AgentSettings:
    """Server-wide settings the adapters read."""

    #: Milliseconds the mock waits before each event (``--mock-delay-ms``).
    mock_delay_ms: int = round(DEFAULT_DELAY * 1000)


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


def create_adapter(
    agent_id: str, sink: EventSink, settings: AgentSettings | None = None
) -> AgentAdapter:
    """A new, unstarted adapter of ``agent_id`` emitting to ``sink``.

    Raises ``UnsupportedAgent`` for an unknown id, or one whose adapter this build lacks.
    """
    agent_id = parse_agent_id(agent_id)
    settings = settings or AgentSettings()
    if agent_id == "mock":
        return MockAgent(sink, delay=settings.mock_delay_ms / 1000)
    raise UnsupportedAgent(agent_id, "this build cannot run it yet (only the mock agent)")
