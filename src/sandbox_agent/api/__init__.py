"""The wire models of the HTTP API (``spec/http-api.md``), shared by the server, the SDK and
the CLI: one definition of every request and response body. camelCase on the wire (as v0.1),
snake_case in Python; ``model.wire()`` is the JSON object to send.

This layer knows only pydantic and the event schema (``sandbox_agent.events``): no HTTP
client, no web framework, no store.
"""

from sandbox_agent.api.agents import (
    AgentCapabilities,
    AgentInfo,
    AgentListResponse,
    AgentModesResponse,
    InstallAgentRequest,
    ServerStatus,
)
from sandbox_agent.api.base import ID_PATTERN, ID_RE, ApiModel, Id
from sandbox_agent.api.fs import (
    FsEntry,
    FsMoveRequest,
    FsMoveResponse,
    FsPathResponse,
    FsStat,
    FsUploadResponse,
    FsWriteResponse,
)
from sandbox_agent.api.problems import PROBLEM_JSON, TYPE_PREFIX, Problem
from sandbox_agent.api.sessions import (
    ContinueFrom,
    CreateSessionRequest,
    CreateSessionResponse,
    EventsResponse,
    ForkedFrom,
    ForkSessionRequest,
    HealthResponse,
    InstalledSkill,
    MessageRequest,
    PermissionReplyRequest,
    PromptQueuedResponse,
    QuestionReplyRequest,
    QueuedPromptInfo,
    QueueResponse,
    SessionInfo,
    SessionListResponse,
    SkillsConfig,
    SkillSource,
)
from sandbox_agent.events import Attachment

__all__ = [
    "ID_PATTERN",
    "ID_RE",
    "PROBLEM_JSON",
    "TYPE_PREFIX",
    "AgentCapabilities",
    "AgentInfo",
    "AgentListResponse",
    "AgentModesResponse",
    "ApiModel",
    "Attachment",
    "ContinueFrom",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "EventsResponse",
    "ForkSessionRequest",
    "ForkedFrom",
    "FsEntry",
    "FsMoveRequest",
    "FsMoveResponse",
    "FsPathResponse",
    "FsStat",
    "FsUploadResponse",
    "FsWriteResponse",
    "HealthResponse",
    "Id",
    "InstallAgentRequest",
    "InstalledSkill",
    "MessageRequest",
    "PermissionReplyRequest",
    "Problem",
    "PromptQueuedResponse",
    "QuestionReplyRequest",
    "QueueResponse",
    "QueuedPromptInfo",
    "ServerStatus",
    "SessionInfo",
    "SessionListResponse",
    "SkillSource",
    "SkillsConfig",
]
