"""The Codex adapter (agent id ``codex``): one shared ``codex app-server`` for every session.

Each session is a Codex *thread* of the app-server that ``SharedServers`` keeps under the key
``"codex"`` (``codex_server.CodexAppServer``): ``start()`` sends ``thread/start {cwd: the
session's directory, approvalPolicy, sandbox, model?}`` (or ``thread/resume {threadId}`` when
the session existed before, e.g. after a server restart; ``thread/fork {threadId}`` for a fork
at its source's end, a copy of the source's thread) and the thread id becomes the native
session id. ``send()`` is ``turn/start {threadId, input}`` ("Make a plan before acting." first in
agent mode ``plan``; image attachments as ``localImage``, other files named in the text; the
session's variant as the reasoning ``effort``). The session's ``mcp`` servers go into the
thread's config (``config.mcp_servers``, see ``mcp_servers``). The app-server's notifications
for the thread become drafts through ``codex_mapping.CodexMapper`` (its docstring lists what is
mapped and what is deliberately ignored), in order, from one worker task per session.

Permission modes (Codex's approval policy and sandbox):

======================  ================  ======================  =============================
permissionMode          approvalPolicy    sandbox                 what asks
======================  ================  ======================  =============================
``default``             ``on-request``    ``workspace-write``     commands that need to leave the
                                                                  sandbox (the model asks)
``acceptEdits``         ``on-request``    ``workspace-write``     as default; file changes are
                                                                  approved at once (requested,
                                                                  then ``accept_for_session``)
``plan``                ``untrusted``     ``read-only``           every command not known safe
``bypass``              ``never``         ``danger-full-access``  nothing
======================  ================  ======================  =============================

Server requests (the app-server waits on each; every one gets an answer):

- ``item/commandExecution/requestApproval`` / legacy ``execCommandApproval`` -> permission
  ``commandExecution``; ``item/fileChange/requestApproval`` / legacy ``applyPatchApproval`` ->
  permission ``fileChange``. Replies: once/always/reject -> ``accept`` / ``acceptForSession`` /
  ``decline`` (legacy: ``approved`` / ``approved_for_session`` / ``denied``).
- ``item/tool/requestUserInput`` -> a question (prompt and options of its first question, all of
  them in ``metadata.questions``); answers go back by question id, a rejection as no answers.
- anything else (``item/permissions/requestApproval``, ``mcpServer/elicitation/request``,
  ``item/tool/call``, ...) is refused at once with a JSON-RPC error and recorded as a status
  item ``codex.request.refused`` (the method and params as detail); upstream left them
  unanswered (bug 8).

``cancel()`` sends ``turn/interrupt`` and waits for the turn's ``turn/completed``, whose
``turn.ended`` it swallows (the session layer records ``turn.ended {cancelled}``); items the turn
left open are completed as ``failed``. If the app-server dies, every Codex session records an
``error`` (code ``server_exit``) and ``session.ended {error, agent}``; the next message reopens
the session, which starts a new app-server and resumes the thread in it.

The app-server runs in the server's working directory with the server's environment (so
``CODEX_HOME`` and its ``config.toml`` come from there); its stderr goes to
``<log dir>/codex/app-server.log``. Codex's sandbox needs ``bubblewrap`` and a ``CODEX_HOME``
outside the temporary directory (under ``$TMPDIR`` Codex refuses to set up its sandbox helper and
every sandboxed command fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandbox_agent.agents.base import (
    AgentMode,
    AgentModel,
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import CAPABILITIES, MODES
from sandbox_agent.agents.codex_mapping import CodexMapper, status_item, unparsed
from sandbox_agent.agents.codex_server import (
    CodexAppServer,
    CodexRpcError,
)
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.errors import AgentError, AgentNotStarted, TurnInProgress, UnknownRequest
from sandbox_agent.agents.mcp import McpLocalServer, McpServer
from sandbox_agent.agents.native import NativeAgent
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    QuestionData,
    SessionEndedData,
    StderrOutput,
)

logger = logging.getLogger(__name__)

SHARED_KEY = "codex"
PLAN_PREFIX = "Make a plan before acting.\n\n"
#: Seconds ``cancel()`` waits for the interrupted turn to end.
CANCEL_TIMEOUT = 15.0
#: Seconds the best-effort requests of ``stop()`` may take.
STOP_TIMEOUT = 5.0

#: permissionMode -> (approvalPolicy, sandbox).
POLICIES: dict[str, tuple[str, str]] = {
    "default": ("on-request", "workspace-write"),
    "acceptEdits": ("on-request", "workspace-write"),
    "plan": ("untrusted", "read-only"),
    "bypass": ("never", "danger-full-access"),
}

CODEX_CAPABILITIES = CAPABILITIES["codex"]

_COMMAND_REQUESTS = ("item/commandExecution/requestApproval", "execCommandApproval")
_FILE_REQUESTS = ("item/fileChange/requestApproval", "applyPatchApproval")
_LEGACY = ("execCommandApproval", "applyPatchApproval")
_DECISIONS: dict[str, str] = {"once": "accept", "always": "acceptForSession", "reject": "decline"}
_LEGACY_DECISIONS: dict[str, str] = {
    "once": "approved",
    "always": "approved_for_session",
    "reject": "denied",
}


@dataclass
class _Turn:
    turn_id: str | None = None
    cancelling: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class _Request:
    """A server request waiting on a HITL answer."""

    server: CodexAppServer
    rpc_id: Any
    method: str
    question_ids: tuple[str, ...] = ()


class CodexAgent(NativeAgent):
    """One session's thread on the shared Codex app-server."""

    id = "codex"
    capabilities = CODEX_CAPABILITIES
    MODES: ClassVar[list[AgentMode]] = MODES["codex"]

    def __init__(self, sink: EventSink, settings: AgentSettings) -> None:
        super().__init__(sink, settings)
        self._server: CodexAppServer | None = None
        self._thread: str | None = None
        self._mapper = CodexMapper()
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._turn: _Turn | None = None
        self._requests: dict[str, _Request] = {}
        self._stopped = False
        #: The app-server this session was on died; the next ``send`` attaches to a new one.
        self._detached = False

    # -- the shared server ----------------------------------------------------------------
    async def _start_server(self) -> CodexAppServer:
        cwd = os.getcwd()
        return await CodexAppServer.start(
            self.command(),
            cwd=cwd,
            env=agent_environment(self.id, cwd, self.settings.extra_env),
            log_path=self.settings.logs() / "codex" / "app-server.log",
        )

    async def _shared(self) -> CodexAppServer:
        return await self.settings.shared.get(SHARED_KEY, self._start_server)

    # -- models ---------------------------------------------------------------------------
    async def models(self) -> AgentModels:
        """``model/list`` of the app-server, the default being ``config.toml``'s model."""
        try:
            server = await self._shared()
        except Exception as exc:
            logger.warning("codex: no app-server for the model list: %s", exc)
            return AgentModels()
        cached = server.models_cache
        if isinstance(cached, AgentModels):
            return cached
        try:
            models = await _list_models(server)
        except (AgentError, TimeoutError, KeyError, TypeError) as exc:
            logger.warning("codex: model/list failed: %s", exc)
            return AgentModels()
        server.models_cache = models
        return models

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        self._prepare(session)
        assert self._worker is not None
        try:
            await self._attach(resume)
        except BaseException:
            self._worker.cancel()
            raise

    async def start_fork(self, session: AgentSessionConfig, source: str) -> bool:
        """``thread/fork {threadId: source}``: codex copies the source thread's history into a
        new thread, which becomes this session's; the source's stays as it was. A thread codex
        cannot fork (no turn yet: nothing saved to fork) gives a new thread (False)."""
        self._prepare(session)
        assert self._worker is not None
        try:
            return await self._attach(None, fork=source)
        except BaseException:
            self._worker.cancel()
            raise

    def _prepare(self, session: AgentSessionConfig) -> None:
        if self._session is not None or self._stopped:
            raise AgentError("the codex adapter was already started")
        self._begin(session)
        if session.permission_mode == "acceptEdits":
            self._always.remember(
                PermissionData(
                    permission_id="acceptEdits",
                    action="fileChange",
                    status="requested",
                    metadata={"codexRequestKind": "fileChange"},
                )
            )
        self._worker = asyncio.create_task(self._work(), name=f"codex {session.session_id}")

    def _thread_params(self) -> dict[str, Any]:
        policy, sandbox = POLICIES.get(self.session.permission_mode, POLICIES["default"])
        params: dict[str, Any] = {
            "cwd": self.directory,
            "approvalPolicy": policy,
            "sandbox": sandbox,
        }
        if self.session.model:
            params["model"] = self.session.model
        servers = mcp_servers(self.session.mcp)
        if servers:
            params["config"] = {"mcp_servers": servers}
        return params

    async def _attach(self, resume: str | None, fork: str | None = None) -> bool:
        """Start (or resume, or fork) the session's thread on the shared app-server; True
        when ``fork`` was forked."""
        server = await self._shared()
        params = self._thread_params()
        thread_id: str | None = None
        forked = False
        if fork:
            try:
                result = await server.request(
                    "thread/fork", {**params, "threadId": fork, "excludeTurns": True}
                )
                thread_id, forked = _thread_id(result), True
            except CodexRpcError as exc:
                logger.warning("codex: cannot fork thread %s (%s); new thread", fork, exc)
        if resume:
            try:
                await server.request(
                    "thread/resume", {**params, "threadId": resume, "excludeTurns": True}
                )
                thread_id = resume
            except CodexRpcError as exc:
                logger.warning("codex: cannot resume thread %s (%s); new thread", resume, exc)
        if thread_id is None:
            result = await server.request("thread/start", params)
            thread_id = _thread_id(result)
        server.register(thread_id, self)
        self._server, self._thread, self._detached = server, thread_id, False
        self.native_session_id = thread_id
        return forked

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        server, thread, turn = self._server, self._thread, self._turn
        if server is not None and thread is not None and server.alive:
            if turn is not None and turn.turn_id is not None:
                with contextlib.suppress(AgentError, TimeoutError):
                    await server.request(
                        "turn/interrupt",
                        {"threadId": thread, "turnId": turn.turn_id},
                        timeout=STOP_TIMEOUT,
                    )
            for request in list(self._requests.values()):
                with contextlib.suppress(AgentError):
                    await request.server.respond_error(request.rpc_id, "the session stopped")
            server.unregister(thread, self)
            with contextlib.suppress(AgentError, TimeoutError):
                await server.request(
                    "thread/unsubscribe", {"threadId": thread}, timeout=STOP_TIMEOUT
                )
        self._requests.clear()
        if turn is not None:
            turn.done.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker

    # -- turns ----------------------------------------------------------------------------
    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        if self._session is None or self._stopped:
            raise AgentNotStarted("codex: start() first")
        if self._turn is not None:
            raise TurnInProgress("a codex turn is still running")
        if self._detached or self._server is None or not self._server.alive:
            await self._attach(self._thread)
        server, thread = self._server, self._thread
        assert server is not None and thread is not None
        text = PLAN_PREFIX + prompt if self.session.agent_mode == "plan" else prompt
        params: dict[str, Any] = {"threadId": thread, "input": _input(text, attachments)}
        if self.session.variant:
            params["effort"] = self.session.variant
        turn = self._turn = _Turn()
        try:
            result = await server.request("turn/start", params)
        except BaseException:
            if self._turn is turn:
                self._turn = None
            raise
        turn_info = result.get("turn") if isinstance(result, dict) else None
        if isinstance(turn_info, dict) and isinstance(turn_info.get("id"), str):
            turn.turn_id = turn_info["id"]

    async def cancel(self) -> None:
        turn, server, thread = self._turn, self._server, self._thread
        if turn is None:
            return
        turn.cancelling = True
        if server is not None and thread is not None and turn.turn_id is not None:
            try:
                await server.request("turn/interrupt", {"threadId": thread, "turnId": turn.turn_id})
            except (AgentError, TimeoutError) as exc:
                # The turn may have ended meanwhile; waiting below settles it either way.
                logger.info("codex: turn/interrupt: %s", exc)
        try:
            await asyncio.wait_for(turn.done.wait(), CANCEL_TIMEOUT)
        except TimeoutError:
            logger.warning("codex: turn %s did not end after interrupt", turn.turn_id)
            if self._turn is turn:
                self._turn = None
                await self.emit(*self._mapper.close_open())

    # -- HITL -----------------------------------------------------------------------------
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        pending = self._live_request(request.permission_id, "permission")
        decisions = _LEGACY_DECISIONS if pending.method in _LEGACY else _DECISIONS
        await pending.server.respond(pending.rpc_id, {"decision": decisions[reply]})
        self._requests.pop(request.permission_id, None)

    async def forward_question(
        self, request: QuestionData, answers: list[list[str]] | None
    ) -> None:
        pending = self._live_request(request.question_id, "question")
        given = answers or []
        result = {
            "answers": {
                qid: {"answers": list(given[i])}
                for i, qid in enumerate(pending.question_ids)
                if i < len(given)
            }
        }
        await pending.server.respond(pending.rpc_id, result)
        self._requests.pop(request.question_id, None)

    def _live_request(self, request_id: str, kind: str) -> _Request:
        pending = self._requests.get(request_id)
        if pending is None:
            raise UnknownRequest("permission" if kind == "permission" else "question", request_id)
        if not pending.server.alive:
            raise AgentError("the codex app-server that asked is gone")
        return pending

    # -- what the app-server sends --------------------------------------------------------
    def deliver(self, message: dict[str, Any]) -> None:
        self._inbox.put_nowait(("message", message))

    def server_exited(self, server: CodexAppServer) -> None:
        self._inbox.put_nowait(("exit", server))

    async def drained(self) -> None:
        """Wait until everything delivered so far is handled (tests)."""
        await self._inbox.join()

    async def _work(self) -> None:
        while True:
            kind, payload = await self._inbox.get()
            try:
                if kind == "exit":
                    await self._on_exit(payload)
                elif "id" in payload:
                    await self._on_request(payload)
                else:
                    await self._on_notification(payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("codex: handling %s failed", kind)
            finally:
                self._inbox.task_done()

    async def _on_notification(self, message: dict[str, Any]) -> None:
        drafts = self._mapper.notification(message)
        if message.get("method") != "turn/completed":
            await self.emit(*drafts)
            return
        params = message.get("params") or {}
        turn_info = params.get("turn") if isinstance(params, dict) else None
        ended_id = turn_info.get("id") if isinstance(turn_info, dict) else None
        turn = self._turn
        ours = turn is not None and turn.turn_id in (None, ended_id)
        if not ours or (turn is not None and turn.cancelling):
            # Cancelled (the session layer records turn.ended), or a turn we no longer track.
            drafts = [d for d in drafts if d.type != "turn.ended"]
        await self.emit(*drafts)
        if ours and turn is not None:
            if self._turn is turn:
                self._turn = None
            turn.done.set()

    async def _on_request(self, message: dict[str, Any]) -> None:
        method = str(message.get("method"))
        rpc_id = message["id"]
        params = message.get("params")
        server = self._server
        if server is None:
            return
        if not isinstance(params, dict):
            await server.respond_error(rpc_id, f"{method}: params must be an object")
            await self.emit(unparsed(f"{method}: params are not an object", message))
            return
        if method in _COMMAND_REQUESTS or method in _FILE_REQUESTS:
            await self._ask_approval(server, message, method, params)
        elif method == "item/tool/requestUserInput":
            await self._ask_user_input(server, message, params)
        else:
            await server.respond_error(rpc_id, f"sandbox-agent does not support {method}")
            # A status item, not an error event: the turn goes on (codex takes the refusal as
            # a "no"), and an error would end a client's messages/stream.
            detail = {"method": method, "params": params}
            await self.emit(*status_item("codex.request.refused", detail, message))

    async def _ask_approval(
        self, server: CodexAppServer, message: dict[str, Any], method: str, params: dict[str, Any]
    ) -> None:
        action = "commandExecution" if method in _COMMAND_REQUESTS else "fileChange"
        metadata: dict[str, Any] = {
            "codexRequestKind": action,
            "codexRequestId": message["id"],
            "codexMethod": method,
            "threadId": params.get("threadId") or params.get("conversationId"),
            "turnId": params.get("turnId"),
            "itemId": params.get("itemId") or params.get("callId"),
        }
        for key in ("command", "cwd", "reason", "grantRoot", "fileChanges"):
            if params.get(key) is not None:
                metadata[key] = params[key]
        permission_id = f"codex_perm_{uuid.uuid4().hex[:12]}"
        self._requests[permission_id] = _Request(server, message["id"], method)
        request = PermissionData(
            permission_id=permission_id, action=action, status="requested", metadata=metadata
        )
        await self.ask_permission(request)

    async def _ask_user_input(
        self, server: CodexAppServer, message: dict[str, Any], params: dict[str, Any]
    ) -> None:
        questions = [q for q in params.get("questions") or [] if isinstance(q, dict)]
        question_id = f"codex_question_{uuid.uuid4().hex[:12]}"
        first = questions[0] if questions else {}
        options = [str(o.get("label")) for o in first.get("options") or [] if isinstance(o, dict)]
        self._requests[question_id] = _Request(
            server,
            message["id"],
            "item/tool/requestUserInput",
            question_ids=tuple(str(q.get("id")) for q in questions),
        )
        request = QuestionData.model_validate(
            {
                "question_id": question_id,
                "prompt": str(first.get("question") or first.get("header") or ""),
                "options": options,
                "status": "requested",
                "metadata": {"questions": questions, "itemId": params.get("itemId")},
            }
        )
        await self.ask_question(request)

    async def _on_exit(self, server: CodexAppServer) -> None:
        if server is not self._server or self._stopped:
            return
        self._detached = True
        turn, self._turn = self._turn, None
        code = server.process.returncode
        message = f"the codex app-server exited (status {code})"
        lines = server.process.stderr_tail().strip().splitlines()
        # The last lines of the app-server's log (v0.1 kept 50 of them in ``tail``).
        stderr = StderrOutput(
            tail="\n".join(lines[-50:]) or None, truncated=len(lines) > 50, total_lines=None
        )
        self._requests.clear()
        self.forget_requests()
        drafts = self._mapper.close_open()
        drafts.append(
            EventDraft(
                type="error",
                data=ErrorData(message=message, code="server_exit", details={"exitCode": code}),
                source="daemon",
                synthetic=True,
            )
        )
        ended = SessionEndedData(
            reason="error", terminated_by="agent", message=message, exit_code=code, stderr=stderr
        )
        drafts.append(EventDraft(type="session.ended", data=ended, source="daemon", synthetic=True))
        await self.emit(*drafts)
        if turn is not None:
            turn.done.set()


def mcp_servers(servers: Mapping[str, McpServer] | None) -> dict[str, Any]:
    """The session's MCP servers as codex's ``mcp_servers`` table (disabled ones with
    ``enabled = false``).

    Given to ``thread/start`` / ``thread/resume`` as a config override of the thread (nothing is
    written to ``config.toml``). Secrets stay in the environment: codex reads
    ``bearer_token_env_var`` and ``env_http_headers`` itself.
    """
    rendered: dict[str, Any] = {}
    for name, server in (servers or {}).items():
        entry: dict[str, Any]
        if isinstance(server, McpLocalServer):
            entry = {"command": server.command, "args": list(server.args)}
            if server.env:
                entry["env"] = dict(server.env)
            if server.cwd is not None:
                entry["cwd"] = server.cwd
        else:
            entry = {"url": server.url}
            if server.headers:
                entry["http_headers"] = dict(server.headers)
            if server.env_headers:
                entry["env_http_headers"] = dict(server.env_headers)
            if server.bearer_token_env_var:
                entry["bearer_token_env_var"] = server.bearer_token_env_var
        if server.enabled is not None:
            entry["enabled"] = server.enabled
        if server.timeout_ms is not None:
            entry["tool_timeout_sec"] = math.ceil(server.timeout_ms / 1000)
        rendered[name] = entry
    return rendered


def _thread_id(result: Any) -> str:
    if isinstance(result, dict):
        thread = result.get("thread")
        if isinstance(thread, dict) and isinstance(thread.get("id"), str):
            return str(thread["id"])
        if isinstance(result.get("threadId"), str):
            return str(result["threadId"])
    raise AgentError(f"codex thread/start: no thread id in {result!r:.200}")


def _input(text: str, attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    files: list[str] = []
    for attachment in attachments:
        if attachment.mime is not None and attachment.mime.startswith("image/"):
            items.append({"type": "localImage", "path": attachment.path})
        else:
            files.append(attachment.path)
    if files:
        text += "\n\nAttached files:\n" + "\n".join(f"- {path}" for path in files)
    return [{"type": "text", "text": text, "text_elements": []}, *items]


async def _list_models(server: CodexAppServer) -> AgentModels:
    models: dict[str, AgentModel] = {}
    flagged_default: str | None = None
    cursor: str | None = None
    for _ in range(50):  # pages; a bound against a server that keeps returning a cursor
        page = await server.request("model/list", {"cursor": cursor}, timeout=10)
        for entry in page.get("data") or []:
            model_id = str(entry.get("id") or entry.get("model"))
            if entry.get("hidden") or model_id in models:
                continue
            efforts = [
                str(e.get("reasoningEffort"))
                for e in entry.get("supportedReasoningEfforts") or []
                if isinstance(e, dict) and e.get("reasoningEffort")
            ]
            default_effort = entry.get("defaultReasoningEffort")
            models[model_id] = AgentModel(
                id=model_id,
                name=entry.get("displayName") or model_id,
                variants=efforts or None,
                default_variant=str(default_effort) if default_effort else None,
            )
            if entry.get("isDefault") and flagged_default is None:
                flagged_default = model_id
        cursor = page.get("nextCursor")
        if not cursor:
            break
    configured: str | None = None
    with contextlib.suppress(AgentError, TimeoutError):
        config = await server.request("config/read", {}, timeout=10)
        value = (config.get("config") or {}).get("model") if isinstance(config, dict) else None
        configured = value if isinstance(value, str) and value else None
    if configured is not None and configured not in models:
        models[configured] = AgentModel(id=configured, name=configured)
    ordered = sorted(models.values(), key=lambda m: m.id)
    default = configured or flagged_default or (ordered[0].id if ordered else None)
    return AgentModels(models=ordered, default_model=default)
