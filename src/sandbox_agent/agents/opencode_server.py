"""The one ``opencode serve`` of a sandbox-agent server, shared by every OpenCode session.

``OpenCodeServer.start`` runs ``opencode serve --port <free port> --hostname 127.0.0.1`` in its own
process group (stderr to the agent log) and returns once the server printed "opencode server
listening on" (a request made before that line hangs) and its event stream is connected.

Directories: one process serves every session directory. OpenCode keeps one *instance* per
project directory (its config, ``opencode.json``, is found from that directory), chosen per request
by the ``directory`` query parameter; so every call of an adapter passes ``?directory=<session
directory>`` and sessions in different directories each get their own project config. The process's
own working directory does not matter.

Events: ONE ``GET /global/event`` SSE connection per server (it carries the events of every
instance, wrapped as ``{directory, payload}``), dispatched by session id to the queue each adapter
registered (``listen``). Events of sessions nobody listens to are dropped; server-wide events
without a session are ignored (``IGNORED_GLOBAL``) or logged. When the process dies, or the stream
cannot be reconnected, every listener gets ``None`` (the adapter ends its session with an error),
and ``alive`` turns false so that ``SharedServers.get`` starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from sandbox_agent.agents.opencode_mapping import session_of
from sandbox_agent.agents.process import AgentProcess

logger = logging.getLogger(__name__)

#: ``SharedServers`` key of the OpenCode server.
SHARED_KEY = "opencode"
READY_LINE = "opencode server listening on"
#: Seconds to wait for the "listening" line (Bun start, DB migration on a fresh HOME).
START_TIMEOUT = 60.0
#: Seconds to wait for the event stream's ``server.connected``.
CONNECT_TIMEOUT = 15.0
#: Reconnection attempts of the event stream before the server counts as dead.
RECONNECTS = 5

#: Server-wide events (no session): plugin/catalog/project bookkeeping, heartbeats, TUI and PTY
#: traffic, and ``sync`` (the replication log, a copy of the session events).
IGNORED_GLOBAL = frozenset(
    {
        "server.connected",
        "server.heartbeat",
        "sync",
        "plugin.added",
        "catalog.updated",
        "reference.updated",
        "integration.updated",
        "integration.connection.updated",
        "models-dev.refreshed",
        "project.updated",
        "project.directories.updated",
        "installation.updated",
        "installation.update-available",
        "lsp.updated",
        "vcs.branch.updated",
        "mcp.tools.changed",
        "mcp.browser.open.failed",
        "file.edited",
        "file.watcher.updated",
        "global.disposed",
        "server.instance.disposed",
        "workspace.ready",
        "workspace.failed",
        "workspace.status",
        "worktree.ready",
        "worktree.failed",
        "pty.created",
        "pty.updated",
        "pty.exited",
        "pty.deleted",
        "tui.prompt.append",
        "tui.command.execute",
        "tui.toast.show",
        "tui.session.select",
    }
)

Listener = asyncio.Queue[dict[str, Any] | None]


class OpenCodeError(Exception):
    """The server could not be started or answered a request with an error."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenCodeServer:
    """A running ``opencode serve``: REST client and the dispatching event stream."""

    def __init__(self, process: AgentProcess, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self._listeners: dict[str, Listener] = {}
        self._connected = asyncio.Event()
        self._stream_dead = False
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls, command: Sequence[str], *, cwd: str, env: Mapping[str, str], log_path: Path
    ) -> OpenCodeServer:
        argv = [*command, "serve", "--port", str(free_port()), "--hostname", "127.0.0.1"]
        process = await AgentProcess.spawn(argv, cwd=cwd, env=env, log_path=log_path, stdin=False)
        lines = process.lines()
        try:
            url = await asyncio.wait_for(_listening_url(lines), START_TIMEOUT)
        except (TimeoutError, OpenCodeError) as exc:
            await process.stop()
            tail = process.stderr_tail(1500)
            raise OpenCodeError(
                f"opencode serve did not start ({exc or 'timeout'}): {tail}"
            ) from exc
        server = cls(process, url)
        server._tasks = [
            asyncio.create_task(server._drain(lines)),
            asyncio.create_task(server._events()),
        ]
        try:
            await asyncio.wait_for(server._connected.wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            await server.stop()
            raise OpenCodeError("opencode serve: the event stream did not connect") from None
        logger.debug("opencode serve at %s (pid %s)", url, process.pid)
        return server

    # -- SharedServer ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return not self._stopped and not self._stream_dead and self.process.returncode is None

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
        await self.process.stop()
        self._notify_all()

    # -- listeners ------------------------------------------------------------------------
    def listen(self, session_id: str) -> Listener:
        """The queue of ``session_id``'s events (``None``: the server is gone)."""
        queue: Listener = asyncio.Queue()
        self._listeners[session_id] = queue
        return queue

    def unlisten(self, session_id: str, queue: Listener) -> None:
        if self._listeners.get(session_id) is queue:
            del self._listeners[session_id]

    # -- REST -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        directory: str | None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """``method path?directory=...``; the JSON answer (None when empty). Raises
        ``OpenCodeError`` on a non-2xx answer or a transport error."""
        params = {"directory": directory} if directory else None
        try:
            response = await self.client.request(
                method,
                path,
                params=params,
                json=body,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise OpenCodeError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise NotFound(f"{method} {path}: 404 {response.text[:300]}")
        if not response.is_success:
            raise OpenCodeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # -- background -----------------------------------------------------------------------
    async def _drain(self, lines: AsyncIterator[bytes]) -> None:
        # stdout must be read or the pipe fills; the server says nothing we need after "ready".
        async for _ in lines:
            pass
        await self.process.wait()
        logger.warning("opencode serve exited with %s", self.process.returncode)
        self._notify_all()

    async def _events(self) -> None:
        failures = 0
        while not self._stopped and self.process.returncode is None:
            try:
                async with aconnect_sse(
                    self.client, "GET", "/global/event", timeout=httpx.Timeout(None, connect=10.0)
                ) as source:
                    source.response.raise_for_status()
                    async for sse in source.aiter_sse():
                        failures = 0
                        self._dispatch(sse.data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken stream: reconnect, a few times
                logger.warning("opencode event stream: %s: %s", type(exc).__name__, exc)
            failures += 1
            if failures > RECONNECTS:
                break
            await asyncio.sleep(0.2 * failures)
        if not self._stopped:
            self._stream_dead = True
            self._notify_all()

    def _dispatch(self, data: str) -> None:
        try:
            wrapped = json.loads(data)
        except ValueError:
            logger.warning("opencode event stream: not JSON: %.200s", data)
            return
        payload = wrapped.get("payload") if isinstance(wrapped, dict) else None
        if not isinstance(payload, dict):
            logger.warning("opencode event stream: no payload: %.200s", data)
            return
        kind = payload.get("type")
        if kind == "server.connected":
            self._connected.set()
        session = session_of(payload)
        if session is None:
            if kind not in IGNORED_GLOBAL:
                logger.info("opencode: server-wide event ignored: %s", kind)
            return
        queue = self._listeners.get(session)
        if queue is not None:
            queue.put_nowait(payload)

    def _notify_all(self) -> None:
        listeners, self._listeners = self._listeners, {}
        for queue in listeners.values():
            queue.put_nowait(None)


class NotFound(OpenCodeError):
    """404: no such session, permission or question."""


async def _listening_url(lines: AsyncIterator[bytes]) -> str:
    async for raw in lines:
        line = raw.decode(errors="replace").strip()
        if READY_LINE in line:
            url = line.split(READY_LINE, 1)[1].strip()
            if url.startswith("http"):
                return url.rstrip("/")
            raise OpenCodeError(f"unexpected ready line: {line}")
    raise OpenCodeError("opencode serve exited before it was ready")
