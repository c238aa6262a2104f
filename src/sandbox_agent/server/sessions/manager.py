"""The session manager: finds, creates, recovers and removes the server's ``LiveSession``s.

Every session of the store can be served: active ones are loaded at start-up (``recover``),
others (ended ones) on first use. Sessions stay in memory once loaded; their state is the
reducer's, so holding them costs what their state costs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from sandbox_agent.agents import (
    AgentSettings,
    UnsupportedAgent,
    create_adapter,
    parse_agent_id,
)
from sandbox_agent.agents.catalog import models_of
from sandbox_agent.agents.install import InstallError
from sandbox_agent.agents.install import install as install_agent
from sandbox_agent.events import EventDraft, SessionStartedData
from sandbox_agent.server.errors import (
    agent_not_installed,
    install_failed,
    invalid_request,
    mode_not_supported,
    session_already_exists,
    session_not_found,
    unsupported_agent,
)
from sandbox_agent.server.models import CreateSessionRequest, CreateSessionResponse
from sandbox_agent.server.sessions.session import LiveSession
from sandbox_agent.store import EventStore, SessionRecord

logger = logging.getLogger(__name__)

PERMISSION_MODES = ("default", "plan", "bypass", "acceptEdits")
#: Seconds a session's creation waits for the agent's live model list.
MODEL_LOOKUP_SECONDS = 10.0
#: Agent modes each agent accepts (v0.1 normalisation); missing: any.
AGENT_MODES: dict[str, tuple[str, ...]] = {
    "mock": ("build", "plan"),
    "claude": ("build", "plan"),
    "codex": ("build", "plan"),
    "amp": ("build",),
}
#: Permission modes each agent accepts after normalisation.
AGENT_PERMISSION_MODES: dict[str, tuple[str, ...]] = {
    "mock": ("default", "plan", "bypass"),
    "claude": PERMISSION_MODES,
    "codex": PERMISSION_MODES,
    "amp": ("default", "bypass"),
    "opencode": ("default", "bypass"),
}


def is_installed(agent: str, settings: AgentSettings) -> bool:
    """Whether ``agent`` can run here (the mock always; others once their CLI is found, for an
    ``--acp-agent`` command its first word)."""
    if agent == "mock":
        return True
    command = settings.command(agent)
    return command is not None and len(command) > 0 and shutil.which(command[0]) is not None


class SessionManager:
    """All sessions of one server, over one store."""

    def __init__(
        self,
        store: EventStore,
        *,
        settings: AgentSettings,
        root: str | None = None,
        snapshot_every: int = 1000,
    ) -> None:
        self.store = store
        self.settings = settings
        self.root = root
        self.snapshot_every = snapshot_every
        self._sessions: dict[str, LiveSession] = {}
        self._loading = asyncio.Lock()
        self._installing = asyncio.Lock()

    async def get(self, session_id: str) -> LiveSession:
        """The session, loaded from the store if needed; 404 ``session_not_found``."""
        live = self._sessions.get(session_id)
        if live is not None:
            return live
        async with self._loading:
            live = self._sessions.get(session_id)
            if live is None:
                record = await self.store.get_session(session_id)
                if record is None:
                    raise session_not_found(session_id)
                live = await self._load(record)
                self._sessions[session_id] = live
            return live

    def loaded(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    async def _load(self, record: SessionRecord) -> LiveSession:
        return await LiveSession.load(
            self.store,
            record,
            settings=self.settings,
            root=self.root,
            snapshot_every=self.snapshot_every,
        )

    async def create(self, session_id: str, request: CreateSessionRequest) -> CreateSessionResponse:
        """Create the session, start its agent and record ``session.started``."""
        try:
            agent = parse_agent_id(request.agent)
        except UnsupportedAgent as exc:
            raise unsupported_agent(request.agent, str(exc)) from exc
        if await self.store.get_session(session_id) is not None:
            raise session_already_exists(session_id)
        if not is_installed(agent, self.settings):
            if not self.settings.auto_install:
                raise agent_not_installed(agent)
            await self.install(agent, request.agent_version)
        agent_mode, permission_mode = normalise_modes(agent, request)
        model = request.model
        if model is None:
            model = await self._default_model(agent)
        directory = request.directory
        if directory is not None and not await asyncio.to_thread(Path(directory).is_dir):
            raise invalid_request(f"directory does not exist: {directory}")
        record = SessionRecord(
            id=session_id,
            agent=agent,
            agent_mode=agent_mode,
            permission_mode=permission_mode,
            model=model,
            variant=request.variant,
            title=request.title,
            directory=directory,
            init={
                k: v
                for k, v in {
                    "mcp": request.mcp,
                    "skills": request.skills,
                    "agentVersion": request.agent_version,
                    "continueFrom": request.continue_from.model_dump(by_alias=True)
                    if request.continue_from is not None
                    else None,
                }.items()
                if v is not None
            },
        )
        async with self._loading:
            record = await self.store.create_session(record)
            live = await self._load(record)
            self._sessions[session_id] = live
        try:
            adapter = await live.ensure_adapter()
            metadata = {
                "agent": agent,
                "agentMode": agent_mode,
                "permissionMode": permission_mode,
                "model": model,
                "variant": request.variant,
                "directory": directory,
                "title": request.title,
            }
            started = EventDraft(
                type="session.started",
                data=SessionStartedData(metadata=metadata),
                source="daemon",
                synthetic=True,
                native_session_id=adapter.native_session_id,
            )
            await live.append([started])
        except BaseException:
            self._sessions.pop(session_id, None)
            await live.stop_agent()
            await self.store.delete_session(session_id)
            raise
        return CreateSessionResponse(healthy=True, native_session_id=adapter.native_session_id)

    async def delete(self, session_id: str) -> None:
        """Terminate the session if live, then remove it and its events."""
        live = await self.get(session_id)
        await live.terminate()
        self._sessions.pop(session_id, None)
        await self.store.delete_session(session_id)

    async def recover(self) -> list[str]:
        """Load every active session of the store and close what a previous server left open
        (see ``LiveSession.recover``). Returns the ids recovered."""
        recovered: list[str] = []
        for record in await self.store.all_sessions("active"):
            if record.id in self._sessions:
                continue
            if record.last_sequence == 0:
                # Its creation never got as far as session.started: it was never acknowledged.
                await self.store.delete_session(record.id)
                continue
            try:
                live = await self._load(record)
                await live.recover()
            except Exception:
                logger.exception("session %s: recovery failed", record.id)
                continue
            self._sessions[record.id] = live
            recovered.append(record.id)
        return recovered

    async def _default_model(self, agent: str) -> str | None:
        """The agent's default model: a live lookup bounded by ``MODEL_LOOKUP_SECONDS``, else
        the catalog's; a failed lookup never fails the session."""
        probe = create_adapter(agent, _discard, self.settings)
        try:
            models = await asyncio.wait_for(probe.models(), MODEL_LOOKUP_SECONDS)
        except Exception:
            logger.warning("%s: model lookup failed; using the catalog's default", agent)
            models = models_of(agent)
        return models.default_model or models_of(agent).default_model

    async def install(self, agent: str, version: str | None = None, reinstall: bool = False) -> str:
        """Install ``agent``'s CLI (one install at a time); 500 ``install_failed`` on failure."""
        async with self._installing:
            try:
                return await install_agent(
                    agent,
                    version=version,
                    reinstall=reinstall,
                    directory=self.settings.installed_in(),
                )
            except InstallError as exc:
                raise install_failed(agent, exc.reason) from exc
            except OSError as exc:  # the agents dir cannot be created, npm cannot start
                raise install_failed(agent, str(exc)) from exc

    async def shutdown(self) -> None:
        """Stop every agent (their sessions stay active: the next server resumes them), then
        the shared agent servers."""
        for live in list(self._sessions.values()):
            try:
                await live.stop_agent()
            except Exception:
                logger.exception("session %s: stopping its agent failed", live.id)
        try:
            await self.settings.shared.stop_all()
        except Exception:
            logger.exception("stopping the shared agent servers failed")


def normalise_modes(agent: str, request: CreateSessionRequest) -> tuple[str, str]:
    """(agentMode, permissionMode) as v0.1 normalises them; 400 on a bad value."""
    agent_mode = request.agent_mode or "build"
    allowed_modes = AGENT_MODES.get(agent)
    if allowed_modes is not None and agent_mode not in allowed_modes:
        raise mode_not_supported(agent, agent_mode)
    permission_mode = request.permission_mode or "default"
    if permission_mode not in PERMISSION_MODES:
        raise invalid_request(f"invalid permission mode: {permission_mode}")
    if permission_mode == "acceptEdits" and agent not in ("claude", "codex"):
        permission_mode = "default"
    allowed = AGENT_PERMISSION_MODES.get(agent, ("default",))
    if permission_mode not in allowed:
        raise mode_not_supported(agent, permission_mode)
    return agent_mode, permission_mode


async def _discard(drafts: object) -> None:
    return None
