"""The generic Agent Client Protocol adapter (agent ids ``acp:<name>``).

One agent process per session, from ``settings.command(id)`` (built in: ``acp:claude`` ->
``claude-agent-acp``, ``acp:codex`` -> ``codex-acp``, ``acp:opencode`` -> ``opencode acp``;
others from ``--acp-agent NAME=CMD``). It runs through ``AgentProcess`` (own process group,
stderr to the log file, ``stop()`` kills the group: the codex-acp node wrapper does not pass
SIGTERM on), and JSON-RPC goes through the ``agent-client-protocol`` package's ``Connection``
over a transport of ours on the process's stdin/stdout (``spawn_agent_process`` would neither
start a process group nor send stderr to our log).

Lifecycle: ``start`` sends ``initialize`` (protocol 1; client capabilities ``fs`` read/write,
``terminal: false``) then ``session/new {cwd: directory, mcpServers}`` (the session's ``mcp``
servers, see ``mcp_servers``); the new session id is ``native_session_id``. With ``resume``,
when the agent says ``loadSession``, ``session/load`` continues that session; the history the
agent replays as ``session/update`` during the load is dropped (it is in our stream already).
An agent without ``loadSession`` (or whose load fails) gets a new session: its history is not
carried, and ``native_session_id`` changes, which the session layer records as
``session.resumed {native_resume: false}``. After it, ``session/set_mode`` when the session's
``agent_mode`` is one of the agent's modes, and the model (config option of category ``model``,
else ``session/set_model``) when the session names one; failures are logged. Modes and models
come from the ``session/new`` answer (``modes``, else the config option of category ``mode``;
kept per agent id for later ``GET /v1/agents/.../modes|models``), after ``build`` (the agent's
default, every session's default mode), else the ``NativeAgent`` fallbacks.

A turn is one ``session/prompt`` (text, then attachments: images as ``image`` blocks when the
agent accepts them, other files as ``resource_link``). Its answer's ``stopReason``: ``end_turn``,
``max_tokens``, ``max_turn_requests``, ``refusal`` (and any other) -> ``turn.ended {completed}``,
the stop reason in ``metadata.stopReason`` unless ``end_turn`` (the agent ended its turn
normally; a refusal is content, not a failure of ours); ``cancelled`` after our cancel ->
nothing (the session layer writes ``turn.ended {cancelled}``), ``cancelled`` without one ->
``turn.ended {cancelled}``. A JSON-RPC error -> ``error {code: acp_<code>}`` and
``turn.ended {error}``. The agent process ending -> ``session.ended`` (``completed`` on exit
code 0, else ``error``; stderr tail attached); the next ``send`` (the session layer records
``session.resumed {reopened}``) starts a new process that loads the same native session.

Updates are mapped by ``acp_mapping.AcpMapper`` (its docstring lists the mapped and the ignored
kinds) in arrival order, through one queue; updates outside a turn (load replay, after a cancel
gave up waiting) are dropped. Requests the agent sends:

- ``session/request_permission`` -> ``permission.requested``; the answer selects the option of
  kind ``allow_once`` (``once``), ``allow_always`` (``always``) or ``reject_once`` /
  ``reject_always`` (``reject``), falling back to the other option of the same sense. Requests
  still pending when their turn ends or is cancelled are answered ``cancelled`` (as ACP
  requires on cancel) and recorded ``permission.resolved {reject, metadata.reason: cancelled}``.
- ``fs/read_text_file`` / ``fs/write_text_file``: served inside the session directory; a path
  outside it is refused (invalid params).
- ``terminal/*``: refused (method not found; we advertise ``terminal: false``).
- any other request: refused (method not found) and recorded as ``agent.unparsed``; other
  notifications -> ``agent.unparsed``, except extension ones (``_``-prefixed), ignored.

Non-JSON stdout lines -> ``agent.unparsed``. ``cancel`` sends the ``session/cancel``
notification, answers pending permissions ``cancelled``, and waits (``CANCEL_TIMEOUT`` s) for
the prompt to return, so nothing more is emitted for the turn once it returns; an agent that
does not return it in time is stopped (the next ``send`` starts a new process).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp.connection import Connection
from acp.exceptions import RequestError

from sandbox_agent.agents.acp_mapping import AcpMapper, new_native_id, unparsed
from sandbox_agent.agents.base import (
    AgentMode,
    AgentModel,
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import ACP_CAPABILITIES
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import AgentError, AgentNotStarted, TurnInProgress, UnknownRequest
from sandbox_agent.agents.mcp import McpLocalServer, McpServer
from sandbox_agent.agents.native import NativeAgent
from sandbox_agent.agents.process import AgentProcess
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    SessionEndedData,
    StderrOutput,
    TurnEndedData,
)
from sandbox_agent.version import __version__

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: Seconds ``start`` waits for ``initialize`` and ``session/new`` (or ``session/load``).
START_TIMEOUT = 90.0
#: Seconds ``cancel`` waits for the prompt to return after ``session/cancel``, then stops the
#: agent's process (the session layer gives up sooner: ``sessions.TurnLimits.cancel_grace``).
CANCEL_TIMEOUT = 15.0
#: Largest image sent inline with a prompt; bigger ones go as a link.
MAX_INLINE_IMAGE = 10 * 1024 * 1024


_CANCELLED = {"outcome": {"outcome": "cancelled"}}
_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "once": ("allow_once", "allow_always"),
    "always": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}

#: Modes and models the agents offered in their last ``session/new`` answer, per agent id.
_LIVE_MODES: dict[str, list[AgentMode]] = {}
_LIVE_MODELS: dict[str, AgentModels] = {}


# -- the work queue: everything the agent says, in arrival order ---------------------------
@dataclass
class _Turn:
    cancelled: bool = False
    #: cancel() gave up waiting: drop what the turn still says.
    abandoned: bool = False
    #: Its ``turn.ended`` is being emitted: a client that saw it may send the next prompt
    #: before ``done`` is set.
    ending: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class _TurnStart:
    turn: _Turn


@dataclass
class _TurnEnd:
    turn: _Turn
    result: Any = None
    error: RequestError | Exception | None = None


@dataclass
class _Update:
    params: Any
    raw: Any


@dataclass
class _Permission:
    params: Any
    raw: Any
    future: asyncio.Future[Any]


@dataclass
class _Cancel:
    turn: _Turn


@dataclass
class _Draft:
    draft: EventDraft


@dataclass
class _Exit:
    process: AgentProcess


_Work = _TurnStart | _TurnEnd | _Update | _Permission | _Cancel | _Draft | _Exit


class _ProcessTransport:
    """The ``acp`` package's message transport over an ``AgentProcess``'s stdio (JSON lines)."""

    def __init__(
        self,
        process: AgentProcess,
        on_garbage: Callable[[bytes, str], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._process = process
        self._lines: AsyncIterator[bytes] = process.lines()
        self._on_garbage = on_garbage
        self._on_eof = on_eof

    async def send(self, message: dict[str, Any]) -> None:
        await self._process.write_json(message)

    async def receive(self) -> dict[str, Any] | None:
        while True:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                self._on_eof()
                return None
            try:
                message = json.loads(line)
            except ValueError as exc:
                self._on_garbage(line, f"not JSON: {exc}")
                continue
            if isinstance(message, dict):
                return message
            self._on_garbage(line, "not a JSON-RPC message (not an object)")

    async def close(self) -> None:
        self._process.close_stdin()


class AcpAgent(NativeAgent):
    """One session's ACP agent. See the module docstring."""

    capabilities = ACP_CAPABILITIES

    def __init__(self, sink: EventSink, settings: AgentSettings, agent_id: str) -> None:
        super().__init__(sink, settings)
        self.id = agent_id
        self._process: AgentProcess | None = None
        self._conn: Connection | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[_Work] = asyncio.Queue()
        self._mapper = AcpMapper()
        self._turn: _Turn | None = None
        #: The turn whose output the pump emits (set in queue order, see ``_TurnStart``).
        self._active: _Turn | None = None
        self._futures: dict[str, asyncio.Future[Any]] = {}
        self._options: dict[str, list[dict[str, Any]]] = {}
        self._image_prompts = False
        self._live = False
        #: The current process is being ended (its exit is not an event).
        self._stopping = False
        #: The agent process ended by itself (``session.ended`` recorded).
        self._ended = False
        #: ``stop()`` was called: for good.
        self._stopped = False

    # -- modes and models -----------------------------------------------------------------
    async def modes(self) -> list[AgentMode]:
        # ``build`` (the agent's own default) stays first: it is every session's default mode.
        live = [m for m in _LIVE_MODES.get(self.id, []) if m.id != "build"]
        return [*self.MODES, *live]

    async def models(self) -> AgentModels:
        return _LIVE_MODELS.get(self.id) or AgentModels()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        if self._session is not None:
            raise AgentError(f"{self.id}: already started")
        self._begin(session)
        await self._launch(resume)

    async def _launch(self, resume: str | None) -> None:
        """Start a process and open (or load) the session in it."""
        argv = self.command()
        self._stopping = self._live = self._ended = False
        self._inbox = asyncio.Queue()
        self._mapper = AcpMapper()
        self._turn = self._active = None
        self._futures.clear()
        self._options.clear()
        try:
            process = self._process = await AgentProcess.spawn(
                argv, cwd=self.directory, env=self.environment(), log_path=self.log_path()
            )
        except OSError as exc:
            raise AgentError(f"{self.id}: cannot start {argv[0]}: {exc}") from exc
        self._pump_task = asyncio.create_task(self._pump(), name=f"{self.id} pump")
        transport = _ProcessTransport(
            process, self._garbage, lambda: self._inbox.put_nowait(_Exit(process))
        )
        self._conn = Connection(self._handle, transport)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._open_session(self._conn, resume)
        except BaseException as exc:
            tail = process.stderr_tail(1500).strip()
            await self._shutdown()
            if isinstance(exc, RequestError | ConnectionError | TimeoutError):
                detail = f"{exc}" + (f" ({exc.data})" if isinstance(exc, RequestError) else "")
                raise AgentError(
                    f"{self.id}: the agent did not start a session: {detail}"
                    + (f"\n{tail}" if tail else "")
                ) from exc
            raise
        self._live = True

    async def _open_session(self, conn: Connection, resume: str | None) -> None:
        init = await conn.send_request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "clientCapabilities": {
                    "fs": {"readTextFile": True, "writeTextFile": True},
                    "terminal": False,
                },
                "clientInfo": {"name": "sandbox-agent", "version": __version__},
            },
        )
        capabilities = _dict(_dict(init).get("agentCapabilities"))
        self._image_prompts = bool(_dict(capabilities.get("promptCapabilities")).get("image"))
        mcp = _dict(capabilities.get("mcpCapabilities"))
        servers = mcp_servers(self.session.mcp, self.environment(), http=bool(mcp.get("http")))
        where = {"cwd": self.directory, "mcpServers": servers}
        answer: dict[str, Any] | None = None
        if resume is not None and capabilities.get("loadSession"):
            try:
                answer = _dict(
                    await conn.send_request("session/load", {"sessionId": resume, **where})
                )
                self.native_session_id = resume
            except RequestError as exc:
                logger.warning("%s: session/load %s failed (%s); new session", self.id, resume, exc)
        elif resume is not None:
            logger.info("%s: the agent cannot load sessions; %s starts anew", self.id, resume)
        if answer is None:
            answer = _dict(await conn.send_request("session/new", where))
            session_id = answer.get("sessionId")
            if not isinstance(session_id, str) or not session_id:
                raise AgentError(f"{self.id}: session/new answered no sessionId")
            self.native_session_id = session_id
        await self._configure(conn, answer)

    async def _configure(self, conn: Connection, answer: dict[str, Any]) -> None:
        """Remember the offered modes and models, and apply the session's choices."""
        session = self.session
        modes, current_mode, mode_option = _modes_of(answer)
        if modes:
            _LIVE_MODES[self.id] = modes
        models, model_option = _models_of(answer)
        if models is not None:
            _LIVE_MODELS[self.id] = models
        base = {"sessionId": self.native_session_id}
        if session.agent_mode in {m.id for m in modes} and session.agent_mode != current_mode:
            if mode_option is not None:
                params = {**base, "configId": mode_option, "value": session.agent_mode}
                await self._try(conn, "session/set_config_option", params)
            else:
                await self._try(conn, "session/set_mode", {**base, "modeId": session.agent_mode})
        if session.model and models is not None and session.model != models.default_model:
            if model_option is not None:
                params = {**base, "configId": model_option, "value": session.model}
                await self._try(conn, "session/set_config_option", params)
            else:
                await self._try(conn, "session/set_model", {**base, "modelId": session.model})

    async def _try(self, conn: Connection, method: str, params: dict[str, Any]) -> None:
        try:
            await conn.send_request(method, params)
        except RequestError as exc:
            logger.warning("%s: %s failed: %s (%s)", self.id, method, exc, exc.data)

    async def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            await self._shutdown()

    async def _shutdown(self) -> None:
        """End the current process (its exit is then expected, not reported)."""
        if self._stopping:
            return
        self._stopping = True
        self._live = False
        for future in self._futures.values():
            if not future.done():
                future.set_result(_CANCELLED)
        self._futures.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        if self._process is not None:
            await self._process.stop()
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        if self._turn is not None:
            if self._turn.task is not None:
                self._turn.task.cancel()
            self._turn.done.set()

    # -- turns ----------------------------------------------------------------------------
    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        if self._session is None or self._stopped:
            raise AgentNotStarted(f"{self.id}: start() first")
        if self._turn is not None and not (self._turn.done.is_set() or self._turn.ending):
            raise TurnInProgress(f"{self.id}: a turn is still running")
        if self._ended or (self._process is not None and self._process.returncode is not None):
            # The agent ended the session (recorded); the session layer reopens it: a new
            # process continues the same native session where the agent can load it.
            logger.info("%s: the agent process ended; starting it again", self.id)
            await self._shutdown()
            await self._launch(self.native_session_id)
        conn = self._connection()
        blocks = [{"type": "text", "text": prompt}]
        blocks += await asyncio.to_thread(self._attachment_blocks, attachments)
        turn = self._turn = _Turn()
        self._inbox.put_nowait(_TurnStart(turn))
        params = {"sessionId": self.native_session_id, "prompt": blocks}
        turn.task = asyncio.create_task(self._prompt(conn, turn, params), name=f"{self.id} prompt")

    async def _prompt(self, conn: Connection, turn: _Turn, params: dict[str, Any]) -> None:
        try:
            result = await conn.send_request("session/prompt", params)
        except (RequestError, ConnectionError) as exc:
            self._inbox.put_nowait(_TurnEnd(turn, error=exc))
        else:
            self._inbox.put_nowait(_TurnEnd(turn, result=result))

    async def cancel(self) -> None:
        turn = self._turn
        if turn is None or turn.done.is_set():
            return
        if turn.ending:  # it ended by itself; wait until it is all out
            await turn.done.wait()
            return
        turn.cancelled = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.send_notification(
                    "session/cancel", {"sessionId": self.native_session_id}
                )
        self._inbox.put_nowait(_Cancel(turn))
        try:
            await asyncio.wait_for(turn.done.wait(), CANCEL_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "%s: the prompt did not return %ss after cancel: stopping the agent",
                self.id,
                CANCEL_TIMEOUT,
            )
            turn.abandoned = True
            # A hung agent: its process goes (the next send starts one, with a fresh mapping,
            # so the next turn's text cannot land in this turn's open message).
            await self._shutdown()
            turn.done.set()

    # -- HITL -----------------------------------------------------------------------------
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        future = self._futures.get(request.permission_id)
        if future is None or future.done():
            raise UnknownRequest("permission", request.permission_id)
        options = self._options.get(request.permission_id, [])
        for kind in _OPTION_KINDS[reply]:
            chosen = next((o for o in options if o.get("kind") == kind), None)
            if chosen is not None:
                break
        else:
            if reply != "reject":
                raise AgentError(f"{self.id}: the agent offered no option to allow this")
            chosen = None
        outcome = (
            {"outcome": {"outcome": "selected", "optionId": chosen.get("optionId")}}
            if chosen is not None
            else _CANCELLED
        )
        future.set_result(outcome)
        del self._futures[request.permission_id]
        self._options.pop(request.permission_id, None)

    # -- what the agent sends -------------------------------------------------------------
    async def _handle(self, method: str, params: Any, is_notification: bool) -> Any:
        # Runs in a task per message, started in arrival order; the queue keeps that order
        # (put_nowait comes before any await).
        raw = {"jsonrpc": "2.0", "method": method, "params": params}
        if method == "session/update":
            self._inbox.put_nowait(_Update(params, raw))
            return None
        if method == "session/request_permission" and not is_notification:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._inbox.put_nowait(_Permission(params, raw, future))
            return await future
        if method == "fs/read_text_file" and not is_notification:
            return await asyncio.to_thread(self._read_text_file, _dict(params))
        if method == "fs/write_text_file" and not is_notification:
            return await asyncio.to_thread(self._write_text_file, _dict(params))
        if is_notification:
            if not method.startswith("_"):  # extension notifications are optional: ignored
                self._inbox.put_nowait(
                    _Draft(unparsed(f"unknown notification {method}", method, raw))
                )
            return None
        if not method.startswith("terminal/"):
            self._inbox.put_nowait(_Draft(unparsed(f"unsupported request {method}", method, raw)))
        raise RequestError.method_not_found(method)

    def _garbage(self, line: bytes, error: str) -> None:
        text = line.decode(errors="replace")
        self._inbox.put_nowait(_Draft(unparsed(error, "stdout", text)))

    # -- the pump: the one place that emits the agent's output ----------------------------
    async def _pump(self) -> None:
        while True:
            work = await self._inbox.get()
            try:
                await self._process_work(work)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: mapping failed", self.id)

    async def _process_work(self, work: _Work) -> None:
        active = self._active
        match work:
            case _TurnStart(turn=turn):
                self._active = turn
            case _Update(params=params, raw=raw):
                if active is not None and not active.abandoned:
                    await self.emit(*self._mapper.update(params, raw))
            case _Permission(params=params, raw=raw, future=future):
                await self._permission(active, params, raw, future)
            case _Draft(draft=draft):
                if active is None or not active.abandoned:
                    await self.emit(draft)
            case _Cancel(turn=turn):
                if turn is active:
                    await self._cancel_permissions()
            case _TurnEnd(turn=turn):
                if turn is active:
                    await self._end_turn(work)
            case _Exit(process=process):
                if process is self._process:
                    await self._exited()

    async def _permission(
        self, turn: _Turn | None, params: Any, raw: Any, future: asyncio.Future[Any]
    ) -> None:
        if turn is None or turn.cancelled or turn.abandoned or self._stopping:
            future.set_result(_CANCELLED)  # nobody could answer it
            return
        permission_id = new_native_id("acp_perm")
        self._futures[permission_id] = future
        options = _dict(params).get("options")
        self._options[permission_id] = [o for o in options or [] if isinstance(o, dict)]
        request = self._mapper.permission(params, permission_id)
        await self.ask_permission(request)

    async def _cancel_permissions(self) -> None:
        async with self._hitl_lock:
            drafts: list[EventDraft] = []
            for permission_id, future in list(self._futures.items()):
                if not future.done():
                    future.set_result(_CANCELLED)
                request = self._permissions.pop(permission_id, None)
                if request is not None:
                    metadata = {**(request.metadata or {}), "reason": "cancelled"}
                    data = request.model_copy(update={"status": "reject", "metadata": metadata})
                    drafts.append(
                        EventDraft(
                            type="permission.resolved", data=data, source="daemon", synthetic=True
                        )
                    )
            self._futures.clear()
            self._options.clear()
            await self.emit(*drafts)

    async def _end_turn(self, work: _TurnEnd) -> None:
        turn = work.turn
        await self._cancel_permissions()
        drafts = self._mapper.close_all()
        if not turn.abandoned:
            if work.error is not None:
                drafts += _error_drafts(work.error)
            elif not turn.cancelled:
                drafts.append(_ended_draft(_dict(work.result)))
            turn.ending = not turn.cancelled
            await self.emit(*drafts)
        self._active = None
        turn.done.set()

    async def _exited(self) -> None:
        if self._stopping or not self._live or self._ended:
            return
        self._ended = True
        process = self._process
        assert process is not None
        try:
            code: int | None = await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            code = None
        await process.stop()
        for future in self._futures.values():
            if not future.done():
                future.set_result(_CANCELLED)
        self._futures.clear()
        self.forget_requests()
        tail = process.stderr_tail().strip()
        ended = SessionEndedData(
            reason="completed" if code == 0 else "error",
            terminated_by="agent",
            message=None if code == 0 else f"the agent process exited with code {code}",
            exit_code=code,
            stderr=StderrOutput(tail=tail) if tail else None,
        )
        drafts = self._mapper.close_all() if self._active is not None else []
        if self._active is not None:
            self._active.ending = True
        await self.emit(*drafts, EventDraft(type="session.ended", data=ended))
        turn, self._active = self._active, None
        if turn is not None:
            turn.done.set()

    # -- fs requests ----------------------------------------------------------------------
    def _inside(self, path: Any) -> Path:
        if not isinstance(path, str) or not path:
            raise RequestError.invalid_params({"message": "path must be a non-empty string"})
        root = Path(self.directory).resolve()
        resolved = (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise RequestError.invalid_params(
                {"message": f"{path} is outside the session directory {root}"}
            )
        return resolved

    def _read_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self._inside(params.get("path"))
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise RequestError.resource_not_found(str(path)) from None
        except OSError as exc:
            raise RequestError.internal_error({"message": str(exc)}) from None
        line, limit = params.get("line"), params.get("limit")
        if isinstance(line, int) or isinstance(limit, int):
            lines = text.splitlines(keepends=True)
            start = max(line - 1, 0) if isinstance(line, int) else 0
            end = start + limit if isinstance(limit, int) else None
            text = "".join(lines[start:end])
        return {"content": text}

    def _write_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self._inside(params.get("path"))
        content = params.get("content")
        if not isinstance(content, str):
            raise RequestError.invalid_params({"message": "content must be a string"})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except OSError as exc:
            raise RequestError.internal_error({"message": str(exc)}) from None
        return {}

    # -- helpers --------------------------------------------------------------------------
    def _connection(self) -> Connection:
        if self._conn is None or self._stopping:
            raise AgentNotStarted(f"{self.id}: start() first")
        return self._conn

    def _attachment_blocks(self, attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for attachment in attachments:
            path = Path(self.directory) / attachment.path
            mime = attachment.mime
            if self._image_prompts and mime is not None and mime.startswith("image/"):
                with contextlib.suppress(OSError):
                    if path.stat().st_size <= MAX_INLINE_IMAGE:
                        data = base64.b64encode(path.read_bytes()).decode()
                        blocks.append({"type": "image", "data": data, "mimeType": mime})
                        continue
            link: dict[str, Any] = {
                "type": "resource_link",
                "uri": path.resolve().as_uri(),
                "name": attachment.filename or path.name,
            }
            if mime is not None:
                link["mimeType"] = mime
            blocks.append(link)
        return blocks


def mcp_servers(
    servers: Mapping[str, McpServer] | None, env: Mapping[str, str], *, http: bool
) -> list[dict[str, Any]]:
    """The session's MCP servers as ACP ``mcpServers`` (disabled ones left out).

    Stdio servers always (every ACP agent takes them); remote ones only when the agent says
    ``mcpCapabilities.http`` (sent as ``http``, or ``sse`` when their transport says so).
    ACP has no ``${VAR}`` expansion, so ``bearerTokenEnvVar`` / ``envHeaders`` are resolved
    from ``env`` here (they travel over the agent's stdin, never on a command line)."""
    rendered: list[dict[str, Any]] = []
    for name, server in (servers or {}).items():
        if server.enabled is False:
            continue
        if isinstance(server, McpLocalServer):
            rendered.append(
                {
                    "name": name,
                    "command": server.command,
                    "args": list(server.args),
                    "env": [{"name": k, "value": v} for k, v in server.env.items()],
                }
            )
        elif http:
            headers = server.literal_headers(env.get)
            rendered.append(
                {
                    "type": server.transport or "http",
                    "name": name,
                    "url": server.url,
                    "headers": [{"name": k, "value": v} for k, v in headers.items()],
                }
            )
    return rendered


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ended_draft(result: dict[str, Any]) -> EventDraft:
    reason = result.get("stopReason")
    if reason == "cancelled":  # the agent cancelled by itself: the turn still has to end
        return EventDraft(type="turn.ended", data=TurnEndedData(reason="cancelled"), raw=result)
    metadata = None if reason == "end_turn" else {"stopReason": reason}
    return EventDraft(
        type="turn.ended", data=TurnEndedData(reason="completed", metadata=metadata), raw=result
    )


def _error_drafts(error: BaseException) -> list[EventDraft]:
    if isinstance(error, RequestError):
        data = ErrorData(message=str(error), code=f"acp_{error.code}", details=error.data)
    else:
        data = ErrorData(message=f"the agent connection failed: {error}", code="acp_connection")
    return [EventDraft(type="error", data=data), turn_ended_draft("error")]


def _select_option(answer: dict[str, Any], category: str) -> dict[str, Any] | None:
    """The ``select`` config option of ``category`` (``mode``, ``model``) in a session answer."""
    for option in answer.get("configOptions") or []:
        if not isinstance(option, dict) or option.get("type") != "select":
            continue
        if option.get("category") == category or option.get("id") == category:
            return option
    return None


def _choices(option: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(value, name, description) of each choice of a select option (groups flattened)."""
    choices: list[tuple[str, str | None, str | None]] = []
    for entry in option.get("options") or []:
        group = entry.get("options") if isinstance(entry, dict) else None
        for value in group if isinstance(group, list) else [entry]:
            if isinstance(value, dict) and isinstance(value.get("value"), str):
                name, description = value.get("name"), value.get("description")
                choices.append(
                    (
                        value["value"],
                        name if isinstance(name, str) else None,
                        description if isinstance(description, str) else None,
                    )
                )
    return choices


def _modes_of(answer: dict[str, Any]) -> tuple[list[AgentMode], str | None, str | None]:
    """The modes offered (``modes``, else the config option of category ``mode``), the current
    one, and that config option's id (None: set with ``session/set_mode``)."""
    state = _dict(answer.get("modes"))
    if state:
        modes: list[AgentMode] = []
        for mode in state.get("availableModes") or []:
            if isinstance(mode, dict) and isinstance(mode.get("id"), str):
                name, description = mode.get("name"), mode.get("description")
                modes.append(
                    AgentMode(
                        id=mode["id"],
                        name=name if isinstance(name, str) else mode["id"],
                        description=description if isinstance(description, str) else "",
                    )
                )
        current = state.get("currentModeId")
        return modes, current if isinstance(current, str) else None, None
    option = _select_option(answer, "mode")
    if option is None:
        return [], None, None
    modes = [
        AgentMode(id=value, name=name or value, description=description or "")
        for value, name, description in _choices(option)
    ]
    current = option.get("currentValue")
    return modes, current if isinstance(current, str) else None, str(option.get("id"))


def _models_of(answer: dict[str, Any]) -> tuple[AgentModels | None, str | None]:
    """The models offered (config option of category ``model``, else the unstable ``models``)
    and the id of that config option (None: set with ``session/set_model``)."""
    option = _select_option(answer, "model")
    if option is not None:
        models = [AgentModel(id=value, name=name) for value, name, _ in _choices(option)]
        current = option.get("currentValue")
        default = current if isinstance(current, str) else None
        return AgentModels(models=models, default_model=default), str(option.get("id"))
    state = _dict(answer.get("models"))
    if state:
        models = [
            AgentModel(id=m["modelId"], name=m.get("name"))
            for m in state.get("availableModels") or []
            if isinstance(m, dict) and isinstance(m.get("modelId"), str)
        ]
        current = state.get("currentModelId")
        return AgentModels(
            models=models, default_model=current if isinstance(current, str) else None
        ), None
    return None, None
