"""Agent servers shared by every session of one sandbox-agent server.

Codex (``codex app-server``) and OpenCode (``opencode serve``) run one process for all sessions.
``SharedServers`` starts each on first use, hands the same one to every adapter, and stops them
all when the server shuts down. A server that died is started again on the next ``get``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar


class SharedServer(Protocol):
    """What ``SharedServers`` needs of a shared agent server."""

    @property
    def alive(self) -> bool: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=SharedServer)


class SharedServers:
    """The shared agent servers of one sandbox-agent server, by key."""

    def __init__(self) -> None:
        self._servers: dict[str, SharedServer] = {}
        self._lock = asyncio.Lock()

    async def get(self, key: str, start: Callable[[], Awaitable[S]]) -> S:
        """The running server under ``key``, started with ``start()`` when none is alive."""
        async with self._lock:
            server = self._servers.get(key)
            if server is not None and server.alive:
                return server  # type: ignore[return-value]
            if server is not None:
                await server.stop()
            started = await start()
            self._servers[key] = started
            return started

    def running(self, key: str) -> SharedServer | None:
        server = self._servers.get(key)
        return server if server is not None and server.alive else None

    async def stop_all(self) -> None:
        async with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.stop()
