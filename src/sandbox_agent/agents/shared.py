"""Agent servers shared by every session of one sandbox-agent server.

Codex (``codex app-server``) and OpenCode (``opencode serve``) run one process for all sessions.
``SharedServers`` starts each on first use, hands the same one to every adapter, and stops them
all when the server shuts down. A server that died is started again on the next ``get``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar


class SharedServer(Protocol):
    """What ``SharedServers`` needs of a shared agent server."""

    @property
    def alive(self) -> bool: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=SharedServer)


@dataclass(frozen=True)
class SharedStatus:
    """What ``GET /v1/agents`` shows of a shared server (``serverStatus``)."""

    #: ``error``: it died, and was not started again yet.
    status: Literal["running", "stopped", "error"]
    uptime_ms: int | None = None
    restart_count: int = 0
    #: The server's ``base_url`` / ``last_error`` attributes, when it has them.
    base_url: str | None = None
    last_error: str | None = None


class SharedServers:
    """The shared agent servers of one sandbox-agent server, by key."""

    def __init__(self) -> None:
        self._servers: dict[str, SharedServer] = {}
        self._lock = asyncio.Lock()
        self._started: dict[str, float] = {}
        self._restarts: dict[str, int] = {}

    async def get(self, key: str, start: Callable[[], Awaitable[S]]) -> S:
        """The running server under ``key``, started with ``start()`` when none is alive."""
        async with self._lock:
            server = self._servers.get(key)
            if server is not None and server.alive:
                return server  # type: ignore[return-value]
            if server is not None:
                await server.stop()
                self._restarts[key] = self._restarts.get(key, 0) + 1
            started = await start()
            self._servers[key] = started
            self._started[key] = time.monotonic()
            return started

    def running(self, key: str) -> SharedServer | None:
        server = self._servers.get(key)
        return server if server is not None and server.alive else None

    def status(self, key: str) -> SharedStatus:
        server = self._servers.get(key)
        if server is None:
            return SharedStatus("stopped", restart_count=self._restarts.get(key, 0))
        base_url = getattr(server, "base_url", None)
        last_error = getattr(server, "last_error", None)
        uptime = time.monotonic() - self._started.get(key, time.monotonic())
        return SharedStatus(
            "running" if server.alive else "error",
            uptime_ms=round(uptime * 1000) if server.alive else None,
            restart_count=self._restarts.get(key, 0),
            base_url=base_url if isinstance(base_url, str) else None,
            last_error=last_error if isinstance(last_error, str) else None,
        )

    async def stop_all(self) -> None:
        async with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.stop()
