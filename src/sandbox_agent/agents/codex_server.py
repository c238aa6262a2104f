"""The shared ``codex app-server`` process: JSON-RPC 2.0 over stdio, one JSON object a line.

One ``CodexAppServer`` serves every Codex session of a sandbox-agent server (``SharedServers``
key ``"codex"``). It owns the child process, performs the ``initialize`` / ``initialized``
handshake, matches responses to requests, and routes what the app-server sends on its own (its
notifications and its server requests) to the session that owns the thread named in the
message (``params.threadId``, ``params.conversationId`` for the legacy v1 requests, or
``params.thread.id``). The session side registers a ``ThreadHandler`` per thread.

What has no thread, or names a thread nobody registered:

- notifications are dropped (logged at debug level): ``GLOBAL_NOTIFICATIONS`` are about the
  whole app-server or the account (rate limits, remote control, config and deprecation notices,
  MCP server start-up, skills, apps, login), not a session; and a thread's own notifications
  that arrive before its session registered it (``thread/started``, the first
  ``thread/status/changed``) carry nothing the session layer does not record itself;
- requests get an explicit JSON-RPC error reply at once, so that the app-server never waits on
  an answer nobody will give (upstream left them unanswered, bug 8).

When the process exits (or closes stdout) every request in flight fails with
``CodexServerGone`` and every registered handler hears ``server_exited``; ``alive`` turns false
and ``SharedServers`` starts a new process on the next ``get``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from sandbox_agent.agents.errors import AgentError
from sandbox_agent.agents.process import AgentProcess

logger = logging.getLogger(__name__)

#: Seconds the handshake and ordinary requests may take.
REQUEST_TIMEOUT = 30.0
CLIENT_INFO = {"name": "sandbox-agent", "title": "sandbox-agent", "version": "0.1"}
#: JSON-RPC "method not found": the reply to every server request we do not handle.
METHOD_NOT_FOUND = -32601


#: Notifications without a thread, deliberately ignored (see the module docstring).
GLOBAL_NOTIFICATIONS: frozenset[str] = frozenset(
    {
        "remoteControl/status/changed",
        "account/rateLimits/updated",
        "account/updated",
        "account/login/completed",
        "account/gatewayOAuth/changed",
        "deprecationNotice",
        "configWarning",
        "warning",
        "mcpServer/startupStatus/updated",
        "mcpServer/oauthLogin/completed",
        "mcpServer/event/stream/notification",
        "skills/changed",
        "app/list/updated",
        "project/changed",
        "fs/changed",
        "externalAgentConfig/import/progress",
        "externalAgentConfig/import/completed",
        "fuzzyFileSearch/sessionUpdated",
        "fuzzyFileSearch/sessionCompleted",
        "modelProvider/authRecoveryStarted",
        "modelProvider/authRecoveryCompleted",
        "windows/worldWritableWarning",
        "windowsSandbox/setupCompleted",
        "command/exec/outputDelta",
        "process/outputDelta",
        "process/exited",
    }
)


class CodexRpcError(AgentError):
    """The app-server answered a request with a JSON-RPC error."""

    def __init__(self, method: str, error: Mapping[str, Any]) -> None:
        message = str(error.get("message") or error)
        super().__init__(f"codex {method}: {message}")
        self.method = method
        self.error = dict(error)


class CodexServerGone(AgentError):
    """The app-server process exited (or was stopped) before answering."""


class ThreadHandler(Protocol):
    """The session side of one thread (``CodexAgent``)."""

    def deliver(self, message: dict[str, Any]) -> None:
        """A notification or server request about the thread; must not block."""

    def server_exited(self, server: CodexAppServer) -> None:
        """The app-server died; called once, from the server's reader task."""


def thread_of(message: Mapping[str, Any]) -> str | None:
    """The thread a notification or server request is about, if it names one."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    for key in ("threadId", "conversationId"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    thread = params.get("thread")
    if isinstance(thread, dict) and isinstance(thread.get("id"), str):
        return str(thread["id"])
    return None


class CodexAppServer:
    """One running ``codex app-server``. Build it with ``await CodexAppServer.start(...)``."""

    _instances = itertools.count(1)

    def __init__(self, process: AgentProcess) -> None:
        self.process = process
        #: Distinguishes the app-servers of one sandbox-agent server (ids for HITL requests).
        self.instance = next(self._instances)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._handlers: dict[str, ThreadHandler] = {}
        self._closed = False
        self._stopping = False
        self._reader: asyncio.Task[None] | None = None
        #: Cached ``models()`` answer of this process (see ``CodexAgent.models``).
        self.models_cache: Any = None

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        log_path: Path,
        timeout: float = REQUEST_TIMEOUT,
    ) -> CodexAppServer:
        """Spawn ``<command> app-server`` and complete the handshake (or stop it and raise)."""
        process = await AgentProcess.spawn(
            [*command, "app-server"], cwd=cwd, env=env, log_path=log_path
        )
        server = cls(process)
        server._reader = asyncio.create_task(server._read(), name="codex app-server reader")
        try:
            await server.request("initialize", {"clientInfo": CLIENT_INFO}, timeout=timeout)
            await server.notify("initialized", {})
        except BaseException:
            await server.stop()
            raise
        logger.info("codex app-server started (pid %s)", process.pid)
        return server

    # -- SharedServer ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return not self._closed and self.process.returncode is None

    async def stop(self) -> None:
        """End the process group; idempotent. Handlers hear ``server_exited`` unless stopped."""
        self._stopping = True
        await self.process.stop()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5)
        self._close()

    # -- routing --------------------------------------------------------------------------
    def register(self, thread_id: str, handler: ThreadHandler) -> None:
        self._handlers[thread_id] = handler

    def unregister(self, thread_id: str, handler: ThreadHandler) -> None:
        if self._handlers.get(thread_id) is handler:
            del self._handlers[thread_id]

    # -- requests -------------------------------------------------------------------------
    async def request(
        self, method: str, params: Mapping[str, Any], *, timeout: float = REQUEST_TIMEOUT
    ) -> Any:
        """Send a request and return its ``result``; ``CodexRpcError`` on an error reply."""
        if not self.alive:
            raise CodexServerGone("the codex app-server is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (method, future)
        try:
            await self._write({"id": request_id, "method": method, "params": dict(params)})
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Mapping[str, Any]) -> None:
        await self._write({"method": method, "params": dict(params)})

    async def respond(self, request_id: Any, result: Mapping[str, Any]) -> None:
        """Answer a server request."""
        await self._write({"id": request_id, "result": dict(result)})

    async def respond_error(self, request_id: Any, message: str) -> None:
        """Refuse a server request explicitly."""
        error = {"code": METHOD_NOT_FOUND, "message": message}
        await self._write({"id": request_id, "error": error})

    async def _write(self, message: dict[str, Any]) -> None:
        try:
            await self.process.write_json(message)
        except (ConnectionError, OSError) as exc:
            raise CodexServerGone(f"the codex app-server is gone: {exc}") from exc

    # -- the reader -----------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            async for line in self.process.lines():
                try:
                    message = json.loads(line)
                except ValueError:
                    logger.warning("codex app-server: not JSON: %.200r", line)
                    continue
                if isinstance(message, dict):
                    await self._dispatch(message)
                else:
                    logger.warning("codex app-server: not an object: %.200r", line)
        except Exception:
            logger.exception("codex app-server: reader failed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.wait(), 5)
            self._close()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            self._on_response(message)
            return
        thread = thread_of(message)
        handler = self._handlers.get(thread) if thread is not None else None
        if handler is not None:
            handler.deliver(message)
        elif "id" in message:
            logger.warning("codex app-server: refusing unroutable request %s", method)
            with contextlib.suppress(CodexServerGone):
                await self.respond_error(
                    message["id"], f"sandbox-agent cannot answer {method} (no session)"
                )
        elif method in GLOBAL_NOTIFICATIONS or thread is not None:
            logger.debug("codex app-server: ignored %s (thread %s)", method, thread)
        else:
            logger.info("codex app-server: ignored unknown notification %s", method)

    def _on_response(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        entry = self._pending.get(request_id) if isinstance(request_id, int) else None
        if entry is None:
            logger.debug("codex app-server: response to unknown request %r", request_id)
            return
        method, future = entry
        if future.done():
            return
        error = message.get("error")
        if error is not None:
            future.set_exception(
                CodexRpcError(method, error if isinstance(error, dict) else {"message": error})
            )
        else:
            future.set_result(message.get("result"))

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for method, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(CodexServerGone(f"codex app-server exited during {method}"))
        handlers = list(self._handlers.values())
        self._handlers.clear()
        if self._stopping:
            return
        logger.warning(
            "codex app-server exited (code %s); %d session(s) affected",
            self.process.returncode,
            len(handlers),
        )
        for handler in handlers:
            try:
                handler.server_exited(self)
            except Exception:
                logger.exception("codex app-server: a handler failed on exit")
