"""The bodies of ``/v1/agents``: the agents a server knows, their install, modes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict

from sandbox_agent.api.base import ApiModel


class AgentCapabilities(ApiModel):
    """What an agent can do: the v0.1 flags (``GET /v1/agents``), all false unless set."""

    # Read by attribute: the server fills it from an adapter's own capabilities (same flags).
    model_config = ConfigDict(frozen=True, from_attributes=True)

    plan_mode: bool = False
    permissions: bool = False
    questions: bool = False
    tool_calls: bool = False
    tool_results: bool = False
    text_messages: bool = False
    images: bool = False
    file_attachments: bool = False
    session_lifecycle: bool = False
    error_events: bool = False
    reasoning: bool = False
    status: bool = False
    command_execution: bool = False
    file_changes: bool = False
    mcp_tools: bool = False
    streaming_deltas: bool = False
    item_started: bool = False
    variants: bool = False
    shared_process: bool = False


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
