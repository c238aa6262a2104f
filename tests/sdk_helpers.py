"""Helpers of the SDK tests: a TCP proxy that cuts connections, and server-side reads."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from sandbox_agent.events import UniversalEvent


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port``; ``cut()`` resets every open connection
    (both sides), as a network failure would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.transport.abort()

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self.cuts += 1
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


def server_events(base_url: str, session_id: str, token: str | None = None) -> list[UniversalEvent]:
    """The server's stream of a session, with raw payloads (what the mirror copies)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(
        f"{base_url}/v1/sessions/{session_id}/events",
        params={"include_raw": "true"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [UniversalEvent.model_validate(e) for e in response.json()["events"]]


def same_stream(local: list[UniversalEvent], remote: list[UniversalEvent]) -> None:
    """The local copy is the server's stream: same events, same order, same sequences."""
    assert [e.sequence for e in local] == list(range(1, len(local) + 1))
    assert [_dump(e) for e in local] == [_dump(e) for e in remote]


def _dump(event: UniversalEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")
