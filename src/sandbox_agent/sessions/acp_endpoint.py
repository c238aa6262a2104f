"""The ACP endpoint's sessions, no HTTP (``/v1/acp``, ``docs/acp.md``).

An ACP server (upstream's v0.2+ API) is one agent behind a client-chosen ``serverId``; the
client POSTs JSON-RPC envelopes and reads what the agent writes as SSE. Here each server is a
session of the store (id ``acp-<serverId>``, ``-<n>`` appended when a server id is reused after
a ``DELETE``; ``init.acp`` names the server and its agent), and every envelope in both
directions is an event ``acp.message {direction: "client"|"agent", message}`` of it, appended
before the envelope goes on (to the agent, or back to the client). So the SSE stream, and its
``Last-Event-ID`` replay, is a read of the store: no ring, nothing lost on a restart.

Beside the envelopes, the universal events they stand for (so replay, transcripts and
``replay --check`` work on ACP sessions):

- a client ``session/prompt`` request -> ``turn.started`` and the user's message item (its text
  blocks), when no turn is open (a second session's prompt during a turn gets no turn);
- the agent's ``session/update`` during a turn -> ``acp_mapping.AcpMapper`` (assistant items,
  tool calls, plans);
- the agent's answer to that prompt -> ``turn.ended`` (``completed``, ``cancelled`` for
  ``stopReason: cancelled``; a JSON-RPC error -> ``error {code: acp_<code>}`` and ``error``);
- the agent's ``session/request_permission`` -> ``permission.requested`` (id ``acp_<request
  id>``) and the client's answer -> ``permission.resolved`` (``allow_once`` -> ``accept``,
  ``allow_always`` -> ``accept_for_session``, a reject or ``cancelled`` -> ``reject``);
- the agent process exiting during a turn -> ``error`` and ``turn.ended {error}``;
- ``DELETE`` -> ``session.ended {terminated}``.

The agent is an ACP process (``acp_relay.ProcessAcpPeer``), the ACP mock, or one of our native
adapters presented as ACP (``acp_native.NativeAcpPeer``; ``AcpEndpoint.native`` says which
agent names reach one).

After a restart the servers come back from the store (those not deleted); a turn left open
ends ``interrupted``. The agent is started again at the next POST: the client initializes it
anew (upstream's SDK does, with a new server id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sandbox_agent.agents.acp_mapping import AcpMapper
from sandbox_agent.agents.acp_native import NATIVE_AGENTS, NATIVE_PREFIX, NativeAcpPeer
from sandbox_agent.agents.acp_relay import AcpPeer, MockAcpPeer, ProcessAcpPeer
from sandbox_agent.agents.catalog import ACP_PREFIX
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import UnsupportedAgent
from sandbox_agent.agents.registry import is_installed, known_acp_agents
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    SessionEndedData,
    SessionStartedData,
    UniversalEvent,
)
from sandbox_agent.replay import replay
from sandbox_agent.sessions.drafts import closing_drafts, prompt_drafts
from sandbox_agent.sessions.errors import AgentNotInstalled, SessionError
from sandbox_agent.sessions.normaliser import Normaliser
from sandbox_agent.store import EventStore, SessionExists, SessionNotFound
from sandbox_agent.store.records import SessionRecord

logger = logging.getLogger(__name__)

ACP_MESSAGE = "acp.message"
SESSION_PREFIX = "acp-"
#: Longest server id (the session id, ``acp-<serverId>-<n>``, must stay within 128 characters).
MAX_SERVER_ID_CHARS = 100
SERVER_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_SERVER_ID_CHARS}}}")
#: Envelopes of the agent queued for the store before its reader waits for the store.
MAX_UNWRITTEN = 256
#: Seconds a POSTed request waits for the agent's answer (upstream's default, 120 s).
DEFAULT_REQUEST_TIMEOUT = 120.0

Direction = Literal["client", "agent"]


# -- errors ----------------------------------------------------------------------------------
class AcpError(SessionError):
    def __init__(self, message: str, server_id: str) -> None:
        super().__init__(message)
        self.server_id = server_id


class AcpAgentRequired(AcpError):
    """The first POST to an unknown server id names no ``agent``."""

    def __init__(self, server_id: str) -> None:
        super().__init__(
            f"missing required 'agent' query parameter for first POST to /v1/acp/{server_id}",
            server_id,
        )


class AcpAgentMismatch(AcpError):
    def __init__(self, server_id: str, agent: str, requested: str) -> None:
        super().__init__(
            f"ACP server {server_id} runs agent {agent!r}, not {requested!r}", server_id
        )
        self.agent = agent
        self.requested = requested


class AcpServerNotFound(AcpError):
    def __init__(self, server_id: str) -> None:
        super().__init__(f"unknown ACP server: {server_id}", server_id)


class AcpInvalidServerId(AcpError):
    def __init__(self, server_id: str) -> None:
        super().__init__(
            f"ACP server id must be 1 to {MAX_SERVER_ID_CHARS} of [A-Za-z0-9._:-]", server_id
        )


class AcpRequestTimeout(AcpError):
    def __init__(self, server_id: str, method: str, seconds: float) -> None:
        super().__init__(
            f"the agent did not answer {method} within {seconds:g} s (ACP server {server_id})",
            server_id,
        )
        self.seconds = seconds


class AcpAgentUnavailable(AcpError):
    """The agent's process is gone and the envelope could not be handed to it."""


# -- envelopes -------------------------------------------------------------------------------
def kind_of(message: dict[str, Any]) -> Literal["request", "notification", "response"]:
    if isinstance(message.get("method"), str):
        return "request" if "id" in message else "notification"
    return "response"


def _key(request_id: Any) -> str:
    # JSON-RPC ids are strings or numbers: 1 and "1" are different requests.
    return json.dumps(request_id, sort_keys=True)


def is_acp_record(record: SessionRecord) -> bool:
    return isinstance(record.init.get("acp"), dict)


def _prompt_text(params: Any) -> str:
    blocks = params.get("prompt") if isinstance(params, dict) else None
    texts = [
        b["text"]
        for b in blocks or []
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    return "\n".join(texts)


_OPTION_STATUS = {
    "allow_once": "accept",
    "allow_always": "accept_for_session",
    "reject_once": "reject",
    "reject_always": "reject",
}


@dataclass
class AcpServerInfo:
    server_id: str
    agent: str
    created_at: datetime
    session_id: str


@dataclass
class _Permission:
    data: PermissionData
    kinds: dict[str, str]


# -- one server ------------------------------------------------------------------------------
@dataclass
class AcpServer:
    """One server id: its stream in the store, its agent (started on demand) and the requests
    waiting for the agent's answer."""

    endpoint: AcpEndpoint
    info: AcpServerInfo
    normaliser: Normaliser
    peer: AcpPeer | None = None
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    mapper: AcpMapper = field(default_factory=AcpMapper)
    #: The key of the ``session/prompt`` request whose turn is open.
    turn_request: str | None = None
    permissions: dict[str, _Permission] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    #: The client's last ``initialize`` request, and the agent's sessions (``session/new``
    #: answers: id -> the request's params): what a new agent process is given again.
    initialize: dict[str, Any] | None = None
    agent_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _new_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: An agent process ran for this server before (in this server process or an earlier one).
    had_agent: bool = False
    #: While a new process is given the old state: what it says is marked ``restore``.
    restoring: bool = False
    #: Envelopes (with their events) waiting for the writer, each with its future.
    _queue: list[tuple[list[EventDraft], asyncio.Future[None]]] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None

    async def post(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Store the envelope, hand it to the agent; for a request, the agent's answer (stored
        before it is returned), else None."""
        if self.closed:
            raise AcpServerNotFound(self.info.server_id)
        peer = await self._peer(message)
        return await self._send(peer, message)

    async def _send(
        self, peer: AcpPeer, message: dict[str, Any], *, restore: bool = False
    ) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any]] | None = None
        key = ""
        if kind_of(message) == "request":
            key = _key(message["id"])
            future = asyncio.get_running_loop().create_future()
            self.pending[key] = future
        try:
            await self.record("client", message, restore=restore)
            try:
                await peer.send(message)
            except (ConnectionError, OSError) as exc:
                raise AcpAgentUnavailable(
                    f"the agent of ACP server {self.info.server_id} is gone: {exc}",
                    self.info.server_id,
                ) from exc
            if future is None:
                return None
            timeout = self.endpoint.request_timeout
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                raise AcpRequestTimeout(
                    self.info.server_id, str(message.get("method")), timeout
                ) from None
        finally:
            if future is not None and self.pending.get(key) is future:
                del self.pending[key]

    async def _peer(self, message: dict[str, Any]) -> AcpPeer:
        async with self.starting:
            if self.peer is None or not self.peer.alive:
                if self.peer is not None:
                    await self.peer.close()
                    self.peer = None
                peer = await self.endpoint.start_agent(self)
                if self.had_agent and message.get("method") != "initialize":
                    try:
                        await self._restore(peer)
                    except BaseException:
                        await peer.close()
                        raise
                self.peer = peer
                self.had_agent = True
            return self.peer

    async def _restore(self, peer: AcpPeer) -> None:
        """A new agent process for a client that initialized the one before (it died, or the
        server restarted): ``initialize`` again, then ``session/load`` of each of the agent's
        sessions when it can load them. These exchanges are stored marked ``restore`` and not
        streamed (the client never asked for them)."""
        if self.initialize is None:
            return
        self.restoring = True
        try:
            init = {**self.initialize, "id": f"_restore_{uuid.uuid4().hex[:12]}"}
            answer = await self._send(peer, init, restore=True) or {}
            result = answer.get("result")
            capabilities = result.get("agentCapabilities") if isinstance(result, dict) else None
            if not (isinstance(capabilities, dict) and capabilities.get("loadSession")):
                return
            for session_id, params in list(self.agent_sessions.items()):
                load = {
                    "jsonrpc": "2.0",
                    "id": f"_restore_{uuid.uuid4().hex[:12]}",
                    "method": "session/load",
                    "params": {
                        "sessionId": session_id,
                        "cwd": params.get("cwd") or self.endpoint.directory,
                        "mcpServers": params.get("mcpServers") or [],
                    },
                }
                await self._send(peer, load, restore=True)
        finally:
            self.restoring = False

    def note(self, direction: Direction, message: dict[str, Any]) -> None:
        """Keep what a later agent process is given again (``_restore``)."""
        method = message.get("method")
        if direction == "client" and kind_of(message) == "request":
            if method == "initialize":
                self.initialize = message
            elif method == "session/new":
                params = message.get("params")
                self._new_requests[_key(message["id"])] = params if isinstance(params, dict) else {}
        elif direction == "agent" and kind_of(message) == "response" and "id" in message:
            params = self._new_requests.pop(_key(message["id"]), None)
            result = message.get("result")
            if params is not None and isinstance(result, dict):
                session_id = result.get("sessionId")
                if isinstance(session_id, str):
                    self.agent_sessions[session_id] = params

    async def from_agent(self, message: dict[str, Any]) -> None:
        """An envelope of the agent: queued for the store; once stored, the request waiting
        for it (if any) gets it. Not awaited (so that what the agent says at once is stored in
        one commit), unless ``MAX_UNWRITTEN`` envelopes already wait: then the agent's reader
        waits too."""
        stored = self.enqueue("agent", message, restore=self.restoring)
        waiting = None
        if kind_of(message) == "response" and "id" in message:
            waiting = self.pending.get(_key(message["id"]))

        def done(future: asyncio.Future[None]) -> None:
            error = None if future.cancelled() else future.exception()
            if waiting is not None and not waiting.done():
                if error is not None:
                    waiting.set_exception(error)
                elif future.cancelled():
                    waiting.cancel()
                else:
                    waiting.set_result(message)

        stored.add_done_callback(done)
        if len(self._queue) > MAX_UNWRITTEN:
            with contextlib.suppress(Exception):
                await stored

    async def record(
        self, direction: Direction, message: dict[str, Any], *, restore: bool = False
    ) -> None:
        """Store the envelope and the universal events it maps to (returns once committed)."""
        await self.enqueue(direction, message, restore=restore)

    def enqueue(
        self, direction: Direction, message: dict[str, Any], *, restore: bool = False
    ) -> asyncio.Future[None]:
        """Queue the envelope and the universal events it maps to (a ``restore`` one maps to
        none) for the writer, in arrival order; the future is done once they are committed.
        The writer appends everything queued meanwhile as one batch (group commit)."""
        data: dict[str, Any] = {"direction": direction, "message": message}
        if restore:
            data["restore"] = True
        envelope = EventDraft(
            type=ACP_MESSAGE, data=data, source="client" if direction == "client" else "agent"
        )
        drafts = [envelope] if restore else [envelope, *self._map(direction, message)]
        if not restore:
            self.note(direction, message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((drafts, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"ACP {self.info.server_id}")
        return future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            drafts = [draft for group in batch for draft in group[0]]
            try:
                async with self.lock:
                    await self._append(drafts)
            except Exception as exc:
                logger.warning("ACP server %s: append failed: %r", self.info.server_id, exc)
                # What was normalised is not stored: fold the stream again.
                with contextlib.suppress(Exception):
                    events = await self.endpoint.store.read(self.info.session_id)
                    self.normaliser = Normaliser.from_events(events)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: no warning for an unawaited one
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _append(self, drafts: Sequence[EventDraft]) -> list[UniversalEvent]:
        normalised = self.normaliser.normalise(drafts)
        stored = await self.endpoint.store.append(self.info.session_id, normalised)
        return stored

    def _map(self, direction: Direction, message: dict[str, Any]) -> list[EventDraft]:
        kind = kind_of(message)
        method = message.get("method")
        params = message.get("params")
        if direction == "client":
            if kind == "request" and method == "session/prompt" and self.turn_request is None:
                self.turn_request = _key(message["id"])
                self.mapper = AcpMapper()
                item_id = self.normaliser.new_item_id()
                return prompt_drafts(_prompt_text(params), item_id=item_id)
            if kind == "response":
                return self._resolved(message)
            return []
        if kind == "notification":
            if method == "session/update" and self.turn_request is not None:
                return self.mapper.update(params, raw=message)
            if method == "_adapter/agent_exited" and self.turn_request is not None:
                self.turn_request = None
                error = ErrorData(message="the agent process exited", code="agent_exited")
                return [
                    *self.mapper.close_all(),
                    EventDraft(type="error", data=error, source="daemon", synthetic=True),
                    turn_ended_draft("error"),
                ]
            return []
        if kind == "request":
            if method == "session/request_permission":
                permission_id = f"acp_{message['id']}"
                data = self.mapper.permission(params, permission_id)
                options = params.get("options") if isinstance(params, dict) else None
                kinds = {
                    str(o.get("optionId")): str(o.get("kind"))
                    for o in options or []
                    if isinstance(o, dict)
                }
                self.permissions[_key(message["id"])] = _Permission(data, kinds)
                return [EventDraft(type="permission.requested", data=data, source="agent")]
            return []
        # The agent's answer: the end of the open turn when it answers that prompt.
        if "id" not in message or _key(message["id"]) != self.turn_request:
            return []
        self.turn_request = None
        drafts = self.mapper.close_all()
        failure = message.get("error")
        if isinstance(failure, dict):
            error = ErrorData(
                message=str(failure.get("message") or "error"),
                code=f"acp_{failure.get('code')}",
                details=failure.get("data"),
            )
            return [*drafts, EventDraft(type="error", data=error), turn_ended_draft("error")]
        result = message.get("result")
        stop = result.get("stopReason") if isinstance(result, dict) else None
        if stop == "cancelled":
            return [*drafts, turn_ended_draft("cancelled")]
        metadata = {"stopReason": stop} if stop not in (None, "end_turn") else None
        return [*drafts, turn_ended_draft("completed", metadata=metadata)]

    def _resolved(self, message: dict[str, Any]) -> list[EventDraft]:
        permission = self.permissions.pop(_key(message.get("id")), None)
        if permission is None:
            return []
        result = message.get("result")
        outcome = result.get("outcome") if isinstance(result, dict) else None
        status = "reject"
        if isinstance(outcome, dict) and outcome.get("outcome") == "selected":
            status = _OPTION_STATUS.get(
                permission.kinds.get(str(outcome.get("optionId")), ""), "reject"
            )
        data = permission.data.model_copy(update={"status": status})
        return [EventDraft(type="permission.resolved", data=data, source="client")]

    async def close(self, *, ended: bool) -> None:
        """Stop the agent; with ``ended``, end the stream (``DELETE``)."""
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.cancel()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer  # what was queued is stored before the end
        if ended:
            async with self.lock:
                state_drafts: list[EventDraft] = []
                if self.turn_request is not None:
                    state_drafts.append(turn_ended_draft("interrupted"))
                    self.turn_request = None
                ended_data = SessionEndedData(reason="terminated", terminated_by="daemon")
                state_drafts.append(
                    EventDraft(type="session.ended", data=ended_data, source="daemon")
                )
                with contextlib.suppress(SessionNotFound):
                    await self._append(state_drafts)


# -- the endpoint ----------------------------------------------------------------------------
class AcpEndpoint:
    """Every ACP server of a server process."""

    def __init__(
        self,
        store: EventStore,
        settings: AgentSettings,
        *,
        directory: str,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.store = store
        self.settings = settings
        self.directory = directory
        self.request_timeout = request_timeout
        self._servers: dict[str, AcpServer] = {}
        self._creating = asyncio.Lock()

    async def recover(self) -> list[str]:
        """Load the servers a previous process left (not deleted); a turn left open ends
        ``interrupted``. Returns their server ids."""
        for record in await self.store.all_sessions("active"):
            if not is_acp_record(record):
                continue
            try:
                server = await self._load(record)
            except Exception:
                logger.exception("ACP server of session %s: recovery failed", record.id)
                continue
            self._servers[server.info.server_id] = server
        return sorted(self._servers)

    async def _load(self, record: SessionRecord) -> AcpServer:
        events = await self.store.read(record.id)
        state = replay(events)
        normaliser = Normaliser.from_state(state)  # one fold of the stream, not two
        server = AcpServer(self, self._info(record), normaliser)
        for event in events:
            if event.type == ACP_MESSAGE and not event.data.get("restore"):
                message = event.data.get("message")
                if isinstance(message, dict):
                    client = event.data.get("direction") == "client"
                    server.note("client" if client else "agent", message)
                    server.had_agent = True
        closing = closing_drafts(state)
        if closing:
            await server._append(closing)
        return server

    @staticmethod
    def _info(record: SessionRecord) -> AcpServerInfo:
        acp = record.init["acp"]
        return AcpServerInfo(
            server_id=str(acp.get("serverId")),
            agent=str(acp.get("agent")),
            created_at=record.created_at,
            session_id=record.id,
        )

    def servers(self) -> list[AcpServerInfo]:
        return [self._servers[k].info for k in sorted(self._servers)]

    def get(self, server_id: str) -> AcpServer:
        server = self._servers.get(server_id)
        if server is None:
            raise AcpServerNotFound(server_id)
        return server

    async def post(
        self, server_id: str, agent: str | None, message: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Relay one envelope (the first POST of a server id creates it, for ``agent``)."""
        server = await self._server_for(server_id, agent)
        return await server.post(message)

    async def _server_for(self, server_id: str, agent: str | None) -> AcpServer:
        if not SERVER_ID.fullmatch(server_id):
            raise AcpInvalidServerId(server_id)
        server = self._servers.get(server_id)
        if server is not None:
            if agent and agent != server.info.agent:
                raise AcpAgentMismatch(server_id, server.info.agent, agent)
            return server
        if not agent:
            raise AcpAgentRequired(server_id)
        self.command(agent)  # an unknown agent: refused before anything is stored
        async with self._creating:
            server = self._servers.get(server_id)
            if server is None:
                server = await self._create(server_id, agent)
                self._servers[server_id] = server
        if server.info.agent != agent:
            raise AcpAgentMismatch(server_id, server.info.agent, agent)
        return server

    async def _create(self, server_id: str, agent: str) -> AcpServer:
        base = SESSION_PREFIX + server_id
        n = 1
        while True:
            session_id = base if n == 1 else f"{base}-{n}"
            record = SessionRecord(
                id=session_id,
                agent=agent,
                directory=self.directory,
                init={"acp": {"serverId": server_id, "agent": agent}},
            )
            try:
                record = await self.store.create_session(record)
                break
            except SessionExists:
                n += 1  # a server id used before (and deleted): a new stream
        server = AcpServer(self, self._info(record), Normaliser())
        metadata = {
            "agent": agent,
            "directory": self.directory,
            "acp": {"serverId": server_id, "agent": agent},
        }
        started = SessionStartedData(metadata=metadata)
        await server._append(
            [EventDraft(type="session.started", data=started, source="daemon", synthetic=True)]
        )
        return server

    def native(self, agent: str) -> str | None:
        """The adapter that serves ``agent`` presented as ACP (``acp_native.py``), or None
        when an ACP process (or the ACP mock) does: ``native:<agent>`` always; ``amp`` (it
        has no ACP command); ``claude``, ``codex``, ``opencode`` when their ACP command is
        not installed but their own CLI is. ``UnsupportedAgent`` for an unknown
        ``native:`` name, ``AgentNotInstalled`` when the adapter's CLI is missing."""
        if agent.startswith(NATIVE_PREFIX):
            name = agent.removeprefix(NATIVE_PREFIX)
            if name not in NATIVE_AGENTS:
                raise UnsupportedAgent(agent, "no native adapter of that name")
        elif agent in NATIVE_AGENTS and agent != "mock":
            name = agent
            acp = ACP_PREFIX + agent
            if acp in known_acp_agents(self.settings) and self.settings.command(acp):
                return None  # its ACP agent process, as upstream
            if agent != "amp" and not is_installed(agent, self.settings):
                return None  # neither form: the ACP one is what is missing
        else:
            return None
        if not is_installed(name, self.settings):
            raise AgentNotInstalled(name)
        return name

    def command(self, agent: str) -> list[str] | None:
        """The command line of ``agent``'s ACP process (None: in process, the ACP mock or a
        native adapter: ``native``). ``UnsupportedAgent`` for an agent with no ACP form;
        ``AgentNotInstalled`` when its command is missing. ``claude`` stands for
        ``acp:claude`` and so on."""
        if agent == "mock" or self.native(agent) is not None:
            return None
        name = agent if agent.startswith(ACP_PREFIX) else ACP_PREFIX + agent
        if name not in known_acp_agents(self.settings):
            raise UnsupportedAgent(agent, "no ACP agent of that name")
        argv = self.settings.command(name)
        if argv is None:
            raise AgentNotInstalled(name)
        return argv

    async def start_agent(self, server: AcpServer) -> AcpPeer:
        native = self.native(server.info.agent)
        if native is not None:
            return NativeAcpPeer(native, self.settings, self.directory, server.from_agent)
        argv = self.command(server.info.agent)
        if argv is None:
            return MockAcpPeer(server.from_agent)
        name = server.info.agent
        agent_id = name if name.startswith(ACP_PREFIX) else ACP_PREFIX + name
        try:
            return await ProcessAcpPeer.spawn(
                agent_id,
                argv,
                settings=self.settings,
                directory=self.directory,
                log_name=server.info.session_id,
                deliver=server.from_agent,
            )
        except OSError as exc:
            raise AcpAgentUnavailable(
                f"cannot start {argv[0]} for ACP server {server.info.server_id}: {exc}",
                server.info.server_id,
            ) from exc

    async def delete(self, server_id: str) -> None:
        """Stop the server's agent and end its stream; nothing when there is no such server."""
        server = self._servers.pop(server_id, None)
        if server is not None:
            await server.close(ended=True)

    async def shutdown(self) -> None:
        """Stop every agent (the streams stay open: the servers come back after a restart)."""
        servers = list(self._servers.values())
        self._servers.clear()
        await asyncio.gather(*(s.close(ended=False) for s in servers), return_exceptions=True)
