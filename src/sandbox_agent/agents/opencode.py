"""The OpenCode adapter (agent id ``opencode``): REST + SSE against one shared ``opencode serve``.

- Server: one ``opencode serve`` per sandbox-agent server (``SharedServers`` key ``opencode``, see
  ``opencode_server.py``), with ONE ``/global/event`` stream dispatched by session id. Every
  request passes ``?directory=<session directory>``, so each session gets the project config
  (``opencode.json``) of its own directory.
- Session: ``POST /session`` -> ``native_session_id`` (a fork at its source's end: ``POST
  /session/{source}/fork``, a copy of the source's messages). Resume (server restart): the
  stored id is looked up (``GET /session/{id}``) in the new server, which shares the old one's
  database (``$HOME/.local/share/opencode``), and used again; a new session is created if it is
  gone.
- Turn: ``POST /session/{id}/prompt_async {parts, agent: agentMode, model?, variant?}``; the
  output is mapped by ``OpenCodeMapper`` (``opencode_mapping.py``, which lists what is ignored);
  ``session.idle`` ends the turn (``completed``, or ``error`` after a ``session.error``, which
  is emitted as an ``error`` event) once the turn's messages completed and no content came for
  ``IDLE_QUIET`` s (at most ``IDLE_GRACE`` s): the stream is not strictly ordered (a message's
  last parts were seen arriving after the idle).
- Late events of a cancelled turn: OpenCode sends the aborted message's last updates and a second
  ``session.idle`` after the first one. ``cancel`` waits for them; and a turn only counts an idle
  after OpenCode echoed the turn's own user message (created after the prompt was sent), so a
  stray idle never ends the next turn.
- Cancel: ``POST /session/{id}/abort``, then wait until OpenCode is idle and the aborted message
  is complete; the abort's ``session.error`` (``MessageAbortedError``) and idle are swallowed, so
  the session layer's ``turn.ended {cancelled}`` is the only one.
- HITL: ``permission.asked`` -> ``permission.requested``; replies ``POST
  /permission/{id}/reply {reply: once|always|reject}``. ``question.asked`` ->
  ``question.requested``; ``POST /question/{id}/reply {answers}`` or ``/question/{id}/reject``.
  A request answered elsewhere (``permission.replied`` / ``question.replied`` / ``.rejected``
  while still pending here, e.g. rejected by OpenCode on abort) is resolved with source agent.
- Permission modes: ``default`` (OpenCode's own rules: its defaults plus the project config's
  ``permission``) and ``bypass``: the session is created with the ruleset ``[{permission: "*",
  pattern: "*", action: "allow"}]`` (which OpenCode puts after the config's rules, so it wins), and
  any request that still comes is answered ``once`` at once (recorded as requested + a synthetic
  resolution).
- MCP: the session's ``mcp`` servers are added with ``POST /mcp`` to its directory's instance
  (unless it has one of that name). Skills: the session layer links them into the session's
  ``.opencode/skill/<name>`` (``AgentSpec.skill_dirs``), where OpenCode finds them itself.
- Modes: ``GET /agent`` (the primary, visible agents) plus ``custom``; fallback build, plan,
  custom. Models: ``GET /config/providers`` (``provider/model`` ids, variants); fallback empty.
  Both are asked without a directory (OpenCode's global config; the query starts the shared
  server), so no default model is given: OpenCode uses the project's ``model``.
- The server dies: every session of it gets an ``error`` (``opencode_server``) and
  ``session.ended {error, agent}``; the next message starts a new server and resumes natively.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
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
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.errors import AgentNotStarted, TurnInProgress
from sandbox_agent.agents.hitl import permission_resolved
from sandbox_agent.agents.mcp import McpLocalServer, McpServer
from sandbox_agent.agents.native import NativeAgent
from sandbox_agent.agents.opencode_mapping import ABORTED, OpenCodeMapper, Outcome
from sandbox_agent.agents.opencode_server import (
    SHARED_KEY,
    Listener,
    NotFound,
    OpenCodeError,
    OpenCodeServer,
)
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    QuestionData,
    SessionEndedData,
)

logger = logging.getLogger(__name__)

#: Seconds ``cancel`` waits for OpenCode to settle after the abort.
CANCEL_TIMEOUT = 15.0
#: Seconds it waits for a last idle once the aborted message is complete.
CANCEL_QUIET = 1.0
#: Seconds a modes / models query may take (it may start the server).
QUERY_TIMEOUT = 90.0
#: Slack (ms) when telling this turn's user message from older ones by its creation time.
ECHO_SLACK_MS = 50
BYPASS_RULES = [{"permission": "*", "pattern": "*", "action": "allow"}]


class _Turn:
    def __init__(self) -> None:
        self.sent_ms = int(time.time() * 1000)
        self.echoed = False
        self.error = False
        self.cancelling = False
        self.idle = False
        #: An idle came while no assistant message was open (the cancelled turn is over).
        self.settled = asyncio.Event()
        self.idle_event = asyncio.Event()
        self.finisher: asyncio.Task[None] | None = None


class OpenCodeAgent(NativeAgent):
    id = "opencode"
    capabilities = CAPABILITIES["opencode"]
    #: Seconds without events (and no message open) after ``session.idle`` before the turn ends.
    IDLE_QUIET: ClassVar[float] = 0.15
    #: Seconds after ``session.idle`` when the turn ends whatever is still open.
    IDLE_GRACE: ClassVar[float] = 5.0
    MODES: ClassVar[list[AgentMode]] = MODES["opencode"]

    def __init__(self, sink: EventSink, settings: AgentSettings) -> None:
        super().__init__(sink, settings)
        self._server: OpenCodeServer | None = None
        self._queue: Listener | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._mapper = OpenCodeMapper()
        self._turn: _Turn | None = None
        self._events_lock = asyncio.Lock()
        self._last_event = 0.0
        self._stopped = False

    # -- the shared server ----------------------------------------------------------------
    async def _shared(self) -> OpenCodeServer:
        async def start() -> OpenCodeServer:
            # Every request names its directory; the process itself runs in an empty one next
            # to its log, so that no project (a big git tree, say) is loaded for nothing.
            log = self.log_path("serve")
            root = log.parent / "serve-root"
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
            return await OpenCodeServer.start(
                self.command(),
                cwd=str(root),
                env=agent_environment(self.id, str(root), self.settings.extra_env),
                log_path=log,
            )

        return await self.settings.shared.get(SHARED_KEY, start)

    @property
    def server(self) -> OpenCodeServer:
        if self._server is None:
            raise AgentNotStarted("opencode: start() first")
        return self._server

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.server.request(method, path, self.directory, body, **kw)

    # -- modes and models -----------------------------------------------------------------
    def _query_directory(self) -> str | None:
        # Before start() no directory is known: OpenCode answers for its own (empty) one.
        return self._session.directory if self._session is not None else None

    async def modes(self) -> list[AgentMode]:
        directory = self._query_directory()
        try:
            server = await asyncio.wait_for(self._shared(), QUERY_TIMEOUT)
            agents = await server.request("GET", "/agent", directory, timeout=10)
        except Exception as exc:  # any failure: the documented fallback
            logger.info("opencode modes: fallback (%s)", exc)
            return list(self.MODES)
        modes: list[AgentMode] = []
        for agent in agents if isinstance(agents, list) else []:
            if (
                not isinstance(agent, dict)
                or agent.get("hidden")
                or agent.get("mode") == "subagent"
            ):
                continue
            name = str(agent.get("name") or "")
            if name:
                description = str(agent.get("description") or "")
                modes.append(AgentMode(id=name, name=name, description=description))
        if not modes:
            return list(self.MODES)
        if all(m.id != "custom" for m in modes):
            modes.append(self.MODES[-1])
        return modes

    async def models(self) -> AgentModels:
        directory = self._query_directory()
        try:
            server = await asyncio.wait_for(self._shared(), QUERY_TIMEOUT)
            body = await server.request("GET", "/config/providers", directory, timeout=10)
        except Exception as exc:
            logger.info("opencode models: fallback (%s)", exc)
            return AgentModels()
        models = parse_models(body)
        if self._session is None:
            # Before a session the directory is unknown, and OpenCode's default model is the
            # project's (opencode.json "model"): leave it to OpenCode rather than pin another.
            models = models.model_copy(update={"default_model": None})
        return models

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        self._begin(session)
        self._stopped = False
        await self._attach(resume)

    async def start_fork(self, session: AgentSessionConfig, source: str) -> bool:
        """``POST /session/{source}/fork``: OpenCode copies the source's messages into a new
        session, which becomes this one's; the source's stays as it was. A source OpenCode no
        longer has gives a new session (False)."""
        self._begin(session)
        self._stopped = False
        return await self._attach(None, fork=source)

    async def _attach(self, resume: str | None, fork: str | None = None) -> bool:
        """Get the shared server, find, fork or create the native session, listen to its
        events; True when ``fork`` was forked."""
        self._server = await self._shared()
        native: str | None = None
        forked = False
        if fork:
            try:
                copied = await self._call("POST", f"/session/{fork}/fork", {})
                native, forked = str(copied["id"]), True
            except OpenCodeError as exc:
                logger.info("opencode session %s cannot be forked (%s): a new one", fork, exc)
            if native is not None and self.session.permission_mode == "bypass":
                # The copy does not take the mode's ruleset from its source.
                await self._call("PATCH", f"/session/{native}", {"permission": BYPASS_RULES})
        if resume:
            try:
                found = await self._call("GET", f"/session/{resume}")
                native = str(found["id"]) if isinstance(found, dict) else resume
            except NotFound:
                logger.info("opencode session %s is gone: a new one is created", resume)
        if native is None:
            body: dict[str, Any] = {}
            if self.session.title:
                body["title"] = self.session.title
            if self.session.permission_mode == "bypass":
                body["permission"] = BYPASS_RULES
            created = await self._call("POST", "/session", body)
            native = str(created["id"])
        self.native_session_id = native
        await self._register_mcp()
        self._queue = self.server.listen(native)
        self._consumer = asyncio.create_task(self._consume(self._queue))
        return forked

    async def _register_mcp(self) -> None:
        """Add the session's MCP servers to its directory's OpenCode instance (``POST /mcp``),
        those it does not have yet."""
        servers = self.session.mcp or {}
        if not servers:
            return
        present = await self._call("GET", "/mcp")
        env = self.environment()
        for name, server in servers.items():
            if isinstance(present, dict) and name in present:
                continue
            await self._call("POST", "/mcp", {"name": name, "config": mcp_config(server, env)})

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        server, queue, consumer = self._server, self._queue, self._consumer
        if self._turn is not None and server is not None and server.alive:
            # Terminate interrupts the running turn too (upstream bug 4).
            with contextlib.suppress(Exception):
                await self._call("POST", f"/session/{self.native_session_id}/abort", timeout=5)
        if self._turn is not None and self._turn.finisher is not None:
            self._turn.finisher.cancel()
        self._turn = None
        if server is not None and queue is not None and self.native_session_id:
            server.unlisten(self.native_session_id, queue)
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
        self._consumer = None

    # -- turns ----------------------------------------------------------------------------
    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        if self._turn is not None:
            raise TurnInProgress("opencode: a turn is running")
        if self._server is None or not self._server.alive or self._consumer is None:
            await self._reattach()
        body: dict[str, Any] = {"parts": prompt_parts(prompt, attachments)}
        session = self.session
        if session.agent_mode and session.agent_mode != "custom":
            body["agent"] = session.agent_mode
        if session.model and "/" in session.model:
            provider, model = session.model.split("/", 1)
            body["model"] = {"providerID": provider, "modelID": model}
        if session.variant:
            body["variant"] = session.variant
        turn = self._turn = _Turn()
        try:
            await self._call("POST", f"/session/{self.native_session_id}/prompt_async", body)
        except BaseException:
            if self._turn is turn:
                self._turn = None
            raise

    async def _reattach(self) -> None:
        """After the server died (or the adapter lost it): a new server, the same session."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consumer
            self._consumer = None
        self._mapper = OpenCodeMapper()
        await self._attach(self.native_session_id)

    async def cancel(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.cancelling = True
        try:
            await self._call("POST", f"/session/{self.native_session_id}/abort", timeout=10)
        except OpenCodeError as exc:
            logger.warning("opencode abort: %s", exc)
        try:
            await asyncio.wait_for(self._settled(turn), CANCEL_TIMEOUT)
        except TimeoutError:
            logger.warning("opencode: the aborted turn did not settle in %ss", CANCEL_TIMEOUT)
        async with self._events_lock:
            if self._turn is turn:
                self._turn = None
                await self.emit(*self._mapper.close_open())

    async def _settled(self, turn: _Turn) -> None:
        await turn.idle_event.wait()
        # The first idle can come before the aborted message's last updates; a second one
        # follows them. Wait for it briefly.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(turn.settled.wait(), CANCEL_QUIET)

    # -- HITL forwarding ------------------------------------------------------------------
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        await self._call("POST", f"/permission/{request.permission_id}/reply", {"reply": reply})

    async def forward_question(
        self, request: QuestionData, answers: list[list[str]] | None
    ) -> None:
        if answers is None:
            await self._call("POST", f"/question/{request.question_id}/reject")
        else:
            await self._call("POST", f"/question/{request.question_id}/reply", {"answers": answers})

    # -- events ---------------------------------------------------------------------------
    async def _consume(self, queue: Listener) -> None:
        while True:
            payload = await queue.get()
            try:
                if payload is None:
                    await self._server_gone()
                    return
                await self.handle(payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One bad event must not stop the session's stream.
                logger.exception("opencode: handling an event failed")

    async def handle(self, payload: dict[str, Any]) -> None:
        """Map one event of this session and act on it (the consumer task; tests call it)."""
        async with self._events_lock:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("opencode %s: %s", self.native_session_id, json.dumps(payload))
            out = self._mapper.map(payload)
            if out.drafts or out.permission is not None or out.question is not None:
                # Only content restarts the quiet wait: OpenCode's bookkeeping after an idle
                # (session.updated, session.diff, the user message's update) maps to nothing.
                self._last_event = asyncio.get_running_loop().time()
            await self._act(out, payload)

    async def _act(self, out: Outcome, raw: dict[str, Any]) -> None:
        turn = self._turn
        echo = out.user_message
        if echo is not None and turn is not None and echo[1] >= turn.sent_ms - ECHO_SLACK_MS:
            turn.echoed = True
        drafts = list(out.drafts)
        if out.permission is not None:
            await self._permission(out.permission, drafts, raw)
            drafts = []
        if out.question is not None:
            await self.ask_question(out.question, *drafts)
            drafts = []
        if out.answered is not None:
            drafts += await self._answered_elsewhere(*out.answered)
        if out.error is not None:
            if turn is not None and (turn.cancelling or out.error.code == ABORTED):
                pass  # our own abort: the session layer records the cancel
            else:
                drafts.append(EventDraft(type="error", data=out.error, raw=raw))
                if turn is not None:
                    # Also when OpenCode refused the prompt before echoing it: its idle ends
                    # the turn.
                    turn.error = turn.echoed = True
        if out.deleted:
            drafts += self._end_drafts("the OpenCode session was deleted", "opencode_deleted")
        if out.idle and turn is not None and (turn.echoed or turn.cancelling):
            turn.idle = True
            turn.idle_event.set()
            if turn.cancelling:
                if not self._mapper.assistant_open:
                    turn.settled.set()
            elif turn.finisher is None:
                turn.finisher = asyncio.create_task(self._finish_after_idle(turn))
        await self.emit(*drafts)

    async def _finish_after_idle(self, turn: _Turn) -> None:
        """End the turn once its messages completed and the stream went quiet: the stream is
        not strictly ordered (a message's last parts can come after ``session.idle``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.IDLE_GRACE
        while loop.time() < deadline:
            quiet = loop.time() - self._last_event >= self.IDLE_QUIET
            if quiet and not self._mapper.assistant_open:
                break
            await asyncio.sleep(self.IDLE_QUIET / 4)
        async with self._events_lock:
            if self._turn is not turn or turn.cancelling:
                return  # cancelled meanwhile: cancel() ends it
            self._turn = None
            drafts = self._mapper.close_open()
            await self.emit(*drafts, turn_ended_draft("error" if turn.error else "completed"))

    async def _permission(
        self, request: PermissionData, before: list[EventDraft], raw: dict[str, Any]
    ) -> None:
        if self._session is not None and self.session.permission_mode == "bypass":
            # Bypass: the session's allow-all ruleset should have kept OpenCode from asking.
            await self.forward_permission(request, "once")
            resolved = permission_resolved(request, "once", automatic=True)
            await self.emit(
                *before, EventDraft(type="permission.requested", data=request, raw=raw), resolved
            )
            return
        await self.ask_permission(request, *before)

    async def _answered_elsewhere(self, kind: str, request_id: str, reply: Any) -> list[EventDraft]:
        """A request answered outside our API (or rejected by OpenCode on abort)."""
        async with self._hitl_lock:
            if kind == "permission":
                permission = self._permissions.pop(request_id, None)
                if permission is None:
                    return []  # answered through us: recorded already
                status = {"once": "accept", "always": "accept_for_session"}.get(reply, "reject")
                data = permission.model_copy(update={"status": status})
                return [EventDraft(type="permission.resolved", data=data)]
            question = self._questions.pop(request_id, None)
            if question is None:
                return []
            if reply is None:
                update: dict[str, Any] = {"status": "rejected", "response": None}
            else:
                first = reply[0][0] if reply and reply[0] else None
                update = {"status": "answered", "response": first}
            return [EventDraft(type="question.resolved", data=question.model_copy(update=update))]

    async def _server_gone(self) -> None:
        """The shared server died: end this session with an error (a message resumes it)."""
        async with self._events_lock:
            self._consumer = None
            self._server = None
            if self._stopped:
                return
            turn, self._turn = self._turn, None
            drafts = self._mapper.close_open()
            self.forget_requests()
            drafts += self._end_drafts("the opencode server exited", "opencode_server")
            if turn is not None:
                turn.idle_event.set()
                turn.settled.set()
            await self.emit(*drafts)

    def _end_drafts(self, message: str, code: str) -> list[EventDraft]:
        error = ErrorData(message=message, code=code)
        ended = SessionEndedData(reason="error", terminated_by="agent", message=message)
        return [
            EventDraft(type="error", data=error, source="daemon", synthetic=True),
            EventDraft(type="session.ended", data=ended, source="daemon", synthetic=True),
        ]


def prompt_parts(prompt: str, attachments: Sequence[Attachment] = ()) -> list[dict[str, Any]]:
    """The ``parts`` of a prompt: its text, then one file part per attachment."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    for attachment in attachments:
        path = str(Path(attachment.path).absolute())
        part: dict[str, Any] = {
            "type": "file",
            "mime": attachment.mime or "application/octet-stream",
            "url": f"file://{path}",
            "filename": attachment.filename or Path(path).name,
        }
        parts.append(part)
    return parts


def parse_models(body: Any) -> AgentModels:
    """``GET /config/providers`` -> models ``provider/model`` (sorted), variants, default."""
    if not isinstance(body, dict):
        return AgentModels()
    providers = body.get("providers") or body.get("all") or []
    found = body.get("default")
    defaults: dict[str, Any] = found if isinstance(found, dict) else {}
    models: list[AgentModel] = []
    default: str | None = None
    for provider in providers if isinstance(providers, list) else []:
        if not isinstance(provider, dict) or not provider.get("id"):
            continue
        provider_id = str(provider["id"])
        entries = provider.get("models") or {}
        for key, model in entries.items() if isinstance(entries, dict) else []:
            if not isinstance(model, dict):
                continue
            model_id = f"{provider_id}/{model.get('id') or key}"
            variants = model.get("variants")
            models.append(
                AgentModel(
                    id=model_id,
                    name=str(model.get("name") or key),
                    variants=sorted(variants) if isinstance(variants, dict) and variants else None,
                )
            )
        if default is None and provider_id in defaults:
            default = f"{provider_id}/{defaults[provider_id]}"
    models.sort(key=lambda m: m.id)
    if default is None and models:
        default = models[0].id
    return AgentModels(models=models, default_model=default)


def mcp_config(server: McpServer, env: Mapping[str, str]) -> dict[str, Any]:
    """An MCP server as OpenCode's ``McpLocalConfig`` / ``McpRemoteConfig``.

    Header variables (``bearerTokenEnvVar``, ``envHeaders``) are read from ``env`` here, since
    the REST API takes literal headers; headers given literally win."""
    common: dict[str, Any] = {}
    if server.enabled is not None:
        common["enabled"] = server.enabled
    if server.timeout_ms is not None:
        common["timeout"] = math.ceil(server.timeout_ms)
    if isinstance(server, McpLocalServer):
        local: dict[str, Any] = {
            "type": "local",
            "command": [server.command, *server.args],
            **common,
        }
        if server.env:
            local["environment"] = dict(server.env)
        if server.cwd is not None:
            local["cwd"] = server.cwd
        return local
    remote: dict[str, Any] = {"type": "remote", "url": server.url, **common}
    headers = server.literal_headers(env.get)
    if headers:
        remote["headers"] = headers
    if server.oauth is not None:
        remote["oauth"] = (
            False if server.oauth is False else server.oauth.model_dump(exclude_none=True)
        )
    return remote
