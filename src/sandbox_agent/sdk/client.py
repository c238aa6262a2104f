"""``SandboxAgent``: the async client of a sandbox-agent server, with a local event store."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from sandbox_agent.api import CreateSessionRequest, ForkSessionRequest, SkillsConfig
from sandbox_agent.replay import restore_text, state_at
from sandbox_agent.sdk.embedded import EmbeddedServer
from sandbox_agent.sdk.errors import SandboxAgentError
from sandbox_agent.sdk.fs import FsApi
from sandbox_agent.sdk.http import DEFAULT_TIMEOUT, ApiClient, request_body
from sandbox_agent.sdk.mirror import remote_offset
from sandbox_agent.sdk.session import Session
from sandbox_agent.store import (
    EventStore,
    Page,
    SessionExists,
    SessionRecord,
    SessionStatus,
    open_store,
)


class SandboxAgent:
    """The SDK. ``await SandboxAgent.connect(url)`` or ``await SandboxAgent.start()``, then
    ``async with`` it (or ``await sdk.close()``).

    Every event the SDK sees from the server is mirrored into ``store``, its own durable copy
    of every session; ``list_sessions``, ``Session.state`` and ``Session.events`` read it.
    ``api`` is the plain HTTP client underneath (``ApiClient``), for the endpoints the SDK
    does not wrap.
    """

    def __init__(
        self,
        api: ApiClient,
        store: EventStore,
        *,
        own_store: bool = False,
        replay_max_events: int = 50,
        replay_max_chars: int = 12000,
        server: EmbeddedServer | None = None,
    ) -> None:
        self.api = api
        #: The HTTP client (the mirror streams its SSE through it).
        self.http = api.http
        #: The server's filesystem API (``sdk.fs.read(path)`` ...), inside its root.
        self.fs = FsApi(api)
        self.store = store
        self.replay_max_events = replay_max_events
        self.replay_max_chars = replay_max_chars
        self.server = server
        self._own_store = own_store
        self._sessions: dict[str, Session] = {}

    # -- opening and closing --------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str | None = None,
        store: EventStore | str | None = None,
        headers: Mapping[str, str] | None = None,
        replay_max_events: int = 50,
        replay_max_chars: int = 12000,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        _server: EmbeddedServer | None = None,
    ) -> SandboxAgent:
        """A client of the server at ``base_url``. ``store`` is an ``EventStore`` (left open
        on close) or a store URL (opened and closed here); default ``memory://``.
        ``transport`` replaces httpx's own (e.g. ``sandbox_agent.testing.faults.FaultyTransport``
        in tests); it is closed with the SDK."""
        own_store = not isinstance(store, EventStore)
        opened = store if isinstance(store, EventStore) else await open_store(store or "memory://")
        api = ApiClient.open(base_url, token, headers, timeout=timeout, transport=transport)
        return cls(
            api,
            opened,
            own_store=own_store,
            replay_max_events=replay_max_events,
            replay_max_chars=replay_max_chars,
            server=_server,
        )

    @classmethod
    async def start(
        cls,
        store: EventStore | str | None = None,
        *,
        server_store: str | None = None,
        token: str | None = None,
        mock_delay_ms: int | None = None,
        server_args: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        replay_max_events: int = 50,
        replay_max_chars: int = 12000,
        startup_timeout: float = 30.0,
    ) -> SandboxAgent:
        """Embedded mode: start ``sandbox-agent server`` as a child process on a free loopback
        port with a random token (and its own SQLite store in a temporary directory unless
        ``server_store`` is given), wait for ``/v1/health``; ``close()`` stops it."""
        server = EmbeddedServer(
            store=server_store,
            token=token,
            mock_delay_ms=mock_delay_ms,
            args=server_args,
            startup_timeout=startup_timeout,
        )
        await server.start()
        try:
            return await cls.connect(
                server.base_url,
                server.token,
                store,
                headers,
                replay_max_events,
                replay_max_chars,
                _server=server,
            )
        except BaseException:
            await server.stop()
            raise

    async def close(self) -> None:
        """Stop mirroring, close the HTTP client, the store (when opened here) and the embedded
        server (when started here)."""
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
        await self.api.aclose()
        if self._own_store:
            await self.store.close()
        if self.server is not None:
            await self.server.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return str(self.http.base_url)

    # -- HTTP -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One request; raises ``SandboxAgentError`` on an error status."""
        return await self.api.request(method, path, json=json, params=params)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return dict(await self.api.request_json(method, path, json=json, params=params) or {})

    async def health(self) -> dict[str, Any]:
        return await self.api.health()

    async def list_agents(self) -> list[dict[str, Any]]:
        """The server's agents (``AgentInfo`` objects, camelCase as the API sends them)."""
        agents: list[dict[str, Any]] = (await self.api.list_agents())["agents"]
        return agents

    # -- sessions -------------------------------------------------------------------------
    async def create_session(
        self,
        id: str | None = None,
        *,
        agent: str,
        agent_mode: str | None = None,
        permission_mode: str | None = None,
        model: str | None = None,
        variant: str | None = None,
        agent_version: str | None = None,
        directory: str | None = None,
        title: str | None = None,
        mcp: dict[str, Any] | None = None,
        skills: SkillsConfig | dict[str, Any] | None = None,
    ) -> Session:
        """Create the session on the server and in the local store (its creation parameters
        kept in ``SessionRecord.init``, to recreate it on a new sandbox) and mirror it.
        ``skills``: ``SkillsConfig(sources=[SkillSource(type="git", source=...)])`` or the
        same as JSON (``{"sources": [...]}``)."""
        session_id = id or f"ses_{secrets.token_hex(8)}"
        if await self.store.get_session(session_id) is not None:
            raise SandboxAgentError.of(
                "session_already_exists",
                409,
                f"session {session_id!r} already exists in the local store",
                sessionId=session_id,
            )
        request = request_body(
            CreateSessionRequest,
            agent=agent,
            agent_mode=agent_mode,
            permission_mode=permission_mode,
            model=model,
            variant=variant,
            agent_version=agent_version,
            directory=directory,
            title=title,
            mcp=mcp,
            skills=skills,
        )
        await self.api.create_session(session_id, request)
        # The creation parameters as sent (camelCase), to recreate the session elsewhere.
        init = request.wire()
        record = await self.store.create_session(_record(session_id, init))
        session = await self._open(record)
        session.mirror.start()
        return session

    async def fork(
        self, session_id: str, new_id: str | None = None, at: int | None = None
    ) -> Session:
        """Fork the session on the server (``POST /v1/sessions/{id}/fork``): a new session
        ``new_id`` (default ``<id>-fork-<8 hex digits>``) holding events 1..``at`` of it
        (default: all), which continues with its own agent. The local store holds the fork
        too, as it holds a created session: its record (the source's creation parameters,
        ``metadata.forked_from`` as the server says it) and its events, mirrored from the
        server's first one; returns once they are stored. ``at`` counts the server's events,
        which are the local ones unless the session was restored on a new sandbox."""
        fork_id = new_id or f"{session_id[:114]}-fork-{secrets.token_hex(4)}"
        if await self.store.get_session(fork_id) is not None:
            raise SandboxAgentError.of(
                "session_already_exists",
                409,
                f"session {fork_id!r} already exists in the local store",
                sessionId=fork_id,
            )
        body = request_body(ForkSessionRequest, session_id=fork_id, at=at).wire()
        info = await self.request_json("POST", f"/v1/sessions/{session_id}/fork", json=body)
        source = await self.store.get_session(session_id)
        if source is not None:
            init = dict(source.init)
        else:
            init = {k: info.get(k) for k in _INIT_FIELDS if info.get(k) is not None}
        init.pop("continueFrom", None)  # the server's numbering of the fork starts at 1
        record = _record(fork_id, init).model_copy(
            update={"metadata": {"forked_from": info.get("forkedFrom")}}
        )
        record = await self.store.create_session(record)
        session = await self._open(record)
        await session.catch_up(int(info.get("lastSequence", 0)))
        return session

    async def get_session(self, id: str) -> Session:
        """The session, from the local store; a session only the server knows is adopted
        (recorded locally, mirrored from its first event once used). 404 when neither knows
        it. Makes no request for a session the local store knows."""
        if id in self._sessions:
            return self._sessions[id]
        record = await self.store.get_session(id)
        if record is None:
            info = await self.api.get_session(id)
            init = {k: info.get(k) for k in _INIT_FIELDS if info.get(k) is not None}
            try:
                record = await self.store.create_session(_record(id, init))
            except SessionExists:  # another replica adopted it at the same time
                record = await self.store.get_session(id)
                if record is None:
                    raise
        return await self._open(record)

    async def resume_session(self, id: str) -> Session:
        """``get_session``, then make sure the server has it (recreating it from the local
        copy when the server lost it) and mirror it."""
        session = await self.get_session(id)
        await session.ensure_remote()
        return session

    async def resume_or_create_session(self, id: str, **params: Any) -> Session:
        """Resume the session when the local store or the server knows it, else create it."""
        try:
            return await self.resume_session(id)
        except SandboxAgentError as exc:
            if exc.status != 404 or await self.store.get_session(id) is not None:
                raise
        return await self.create_session(id, **params)

    async def list_sessions(
        self,
        limit: int = 100,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        agent: str | None = None,
    ) -> Page[SessionRecord]:
        """Sessions of the local store, newest first (every replica sharing it sees all)."""
        return await self.store.list_sessions(
            limit=limit, cursor=cursor, status=status, agent=agent
        )

    async def delete_session(self, id: str) -> None:
        """Delete the session on the server (terminating it) and in the local store."""
        session = self._sessions.pop(id, None)
        if session is not None:
            await session.close()
        try:
            await self.api.delete_session(id)
        except SandboxAgentError as exc:
            if exc.status != 404:
                raise
        await self.store.delete_session(id)

    async def _open(self, record: SessionRecord) -> Session:
        """A session handle for a local record: where its remote stream maps in, and the
        restore text still owed to the next prompt (after a restore before a crash)."""
        state = await state_at(self.store, record.id)
        offset = remote_offset(state)
        restore: str | None = None
        if offset and not any(
            t.started_sequence and t.started_sequence > offset for t in state.turns
        ):
            before = await state_at(self.store, record.id, offset)
            restore = restore_text(before, self.replay_max_events, self.replay_max_chars) or None
        # wait() follows the open turn from its start, or what comes next.
        open_turn = state.open_turn
        cursor = (
            open_turn.started_sequence - 1
            if open_turn is not None and open_turn.started_sequence
            else state.last_sequence
        )
        session = Session(self, record, offset=offset, restore=restore, cursor=cursor)
        self._sessions[record.id] = session
        return session


_INIT_FIELDS = (
    "agent",
    "agentMode",
    "permissionMode",
    "model",
    "variant",
    "directory",
    "title",
    "mcp",
    "skills",
)


def _record(session_id: str, init: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        agent=init.get("agent", "mock"),
        agent_mode=init.get("agentMode"),
        permission_mode=init.get("permissionMode"),
        model=init.get("model"),
        variant=init.get("variant"),
        title=init.get("title"),
        directory=init.get("directory"),
        init=init,
    )
