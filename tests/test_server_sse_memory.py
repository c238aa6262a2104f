"""SSE clients that stop reading cost the server a bounded amount of memory each
(``server/limits.py`` ``SSE_CLIENT_BYTES``), measured as the RSS of a real server process over
a real SQLite store, with real sockets that connect and never read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from sandbox_agent.events import EventDraft
from sandbox_agent.server.limits import SSE_CLIENT_BYTES, SSE_LARGE_EVENT_COPIES, SSE_PAGE_BYTES
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.server import ServerProcess, rss_bytes

#: What the server may grow by besides the clients' bound: allocator arenas and heap
#: fragmentation, the frame cache (8 MB at most, ``server/sse.py``), uvicorn's per-connection
#: state.
SLACK_BYTES = 24 * 1024 * 1024
MIB = 1024 * 1024


async def _fill(url: str, session_id: str, count: int, size: int) -> None:
    """A stored session of ``count`` text deltas of ``size`` characters each."""
    async with await open_store(url) as store:
        await store.create_session(SessionRecord(id=session_id, agent="mock"))
        item = {"item_id": "big", "kind": "message", "role": "assistant", "status": "in_progress"}
        drafts = [EventDraft(type="item.started", data={"item": item})]
        drafts += [
            EventDraft(
                type="item.delta", data={"item_id": "big", "delta": f"{n:08d}" * (size // 8)}
            )
            for n in range(count)
        ]
        for start in range(0, len(drafts), 500):
            await store.append(session_id, drafts[start : start + 500], expected_sequence=start)


def settled_rss(pid: int, seconds: float = 0.5) -> int:
    """The RSS once it stopped growing for ``seconds`` (the largest value seen)."""
    peak, since = rss_bytes(pid), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.1)
        now = rss_bytes(pid)
        if now > peak:
            peak, since = now, time.monotonic()
    return peak


@contextlib.contextmanager
def stalled_readers(port: int, session_id: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that ask for the session's SSE stream and then never read (a
    4 KiB receive buffer, so that the kernel takes little of the stream off the server)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(
                f"GET /v1/sessions/{session_id}/events/sse HTTP/1.1\r\nHost: test\r\n\r\n".encode()
            )
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _read_all(client: httpx.Client, session_id: str, last: int) -> int:
    """Read the whole stream once, as a client that keeps up would; the events it got."""
    got = 0
    with connect_sse(client, "GET", f"/v1/sessions/{session_id}/events/sse") as source:
        for sse in source.iter_sse():
            got += 1
            assert json.loads(sse.data)["sequence"] == got
            if got == last:
                break
    return got


def check_stalled_readers(tmp_path: Path, readers: int, events: int, size: int) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(_fill(url, "big", events, size))
    last = events + 1
    server = ServerProcess(url, tmp_path / "log").start()
    try:
        client = server.client()
        assert server.pid is not None
        # Warm up: the code paths, the store's caches, the frame cache.
        assert _read_all(client, "big", last) == last
        before = settled_rss(server.pid)
        with stalled_readers(server.port, "big", readers) as sockets:
            during = settled_rss(server.pid, seconds=1.0)
            for sock in sockets:  # every stream is open and was answered
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # The server serves on, and every stalled stream's memory is given back.
        assert _read_all(client, "big", last) == last
        after = settled_rss(server.pid)
        per_reader = SSE_CLIENT_BYTES + (
            SSE_LARGE_EVENT_COPIES * size if size > SSE_PAGE_BYTES else 0
        )
        bound = before + readers * per_reader + SLACK_BYTES
        figures = (
            f"RSS before {before / MIB:.0f} MiB, with {readers} stalled readers "
            f"{during / MIB:.0f} MiB, after {after / MIB:.0f} MiB; bound {bound / MIB:.0f} MiB"
        )
        print(figures)
        assert during <= bound, figures
        assert after <= bound, figures
    finally:
        client.close()
        server.stop()


def test_stalled_sse_readers_cost_a_bounded_amount_each(tmp_path: Path) -> None:
    """5 stalled readers on a 6 MB session (before: each held its page of 1,000 events, 6 MB
    decoded, and the same again as one joined write)."""
    check_stalled_readers(tmp_path, readers=5, events=600, size=10_000)


@pytest.mark.slow
def test_20_stalled_sse_readers_on_a_30_mb_session(tmp_path: Path) -> None:
    """Issue #15's case: 20 readers that never read, a session of 30 MB."""
    check_stalled_readers(tmp_path, readers=20, events=3000, size=10_000)


@pytest.mark.slow
def test_stalled_sse_readers_of_large_events(tmp_path: Path) -> None:
    """Events larger than a page (1 MB each): a stalled reader holds one of them."""
    check_stalled_readers(tmp_path, readers=10, events=40, size=1_000_000)
