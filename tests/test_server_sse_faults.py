"""An SSE stream whose store fails while it reads ends cleanly: the events so far, a final
``event: error`` frame with the problem JSON, then the end of the chunked body (never a cut
chunk). A real server process on Postgres behind the TCP cutting proxy, read through a raw
socket so that the chunked framing itself is checked."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.databases import (
    drop_schema,
    new_schema_name,
    pg_base_url,
    pg_url,
    require_postgres,
)
from sandbox_agent.testing.faults import CuttingProxy
from sandbox_agent.testing.server import ServerProcess

# The server retries the store before it gives up (about 10 s): the slow suite.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@contextmanager
def proxy_in_thread(target_port: int) -> Iterator[tuple[CuttingProxy, asyncio.AbstractEventLoop]]:
    """A ``CuttingProxy`` served by an event loop of its own thread (the test is sync)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = asyncio.run_coroutine_threadsafe(CuttingProxy(target_port).start(), loop).result()
    try:
        yield proxy, loop
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _fill(url: str, session_id: str, count: int, size: int) -> None:
    async with await open_store(url) as store:
        await store.create_session(SessionRecord(id=session_id, agent="mock"))
        drafts = [
            EventDraft(type="item.delta", data={"item_id": "big", "delta": "x" * size})
            for _ in range(count)
        ]
        for start in range(0, count, 500):
            await store.append(session_id, drafts[start : start + 500], expected_sequence=start)


def _dechunk(body: bytes) -> tuple[bytes, bool]:
    """The payload of a chunked body, and whether it ended with the last (empty) chunk."""
    payload = bytearray()
    while True:
        line, sep, rest = body.partition(b"\r\n")
        if not sep:
            return bytes(payload), False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return bytes(payload), rest.startswith(b"\r\n")
        if len(rest) < size + 2:
            return bytes(payload + rest[:size]), False
        payload += rest[:size]
        body = rest[size + 2 :]


def _frames(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            frames.append(fields)
    return frames


def test_a_stream_whose_store_goes_down_ends_with_an_error_frame(tmp_path: Path) -> None:
    require_postgres()
    schema = new_schema_name()
    port = int(pg_base_url().split("@")[1].split("/")[0].split(":")[1])
    asyncio.run(_fill(pg_url(schema), "s", 1000, 10_000))  # 10 MB: more than the sockets hold
    try:
        with proxy_in_thread(port) as (proxy, loop):
            via_proxy = pg_url(schema).replace(f":{port}/", f":{proxy.port}/")
            server = ServerProcess(via_proxy, tmp_path / "log").start()
            try:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(120)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"GET /v1/sessions/s/events/sse HTTP/1.1\r\nHost: test\r\n\r\n")
                received = b""
                while b"\nid: 20\n" not in received:  # some events went out
                    received += sock.recv(65536)
                assert received.startswith(b"HTTP/1.1 200"), received[:200]
                # The stream is under way and stalled on this socket; the store goes away for
                # good (no more connections either), then the client reads on.
                asyncio.run_coroutine_threadsafe(proxy.close(), loop).result()
                while chunk := sock.recv(1 << 20):
                    received += chunk
                sock.close()
            finally:
                server.stop()
    finally:
        asyncio.run(drop_schema(schema))
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    payload, ended = _dechunk(body)
    assert ended, f"the chunked body was cut: ...{body[-200:]!r}"
    frames = _frames(payload.decode())
    events = [json.loads(f["data"]) for f in frames if "id" in f]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert 20 <= len(events) < 1000  # the store failed mid-stream
    last: dict[str, Any] = frames[-1]
    assert last.get("event") == "error", last
    problem = json.loads(last["data"])
    assert problem["status"] == 503 and problem["type"].startswith("urn:sandbox-agent:error:store")
    assert problem["title"] and problem["detail"]
