"""``/v1/agents``: the agents this server knows, their modes and models."""

from __future__ import annotations

from fastapi import APIRouter, Response

from sandbox_agent.agents import (
    AGENT_IDS,
    AgentCapabilities,
    AgentModels,
    AgentSettings,
    UnsupportedAgent,
    create_adapter,
    parse_agent_id,
)
from sandbox_agent.agents.mock import MOCK_CAPABILITIES
from sandbox_agent.server.errors import unsupported_agent
from sandbox_agent.server.models import (
    AgentInfo,
    AgentListResponse,
    AgentModesResponse,
    InstallAgentRequest,
    ServerStatus,
)
from sandbox_agent.server.routes.deps import Manager
from sandbox_agent.server.sessions.manager import is_installed

router = APIRouter(prefix="/v1/agents", tags=["agents"])

#: v0.1 capabilities of the agents this build lists but cannot run yet.
KNOWN_CAPABILITIES: dict[str, AgentCapabilities] = {
    "claude": AgentCapabilities(
        permissions=True, questions=True, tool_calls=True, tool_results=True, text_messages=True,
        mcp_tools=True, streaming_deltas=True,
    ),
    "codex": AgentCapabilities(
        plan_mode=True, permissions=True, tool_calls=True, tool_results=True, text_messages=True,
        images=True, file_attachments=True, session_lifecycle=True, error_events=True,
        reasoning=True, status=True, command_execution=True, file_changes=True, mcp_tools=True,
        streaming_deltas=True, item_started=True, shared_process=True,
    ),
    "opencode": AgentCapabilities(
        tool_calls=True, tool_results=True, text_messages=True, images=True,
        file_attachments=True, session_lifecycle=True, error_events=True, mcp_tools=True,
        streaming_deltas=True, item_started=True, shared_process=True,
    ),
    "amp": AgentCapabilities(
        tool_calls=True, tool_results=True, text_messages=True, error_events=True, mcp_tools=True,
    ),
    "mock": MOCK_CAPABILITIES,
}  # fmt: skip

#: v0.1 modes of the agents this build cannot run yet.
KNOWN_MODES: dict[str, list[dict[str, str]]] = {
    "claude": [
        {"id": "build", "name": "Build", "description": "Default build mode"},
        {"id": "plan", "name": "Plan", "description": "Plan mode (prompt-only)"},
    ],
    "codex": [
        {"id": "build", "name": "Build", "description": "Default build mode"},
        {"id": "plan", "name": "Plan", "description": "Planning mode via prompt prefix"},
    ],
    "opencode": [
        {"id": "build", "name": "Build", "description": "Default build mode"},
        {"id": "plan", "name": "Plan", "description": "Planning mode"},
        {"id": "custom", "name": "Custom", "description": "Any user-defined OpenCode agent name"},
    ],
    "amp": [{"id": "build", "name": "Build", "description": "Default build mode"}],
}


def _agent(agent: str) -> str:
    try:
        return parse_agent_id(agent)
    except UnsupportedAgent as exc:
        raise unsupported_agent(agent, str(exc)) from exc


async def _ignore(drafts: object) -> None:
    return None


def agent_info(agent: str, settings: AgentSettings) -> AgentInfo:
    runnable = is_installed(agent, settings)
    shared = KNOWN_CAPABILITIES.get(agent, AgentCapabilities()).shared_process
    return AgentInfo(
        id=agent,
        installed=runnable,
        credentials_available=runnable,
        version="builtin" if agent == "mock" else None,
        capabilities=KNOWN_CAPABILITIES.get(agent, AgentCapabilities()),
        server_status=ServerStatus() if shared else None,
    )


@router.get("", response_model=AgentListResponse, response_model_exclude_none=True)
async def list_agents(manager: Manager) -> AgentListResponse:
    """Every known agent; those this build cannot run are listed as not installed."""
    return AgentListResponse(agents=[agent_info(a, manager.settings) for a in AGENT_IDS])


@router.post("/{agent}/install", status_code=204)
async def install_agent(
    agent: str, manager: Manager, body: InstallAgentRequest | None = None
) -> Response:
    agent = _agent(agent)
    if agent != "mock":
        await manager.install(agent, reinstall=bool(body and body.reinstall))
    return Response(status_code=204)


@router.get("/{agent}/modes", response_model=AgentModesResponse)
async def agent_modes(agent: str, manager: Manager) -> AgentModesResponse:
    agent = _agent(agent)
    if is_installed(agent, manager.settings):
        adapter = create_adapter(agent, _ignore, manager.settings)
        modes = [m.model_dump(by_alias=True) for m in await adapter.modes()]
        return AgentModesResponse(modes=modes)
    return AgentModesResponse(modes=KNOWN_MODES.get(agent, KNOWN_MODES["amp"]))


@router.get("/{agent}/models", response_model=AgentModels, response_model_exclude_none=True)
async def agent_models(agent: str, manager: Manager) -> AgentModels:
    agent = _agent(agent)
    if is_installed(agent, manager.settings):
        return await create_adapter(agent, _ignore, manager.settings).models()
    return AgentModels()
