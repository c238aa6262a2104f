"""Request and response bodies of the HTTP API: camelCase on the wire, as v0.1.

Events themselves (``UniversalEvent``) stay snake_case; these are only the wrappers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from sandbox_agent.agents import AgentCapabilities, Attachment

#: Session, permission and question ids.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457): ``type`` is
    ``urn:sandbox-agent:error:<name>``; extensions (``sessionId``, ``agent``, ``details``, ...)
    depend on the error."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


class HealthResponse(ApiModel):
    status: Literal["ok"] = "ok"


class ContinueFrom(ApiModel):
    """Ours: where a session restored by replay on a new sandbox continues its numbering, so
    that its item ids and turn numbers never repeat those of the stream it continues."""

    #: Turns the continued stream had.
    turns: int = Field(0, ge=0)
    #: The first ``itm_<n>`` this server may give.
    next_item: int = Field(1, ge=1)


class CreateSessionRequest(ApiModel):
    """``POST /v1/sessions/{id}`` (v0.1 fields, plus ``continueFrom``)."""

    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    agent_version: str | None = None
    directory: str | None = None
    title: str | None = None
    mcp: dict[str, Any] | None = None
    skills: dict[str, Any] | None = None
    continue_from: ContinueFrom | None = None


class CreateSessionResponse(ApiModel):
    healthy: bool = True
    native_session_id: str | None = None


class SessionInfo(ApiModel):
    """A session as ``GET /v1/sessions`` lists it: v0.1's fields plus ``status`` and
    ``lastSequence``. Times are Unix epoch milliseconds."""

    session_id: str
    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    native_session_id: str | None = None
    ended: bool = False
    event_count: int = 0
    created_at: int
    updated_at: int
    directory: str | None = None
    title: str | None = None
    mcp: dict[str, Any] | None = None
    skills: dict[str, Any] | None = None
    #: ``idle``, ``running``, ``awaiting_input`` or ``ended``.
    status: str
    last_sequence: int = 0


class SessionListResponse(ApiModel):
    sessions: list[SessionInfo]
    next_cursor: str | None = None


class MessageRequest(ApiModel):
    message: str
    attachments: list[Attachment] = Field(default_factory=list)


class EventsResponse(ApiModel):
    #: ``UniversalEvent`` JSON objects (snake_case).
    events: list[dict[str, Any]]
    has_more: bool


class PermissionReplyRequest(ApiModel):
    reply: Literal["once", "always", "reject"]


class QuestionReplyRequest(ApiModel):
    answers: list[list[str]]


class InstallAgentRequest(ApiModel):
    reinstall: bool | None = None


class ServerStatus(ApiModel):
    status: Literal["running", "stopped", "error"] = "stopped"
    base_url: str | None = None
    uptime_ms: int | None = None
    restart_count: int = 0
    last_error: str | None = None


class AgentInfo(ApiModel):
    id: str
    installed: bool
    credentials_available: bool
    version: str | None = None
    path: str | None = None
    capabilities: AgentCapabilities
    server_status: ServerStatus | None = None


class AgentListResponse(ApiModel):
    agents: list[AgentInfo]


class AgentModesResponse(ApiModel):
    modes: list[dict[str, Any]]
