"""Transitional: the wire models moved to ``sandbox_agent.api``; import them from there.

What is left here goes once nothing uses it:

- the re-exported names, for the session engine (``CreateSessionRequest``,
  ``CreateSessionResponse``) and ``server/responses.py`` (``Problem``);
- ``MessageRequest`` with the agents' own ``Attachment``: ``routes/sessions.py`` hands
  ``body.attachments`` to the session layer, which types them as ``agents.Attachment``. Once the
  route maps the wire ``api.Attachment`` to it (or the engine takes the wire model), the route
  imports ``MessageRequest`` from ``sandbox_agent.api`` and this class goes.
"""

from pydantic import Field

from sandbox_agent.agents.base import Attachment as AgentAttachment
from sandbox_agent.api import (
    ID_PATTERN,
    ID_RE,
    AgentCapabilities,
    AgentInfo,
    AgentListResponse,
    AgentModesResponse,
    ApiModel,
    Attachment,
    ContinueFrom,
    CreateSessionRequest,
    CreateSessionResponse,
    EventsResponse,
    HealthResponse,
    Id,
    InstallAgentRequest,
    PermissionReplyRequest,
    Problem,
    QuestionReplyRequest,
    ServerStatus,
    SessionInfo,
    SessionListResponse,
)

__all__ = [
    "ID_PATTERN",
    "ID_RE",
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
    "HealthResponse",
    "Id",
    "InstallAgentRequest",
    "MessageRequest",
    "PermissionReplyRequest",
    "Problem",
    "QuestionReplyRequest",
    "ServerStatus",
    "SessionInfo",
    "SessionListResponse",
]


# ``sandbox_agent.api.MessageRequest``, its attachments typed as the session layer's (no
# docstring: it would show in the OpenAPI document).
class MessageRequest(ApiModel):
    message: str
    attachments: list[AgentAttachment] = Field(default_factory=list)
    #: Ours: refuse (409 ``turn_in_progress``) instead of queueing while a turn runs.
    if_idle: bool = False
