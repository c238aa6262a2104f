"""The Claude Code adapter (agent id ``claude``): one long-lived ``claude`` process per session.

The process runs ``claude -p --input-format stream-json --output-format stream-json --verbose
--include-partial-messages --permission-prompt-tool stdio`` in the session's directory. We write
the ``initialize`` control request first, then one ``user`` line per prompt; several turns run in
the same process. What claude prints is mapped by ``claude_mapping.ClaudeMapper`` (the mapping and
the list of deliberately ignored messages are in its docstring).

Native session id: claude prints ``system:init`` (with its session id) only after the first
prompt, so ``start()`` chooses the id itself (``--session-id <uuid4>``) and knows it at once.
Resuming (``start(resume=id)``, after a server restart, or ``send()`` after the process died)
starts a new process with ``--resume <id>``, which keeps the id and the history. A session that
never got a prompt has no transcript to resume (claude exits: "No conversation found"): it then
starts afresh under a new id, so the session layer does not report a native resume. A forked
session (``start_fork``) starts with ``--resume <source> --fork-session --session-id <new>``:
claude copies the source's transcript under the new id and leaves the source's alone.

Modes: permission mode ``plan`` (or agent mode ``plan``) -> ``--permission-mode plan``;
``acceptEdits`` -> ``--permission-mode acceptEdits``; ``bypass`` ->
``--dangerously-skip-permissions``, which claude 2.1.332 refuses when run as root unless
``IS_SANDBOX=1`` is in the environment (the process exits at start, and ``start()`` fails with its
stderr); ``default`` -> nothing, and claude asks through ``can_use_tool``. Model ``default`` (or
none) passes no ``--model``.

MCP: the session's ``mcp`` servers go to ``--mcp-config`` (``mcp_servers``). Claude 2.1.332 offers
MCP tools and ExitPlanMode to the model only through its ToolSearch tool;
``ENABLE_TOOL_SEARCH=false`` in the server's environment offers them directly (the tests set it,
since the fake LLM cannot search).

HITL: ``can_use_tool`` -> ``permission.requested``, answered with a ``control_response`` allow
(``updatedInput`` = the original input) or deny; ``always`` is remembered by ``NativeAgent`` and
answered here, never written to claude's settings. AskUserQuestion and ExitPlanMode arrive the
same way and become questions (``claude_mapping.question_answer`` builds the answer). A request
claude withdraws (``control_cancel_request``, e.g. on interrupt) is resolved by the daemon as
rejected (``metadata.reason = "withdrawn"``). Any other control request gets an error reply.

Cancel: control request ``interrupt``; ``cancel()`` then waits for the turn's ``result`` (what
claude prints until then, such as the partial message, is still emitted) and swallows that result:
the session layer writes ``turn.ended {cancelled}``. If no result comes in time the process is
stopped, and the next ``send()`` resumes the session in a new one.

Attachments are named in the prompt as text (claude reads files itself); nothing is inlined.

If the process exits when we did not stop it: ``error`` (code ``process_exit``) and
``session.ended {error, agent}`` with the exit code and the stderr tail (from the log file;
stderr is never parsed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sandbox_agent.agents.base import (
    AgentMode,
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import CAPABILITIES, MODES, models_of
from sandbox_agent.agents.claude_mapping import (
    ClaudeMapper,
    Mapped,
    ToolRequest,
    parse_line,
    question_answer,
    success_response,
)
from sandbox_agent.agents.errors import AgentError, AgentNotStarted, TurnInProgress
from sandbox_agent.agents.mcp import McpLocalServer, McpServer
from sandbox_agent.agents.native import NativeAgent
from sandbox_agent.agents.process import AgentProcess
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

#: Seconds claude may take to answer ``initialize`` (a cold start takes about 1 s).
START_TIMEOUT = 60.0
#: Seconds ``cancel()`` waits for the interrupted turn's ``result``.
CANCEL_TIMEOUT = 15.0
#: Bytes of stderr kept in ``session.ended``.
STDERR_TAIL_BYTES = 4000

CLAUDE_CAPABILITIES = CAPABILITIES["claude"]

DENIED = "The user denied permission to use this tool."


class _NotResumable(AgentError):
    """``claude --resume`` exited before answering ``initialize`` (no such conversation)."""


class ClaudeAgent(NativeAgent):
    """Claude Code, one stream-json process per session (see the module docstring)."""

    id = "claude"
    capabilities = CLAUDE_CAPABILITIES
    MODES: ClassVar[list[AgentMode]] = MODES["claude"]

    def __init__(self, sink: EventSink, settings: AgentSettings) -> None:
        super().__init__(sink, settings)
        self._proc: AgentProcess | None = None
        self._reader: asyncio.Task[None] | None = None
        self._mapper = ClaudeMapper()
        self._ids = itertools.count(1)
        #: Our control requests waiting for claude's control_response.
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: Answer context of each pending permission / question, by its id.
        self._requests: dict[str, ToolRequest] = {}
        self._turn_active = False
        self._turn_done: asyncio.Future[None] | None = None
        self._cancelling = False
        self._stopped = False
        #: The current process answered ``initialize`` (before that, start() emits nothing).
        self._ready = False

    # -- discovery -------------------------------------------------------------------------
    async def models(self) -> AgentModels:
        # The aliases of v0.1: no network lookup.
        return models_of("claude")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        if self._session is not None or self._stopped:
            raise AgentError("the claude adapter was already started")
        self._begin(session)
        await self._launch(resume)

    async def start_fork(self, session: AgentSessionConfig, source: str) -> bool:
        """``claude --resume <source> --fork-session --session-id <new>``: a copy of the
        source's transcript under a new id, chosen here; the source's stays as it was. A
        source claude cannot resume (no prompt yet, a wiped HOME) starts afresh (False)."""
        if self._session is not None or self._stopped:
            raise AgentError("the claude adapter was already started")
        self._begin(session)
        session_id = str(uuid.uuid4())
        try:
            await self._spawn(["--resume", source, "--fork-session", "--session-id", session_id])
        except _NotResumable:
            logger.info("claude session %s cannot be forked; starting afresh", source)
            await self._launch(None)
            return False
        self.native_session_id = session_id
        return True

    async def _launch(self, resume: str | None) -> None:
        """Start a process (resuming ``resume`` if it can), answer-ready when this returns."""
        if resume is not None:
            try:
                await self._spawn(["--resume", resume])
                self.native_session_id = resume
                return
            except _NotResumable:
                logger.info("claude session %s cannot be resumed; starting afresh", resume)
        session_id = str(uuid.uuid4())
        await self._spawn(["--session-id", session_id])
        self.native_session_id = session_id

    def argv(self, session_args: Sequence[str]) -> list[str]:
        """The full command line (``session_args``: ``--session-id`` or ``--resume``)."""
        session = self.session
        argv = [
            *self.command(),
            "-p",
            "--input-format", "stream-json",
            "--output-format", "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--permission-prompt-tool", "stdio",
            *session_args,
        ]  # fmt: skip
        if session.model and session.model != "default":
            argv += ["--model", session.model]
        servers = mcp_servers(session.mcp)
        if servers:
            argv += ["--mcp-config", json.dumps({"mcpServers": servers})]
        if session.permission_mode == "plan" or session.agent_mode == "plan":
            argv += ["--permission-mode", "plan"]
        elif session.permission_mode == "acceptEdits":
            argv += ["--permission-mode", "acceptEdits"]
        elif session.permission_mode == "bypass":
            argv += ["--dangerously-skip-permissions"]
        return argv

    async def _spawn(self, session_args: list[str]) -> None:
        argv = self.argv(session_args)
        try:
            proc = await AgentProcess.spawn(
                argv, cwd=self.directory, env=self.environment(), log_path=self.log_path()
            )
        except OSError as exc:
            raise AgentError(f"claude could not be started: {exc}") from exc
        self._proc = proc
        self._ready = False
        self._mapper = ClaudeMapper()
        ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        request_id = f"init_{next(self._ids)}"
        self._waiting[request_id] = ready
        self._reader = asyncio.create_task(self._read(proc), name="claude reader")
        try:
            await proc.write_json(
                {
                    "type": "control_request",
                    "request_id": request_id,
                    "request": {"subtype": "initialize", "hooks": None},
                }
            )
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT)
            self._ready = True
        except (TimeoutError, ConnectionError, _NotResumable, AgentError) as exc:
            self._waiting.pop(request_id, None)
            await self._discard(proc)
            if isinstance(exc, _NotResumable) and "--resume" in session_args:
                raise
            tail = proc.stderr_tail(STDERR_TAIL_BYTES).strip()
            reason = (
                "did not answer initialize in time"
                if isinstance(exc, TimeoutError)
                else (f"exited with {proc.returncode}")
            )
            raise AgentError(f"claude {reason}" + (f": {tail}" if tail else "")) from exc

    async def _discard(self, proc: AgentProcess) -> None:
        """Stop ``proc`` quietly (its end is ours, not the agent's)."""
        if self._proc is proc:
            self._proc = None
        await proc.stop()
        reader = self._reader
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def stop(self) -> None:
        self._stopped = True
        proc, self._proc = self._proc, None
        if proc is not None:
            await self._discard(proc)
        self._finish_turn()
        self._fail_waiting(AgentNotStarted("claude was stopped"))
        self.forget_requests()
        self._requests.clear()

    # -- turns -----------------------------------------------------------------------------
    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        if self._session is None or self._stopped:
            raise AgentNotStarted("the claude adapter is not running")
        if self._turn_active:
            raise TurnInProgress("a claude turn is still running")
        if self._proc is None or self._proc.returncode is not None:
            # The process died (or a cancel gave up on it): continue the session in a new one.
            await self._launch(self.native_session_id)
        proc = self._proc
        assert proc is not None
        self._turn_active = True
        self._turn_done = asyncio.get_running_loop().create_future()
        try:
            await proc.write_json(_user_line(prompt, attachments))
        except ConnectionError as exc:
            self._finish_turn()
            raise AgentError(f"claude did not take the prompt: {exc}") from exc

    async def cancel(self) -> None:
        proc, done = self._proc, self._turn_done
        if not self._turn_active or proc is None or done is None:
            return
        self._cancelling = True
        request_id = f"interrupt_{next(self._ids)}"
        try:
            await proc.write_json(
                {
                    "type": "control_request",
                    "request_id": request_id,
                    "request": {"subtype": "interrupt"},
                }
            )
            await asyncio.wait_for(asyncio.shield(done), CANCEL_TIMEOUT)
        except (TimeoutError, ConnectionError):
            # No result in time: nothing more may come for this turn, so the process goes.
            logger.warning("claude did not end the interrupted turn; stopping the process")
            await self._discard(proc)
            self._fail_waiting(AgentError("claude was stopped after a cancel"))
            # Nobody is left to take answers to what that process asked.
            for context in list(self._requests.values()):
                await self._withdraw(context.request_id)
        finally:
            self._cancelling = False
            self._finish_turn()

    def _finish_turn(self) -> None:
        self._turn_active = False
        done, self._turn_done = self._turn_done, None
        if done is not None and not done.done():
            done.set_result(None)

    # -- HITL ------------------------------------------------------------------------------
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        context = self._requests.get(request.permission_id)
        if context is None:
            raise AgentError(f"claude is no longer waiting on {request.permission_id}")
        if reply == "reject":
            response: dict[str, Any] = {"behavior": "deny", "message": DENIED}
        else:
            response = {"behavior": "allow", "updatedInput": context.input}
        await self._answer(context, response)

    async def forward_question(
        self, request: QuestionData, answers: list[list[str]] | None
    ) -> None:
        context = self._requests.get(request.question_id)
        if context is None:
            raise AgentError(f"claude is no longer waiting on {request.question_id}")
        await self._answer(context, question_answer(context, answers))

    async def _answer(self, context: ToolRequest, response: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            raise AgentError("the claude process is not running")
        try:
            await proc.write_json(success_response(context.request_id, response))
        except ConnectionError as exc:
            raise AgentError(f"claude did not take the answer: {exc}") from exc
        key = context.permission.permission_id if context.permission else None
        if context.question is not None:
            key = context.question.question_id
        if key is not None:
            self._requests.pop(key, None)

    # -- the reader ------------------------------------------------------------------------
    async def _read(self, proc: AgentProcess) -> None:
        async for raw in proc.lines():
            line, bad = parse_line(raw)
            try:
                if not self._ready:
                    await self._before_ready(line)
                elif bad is not None:
                    await self._emit_turn(bad)
                elif line is not None:
                    await self._handle(self._mapper.map(line))
            except Exception:
                # The sink failed (the store): the line is lost, the session goes on.
                logger.exception("claude: a stdout line could not be handled")
        code = await proc.wait()
        await self._exited(proc, code)

    async def _before_ready(self, line: dict[str, Any] | None) -> None:
        """Until ``initialize`` is answered only control messages count (start emits nothing);
        what else comes (the error result of a failed ``--resume``) goes to the log."""
        mapped = self._mapper.map(line) if line is not None else Mapped()
        if mapped.reply is not None and self._proc is not None:
            with contextlib.suppress(ConnectionError):
                await self._proc.write_json(mapped.reply)
        if mapped.response is not None:
            self._answered(*mapped.response)
        else:
            logger.info("claude before initialize: %.500s", line)

    async def _handle(self, mapped: Mapped) -> None:
        proc = self._proc
        if mapped.session_id and mapped.session_id != self.native_session_id:
            self.native_session_id = mapped.session_id
        if mapped.reply is not None and proc is not None:
            with contextlib.suppress(ConnectionError):
                await proc.write_json(mapped.reply)
        if mapped.response is not None:
            self._answered(*mapped.response)
        await self._emit_turn(*mapped.drafts)
        if mapped.request is not None:
            await self._ask(mapped.request)
        if mapped.withdrawn is not None:
            await self._withdraw(mapped.withdrawn)
        if mapped.result is not None:
            if not self._cancelling:
                await self._emit_turn(*mapped.ending)
            self._finish_turn()

    async def _emit_turn(self, *drafts: EventDraft) -> None:
        if not drafts:
            return
        sid = self.native_session_id
        if sid is not None:
            drafts = tuple(
                d if d.native_session_id else d.model_copy(update={"native_session_id": sid})
                for d in drafts
            )
        await self.emit(*drafts)

    def _answered(self, request_id: str, response: dict[str, Any]) -> None:
        waiter = self._waiting.pop(request_id, None)
        if waiter is None or waiter.done():
            return
        if response.get("subtype") == "error":
            waiter.set_exception(AgentError(f"claude refused: {response.get('error')}"))
        else:
            waiter.set_result(response)

    async def _ask(self, request: ToolRequest) -> None:
        if request.question is not None:
            self._requests[request.question.question_id] = request
            await self.ask_question(request.question)
        elif request.permission is not None:
            self._requests[request.permission.permission_id] = request
            await self.ask_permission(request.permission)

    async def _withdraw(self, request_id: str) -> None:
        """Claude no longer waits on ``request_id``: resolve it (daemon, rejected)."""
        for key, context in list(self._requests.items()):
            if context.request_id != request_id:
                continue
            del self._requests[key]
            reason = {"reason": "withdrawn"}
            async with self._hitl_lock:
                permission = self._permissions.pop(key, None)
                question = self._questions.pop(key, None)
                if permission is not None:
                    data = permission.model_copy(
                        update={
                            "status": "reject",
                            "metadata": {**(permission.metadata or {}), **reason},
                        }
                    )
                    await self._emit_turn(_daemon("permission.resolved", data))
                if question is not None:
                    resolved = QuestionData.model_validate(
                        {
                            **question.model_dump(),
                            "status": "rejected",
                            "response": None,
                            "metadata": reason,
                        }
                    )
                    await self._emit_turn(_daemon("question.resolved", resolved))

    async def _exited(self, proc: AgentProcess, code: int) -> None:
        """The process closed stdout: unless we ended it, the session ends with an error."""
        if self._proc is not proc or self._stopped:
            return
        self._proc = None
        started = not any(k.startswith("init_") for k in self._waiting)
        self._fail_waiting(_NotResumable(f"claude exited with {code}"))
        if not started:
            return  # start() reports it
        drafts = self._mapper.flush()
        tail, truncated = _stderr_tail(proc)
        message = f"claude exited unexpectedly with code {code}"
        error = ErrorData(message=message, code="process_exit", details={"exit_code": code})
        ended = SessionEndedData(
            reason="error" if code != 0 else "completed",
            terminated_by="agent",
            message=message,
            exit_code=code,
            stderr=StderrOutput(tail=tail, truncated=truncated) if tail else None,
        )
        self._finish_turn()
        self.forget_requests()
        self._requests.clear()
        try:
            await self._emit_turn(
                *drafts,
                EventDraft(type="error", data=error),
                EventDraft(type="session.ended", data=ended),
            )
        except Exception:
            logger.exception("claude: recording the exit failed")

    def _fail_waiting(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(exc)
                # Retrieved here so that an abandoned waiter logs nothing.
                waiter.exception()


def mcp_servers(servers: Mapping[str, McpServer] | None) -> dict[str, Any]:
    """The session's MCP servers as claude's ``mcpServers`` (disabled ones left out).

    Passed with ``--mcp-config`` (per process: nothing is written to the project's
    ``.mcp.json``). Secrets named by ``bearerTokenEnvVar`` / ``envHeaders`` stay in the
    environment: claude expands ``${VAR}`` in headers, so they never appear on the command line.
    """
    rendered: dict[str, Any] = {}
    for name, server in (servers or {}).items():
        if server.enabled is False:
            continue
        entry: dict[str, Any]
        if isinstance(server, McpLocalServer):
            entry = {"type": "stdio", "command": server.command, "args": list(server.args)}
            if server.env:
                entry["env"] = dict(server.env)
        else:
            entry = {"type": server.transport or "http", "url": server.url}
            headers = server.literal_headers(lambda variable: f"${{{variable}}}")
            if headers:
                entry["headers"] = headers
        rendered[name] = entry
    return rendered


def _daemon(event_type: str, data: Any) -> EventDraft:
    return EventDraft(type=event_type, data=data, source="daemon", synthetic=True)


def _user_line(prompt: str, attachments: Sequence[Attachment]) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = prompt
    if attachments:
        # Claude reads files itself: name them (images and files alike) after the prompt.
        listed = "\n".join(f"- {a.path}" for a in attachments)
        content = [
            {"type": "text", "text": prompt},
            {"type": "text", "text": f"Attached files:\n{listed}"},
        ]
    return {
        "type": "user",
        "message": {"role": "user", "content": content},
        "parent_tool_use_id": None,
        "session_id": "",
    }


def _stderr_tail(proc: AgentProcess) -> tuple[str, bool]:
    try:
        size = os.path.getsize(proc.log_path)
    except OSError:
        return "", False
    return proc.stderr_tail(STDERR_TAIL_BYTES), size > STDERR_TAIL_BYTES
