"""What each agent can do, when nothing better is known: capabilities, modes, models.

The one table the adapters and ``GET /v1/agents`` read: every adapter class sets
``capabilities = CAPABILITIES["<id>"]`` (``ACP_CAPABILITIES`` for ACP agents); the route asks the
adapter, and asks the adapter for modes and models (which may be live lookups), falling back to
``modes_of`` / ``models_of`` here when the agent is not installed or the lookup fails.

Values start from upstream v0.1's (``reference/upstream-behaviour.md`` sections 3.3 and 3.4) and
follow what this build's adapters map (more than upstream: HITL for every agent that has it,
claude's plan mode, opencode's reasoning and tool kinds...); keep them equal to the adapters'.
"""

from __future__ import annotations

from sandbox_agent.agents.base import AgentCapabilities, AgentMode, AgentModel, AgentModels
from sandbox_agent.agents.mock import MOCK_CAPABILITIES

ACP_PREFIX = "acp:"

CAPABILITIES: dict[str, AgentCapabilities] = {
    "claude": AgentCapabilities(
        plan_mode=True, permissions=True, questions=True, tool_calls=True, tool_results=True,
        text_messages=True, error_events=True, status=True, mcp_tools=True,
        streaming_deltas=True, item_started=True,
    ),
    "codex": AgentCapabilities(
        plan_mode=True, permissions=True, questions=True, tool_calls=True, tool_results=True,
        text_messages=True, images=True, file_attachments=True, session_lifecycle=True,
        error_events=True, reasoning=True, status=True, command_execution=True,
        file_changes=True, mcp_tools=True, streaming_deltas=True, item_started=True,
        variants=True, shared_process=True,
    ),
    "opencode": AgentCapabilities(
        plan_mode=True, permissions=True, questions=True, tool_calls=True, tool_results=True,
        text_messages=True, images=True, file_attachments=True, session_lifecycle=True,
        error_events=True, reasoning=True, status=True, command_execution=True,
        file_changes=True, mcp_tools=True, streaming_deltas=True, item_started=True,
        variants=True, shared_process=True,
    ),
    "amp": AgentCapabilities(
        tool_calls=True, tool_results=True, text_messages=True, images=True, error_events=True,
        reasoning=True, mcp_tools=True,
    ),
    "mock": MOCK_CAPABILITIES,
}  # fmt: skip

#: Any Agent Client Protocol agent: what the ACP adapter maps (``session/update`` chunks, tool
#: calls with their kinds, plans, ``session/request_permission``).
ACP_CAPABILITIES = AgentCapabilities(
    permissions=True, tool_calls=True, tool_results=True, text_messages=True, images=True,
    file_attachments=True, session_lifecycle=True, error_events=True, reasoning=True,
    status=True, command_execution=True, file_changes=True, mcp_tools=True,
    streaming_deltas=True, item_started=True,
)  # fmt: skip

_BUILD = AgentMode(id="build", name="Build", description="Default build mode")

MODES: dict[str, list[AgentMode]] = {
    "claude": [
        _BUILD,
        AgentMode(id="plan", name="Plan", description="Plan mode (--permission-mode plan)"),
    ],
    "codex": [
        _BUILD,
        AgentMode(id="plan", name="Plan", description="Planning mode via prompt prefix"),
    ],
    "opencode": [
        _BUILD,
        AgentMode(id="plan", name="Plan", description="Planning mode"),
        AgentMode(id="custom", name="Custom", description="Any user-defined OpenCode agent name"),
    ],
    "amp": [_BUILD],
    "mock": [
        AgentMode(id="build", name="Build", description="Mock agent for UI testing"),
        AgentMode(id="plan", name="Plan", description="Plan-only mock mode"),
    ],
}

MODELS: dict[str, AgentModels] = {
    "claude": AgentModels(
        models=[
            AgentModel(id="default", name="Default (recommended)"),
            AgentModel(id="sonnet", name="Sonnet"),
            AgentModel(id="opus", name="Opus"),
            AgentModel(id="haiku", name="Haiku"),
        ],
        default_model="default",
    ),
    "amp": AgentModels(models=[AgentModel(id="amp-default", name="Amp Default")],
                       default_model="amp-default"),
    "mock": AgentModels(models=[AgentModel(id="mock", name="Mock")], default_model="mock"),
}  # fmt: skip


def capabilities_of(agent: str) -> AgentCapabilities:
    """The catalog's capabilities of ``agent`` (``acp:<name>``: the ACP ones; unknown: none)."""
    if agent in CAPABILITIES:
        return CAPABILITIES[agent]
    return ACP_CAPABILITIES if agent.startswith(ACP_PREFIX) else AgentCapabilities()


def modes_of(agent: str) -> list[AgentMode]:
    """The catalog's modes of ``agent`` (others, ACP agents included: build only)."""
    return list(MODES.get(agent, [_BUILD]))


def models_of(agent: str) -> AgentModels:
    """The catalog's models of ``agent`` (empty when only a live lookup can tell)."""
    return MODELS.get(agent, AgentModels())
