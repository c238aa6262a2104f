"""Agent adapters: run an agent and turn what it says into event drafts (``spec/agents.md``).

``base.AgentAdapter`` is the contract; ``catalog.AgentSpec`` is one row of the one agent table
(``spec_of``); ``mcp.McpServer`` is a session's MCP server, parsed once; ``drafts`` holds the
drafts adapters share with the session layer (``sandbox_agent.sessions``), which normalises and
records what they emit.
"""

from sandbox_agent.agents.base import (
    AgentAdapter,
    AgentCapabilities,
    AgentMode,
    AgentModel,
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import AgentSpec, spec_of
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import (
    AgentError,
    AgentNotStarted,
    InvalidMcpConfig,
    InvalidMode,
    ModeNotSupported,
    TurnInProgress,
    UnknownRequest,
    UnsupportedAgent,
)
from sandbox_agent.agents.hitl import AlwaysRules, permission_resolved, question_resolved
from sandbox_agent.agents.mcp import McpServer, parse_mcp_servers
from sandbox_agent.agents.mock import MockAgent
from sandbox_agent.agents.registry import (
    AGENT_IDS,
    create_adapter,
    is_installed,
    parse_agent_id,
    resolve_agent,
)
from sandbox_agent.agents.settings import AgentSettings

__all__ = [
    "AGENT_IDS",
    "AgentAdapter",
    "AgentCapabilities",
    "AgentError",
    "AgentMode",
    "AgentModel",
    "AgentModels",
    "AgentNotStarted",
    "AgentSessionConfig",
    "AgentSettings",
    "AgentSpec",
    "AlwaysRules",
    "Attachment",
    "EventSink",
    "InvalidMcpConfig",
    "InvalidMode",
    "McpServer",
    "MockAgent",
    "ModeNotSupported",
    "PermissionReply",
    "TurnInProgress",
    "UnknownRequest",
    "UnsupportedAgent",
    "create_adapter",
    "is_installed",
    "parse_agent_id",
    "parse_mcp_servers",
    "permission_resolved",
    "question_resolved",
    "resolve_agent",
    "spec_of",
    "turn_ended_draft",
]
