"""Agent adapters: run an agent and turn what it says into event drafts (``spec/agents.md``).

``base.AgentAdapter`` is the contract; ``normaliser.Normaliser`` is the step every draft passes
before it is appended; ``turns`` holds what the session layer records around a turn.
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
from sandbox_agent.agents.errors import (
    AgentError,
    AgentNotStarted,
    TurnInProgress,
    UnknownRequest,
    UnsupportedAgent,
)
from sandbox_agent.agents.hitl import AlwaysRules, permission_resolved, question_resolved
from sandbox_agent.agents.mock import MockAgent
from sandbox_agent.agents.normaliser import Normaliser
from sandbox_agent.agents.registry import (
    AGENT_IDS,
    AgentSettings,
    create_adapter,
    parse_agent_id,
)
from sandbox_agent.agents.turns import prompt_drafts, turn_ended_draft

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
    "AlwaysRules",
    "Attachment",
    "EventSink",
    "MockAgent",
    "Normaliser",
    "PermissionReply",
    "TurnInProgress",
    "UnknownRequest",
    "UnsupportedAgent",
    "create_adapter",
    "parse_agent_id",
    "permission_resolved",
    "prompt_drafts",
    "question_resolved",
    "turn_ended_draft",
]
