"""``/v1/agents``: the agents this server knows, whether they are installed, their modes and models.

The list holds the built-in agents (claude, codex, opencode, amp, mock) and the ACP agents
(built in: acp:claude, acp:codex, acp:opencode; plus those configured with ``--acp-agent``).
Capabilities come from the adapter class when it imports, else from ``agents.catalog``; modes
and models from the adapter (which may ask the agent, 10 s at most), else from the catalog.
``credentialsAvailable`` says whether a key the agent can use was found (``agents.credentials``),
not that the agent will authenticate.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Response

from sandbox_agent.agents import (
    AGENT_IDS,
    AgentCapabilities,
    AgentModels,
    AgentSettings,
    UnsupportedAgent,
    create_adapter,
)
from sandbox_agent.agents.base import AgentAdapter
from sandbox_agent.agents.catalog import capabilities_of, models_of, modes_of
from sandbox_agent.agents.credentials import Credentials, extract_all
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.install import installed_version, package_of
from sandbox_agent.agents.registry import (
    executable,
    is_installed,
    known_acp_agents,
    resolve_agent,
)
from sandbox_agent.api import (
    AgentInfo,
    AgentListResponse,
    AgentModesResponse,
    InstallAgentRequest,
    ServerStatus,
)
from sandbox_agent.server.errors import install_failed, unsupported_agent
from sandbox_agent.server.routes.deps import Engine

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/agents", tags=["agents"])

#: Seconds an adapter's modes()/models() may take before the catalog answers instead.
LOOKUP_TIMEOUT_SECONDS = 10.0
#: Seconds ``<bin> --version`` may take.
VERSION_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")

#: ``--version`` answers by (path, mtime): a reinstall changes the mtime.
_versions: dict[tuple[str, float], str | None] = {}


def _agent(agent: str, settings: AgentSettings) -> str:
    """The agent id, or 400 ``unsupported_agent`` (unknown, or an ACP name not configured)."""
    try:
        return resolve_agent(agent, settings).id
    except UnsupportedAgent as exc:
        raise unsupported_agent(agent, str(exc)) from exc


def all_agents(settings: AgentSettings) -> list[str]:
    return [*AGENT_IDS, *known_acp_agents(settings)]


async def _ignore(drafts: object) -> None:
    return None


def _adapter(agent: str, settings: AgentSettings) -> AgentAdapter | None:
    """A new, unstarted adapter; None when its module is missing or broken (logged)."""
    try:
        return create_adapter(agent, _ignore, settings)
    except Exception:
        logger.debug("agent %s: no adapter", agent, exc_info=True)
        return None


def capabilities(agent: str, settings: AgentSettings) -> AgentCapabilities:
    adapter = _adapter(agent, settings)
    found = getattr(adapter, "capabilities", None)
    return found if isinstance(found, AgentCapabilities) else capabilities_of(agent)


async def version(agent: str, settings: AgentSettings, path: str | None) -> str | None:
    """``builtin`` for the mock; the installed package's version; else ``<bin> --version`` for a
    CLI of a known package found elsewhere (on ``PATH``). None for commands configured by
    ``--acp-agent``: their first word may be an interpreter, whose version would mislead."""
    if agent == "mock":
        return "builtin"
    if path is None or package_of(agent) is None:
        return None
    directory = settings.installed_in()
    if Path(path).is_relative_to(directory / "node_modules"):
        found = await asyncio.to_thread(installed_version, agent, directory)
        if found is not None:
            return found
    return await probe_version(path)


async def probe_version(path: str) -> str | None:
    """First line of ``<path> --version`` (text from `` (`` on dropped), cached; None on failure."""
    try:
        key = (path, os.stat(path).st_mtime)
    except OSError:
        return None
    if key in _versions:
        return _versions[key]
    found: str | None = None
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=agent_environment(None, os.getcwd()),  # an agent's CLI: none of the server's
        )
    except OSError:
        proc = None
    if proc is not None:
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        else:
            lines = [ln.strip() for ln in out.decode(errors="replace").splitlines() if ln.strip()]
            if proc.returncode == 0 and lines:
                found = lines[0].split(" (", 1)[0].strip() or None
    _versions[key] = found
    return found


def server_status(agent: str, settings: AgentSettings) -> ServerStatus:
    """The shared server of ``agent`` (adapters register it in ``settings.shared`` under the
    agent id)."""
    status = settings.shared.status(agent)
    return ServerStatus(
        status=status.status,
        base_url=status.base_url,
        uptime_ms=status.uptime_ms,
        restart_count=status.restart_count,
        last_error=status.last_error,
    )


async def agent_info(agent: str, settings: AgentSettings, found: Credentials) -> AgentInfo:
    caps = capabilities(agent, settings)
    path = executable(agent, settings)
    return AgentInfo(
        id=agent,
        installed=is_installed(agent, settings),
        credentials_available=agent == "mock" or found.available_for(agent),
        version=await version(agent, settings, path),
        path=path,
        capabilities=caps,
        server_status=server_status(agent, settings) if caps.shared_process else None,
    )


@router.get("", response_model=AgentListResponse, response_model_exclude_none=True)
async def list_agents(engine: Engine) -> AgentListResponse:
    """Every agent this server knows, with its install status, version, path and capabilities.

    ``credentialsAvailable`` reflects the API keys and tokens found in the server's environment
    and in the agents' own credential files; agents configured otherwise (a ``CODEX_HOME``
    provider, an ``opencode.json`` with keys) may work without any."""
    settings = engine.settings
    found = await asyncio.to_thread(extract_all)
    infos = [agent_info(a, settings, found) for a in all_agents(settings)]
    return AgentListResponse(agents=list(await asyncio.gather(*infos)))


@router.post("/{agent}/install", status_code=204)
async def install_agent(
    agent: str, engine: Engine, body: InstallAgentRequest | None = None
) -> Response:
    """Install the agent's pinned npm package into the agents dir (a no-op when that version is
    there already, unless ``reinstall``). 500 ``install_failed`` when npm fails."""
    agent = _agent(agent, engine.settings)
    if agent == "mock":
        return Response(status_code=204)
    if package_of(agent) is None:
        # Configured by --acp-agent: nothing to install, but say if the command is missing.
        if not is_installed(agent, engine.settings):
            raise install_failed(
                agent, "configured by --acp-agent; its command was not found, nothing to install"
            )
        return Response(status_code=204)
    await engine.install(agent, reinstall=bool(body and body.reinstall))
    return Response(status_code=204)


#: Lookups still running after the timeout, kept so they finish (and are not collected).
_background: set[asyncio.Task[Any]] = set()


async def _lookup(
    agent: str, settings: AgentSettings, ask: Callable[[AgentAdapter], Awaitable[T]]
) -> T | None:
    """``ask(adapter)`` of a fresh adapter when the agent is installed; None when it is not,
    has no adapter, fails, or takes over ``LOOKUP_TIMEOUT_SECONDS``. A slow lookup is not
    cancelled but left to finish in the background: cancelling it could cut a shared server's
    start short and leave its process behind."""
    if not is_installed(agent, settings):
        return None
    adapter = _adapter(agent, settings)
    if adapter is None:
        return None
    task = asyncio.ensure_future(_ask_then_stop(agent, adapter, ask))
    done, _ = await asyncio.wait({task}, timeout=LOOKUP_TIMEOUT_SECONDS)
    if not done:
        logger.warning("agent %s: lookup still running; using the catalog", agent)
        _background.add(task)
        task.add_done_callback(_background.discard)
        return None
    return task.result()


async def _ask_then_stop(
    agent: str, adapter: AgentAdapter, ask: Callable[[AgentAdapter], Awaitable[T]]
) -> T | None:
    try:
        return await ask(adapter)
    except Exception:
        logger.warning("agent %s: lookup failed; using the catalog", agent, exc_info=True)
        return None
    finally:
        try:
            await adapter.stop()
        except Exception:
            logger.debug("agent %s: stopping a probe adapter failed", agent, exc_info=True)


@router.get("/{agent}/modes", response_model=AgentModesResponse)
async def agent_modes(agent: str, engine: Engine) -> AgentModesResponse:
    """The agent modes a session may ask for: the agent's own list when it is installed and
    answers, else the built-in one."""
    agent = _agent(agent, engine.settings)
    modes = await _lookup(agent, engine.settings, lambda a: a.modes()) or modes_of(agent)
    return AgentModesResponse(modes=[m.model_dump(by_alias=True) for m in modes])


@router.get("/{agent}/models", response_model=AgentModels, response_model_exclude_none=True)
async def agent_models(agent: str, engine: Engine) -> AgentModels:
    """The models a session may ask for: the agent's own list when it is installed and answers,
    else the built-in one (possibly empty)."""
    agent = _agent(agent, engine.settings)
    models = await _lookup(agent, engine.settings, lambda a: a.models())
    return models if models is not None and models.models else models_of(agent)
