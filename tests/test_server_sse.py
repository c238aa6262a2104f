"""SSE from a real server: framing, resume with Last-Event-ID, pings, slow readers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import OK_PROMPT, create, events_of, running, wait_for


def _read(
    client: httpx.Client,
    session_id: str,
    *,
    until: int,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stop_after: int | None = None,
    pause: float = 0.0,
) -> list[dict[str, Any]]:
    """Events of the SSE stream up to sequence ``until`` (or ``stop_after`` of them)."""
    got: list[dict[str, Any]] = []
    with connect_sse(
        client,
        "GET",
        f"/v1/sessions/{session_id}/events/sse",
        headers=dict(headers or {}),
        params=params,
    ) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            event = json.loads(sse.data)
            assert sse.id == str(event["sequence"]) and sse.event == "message"
            got.append(event)
            if pause and len(got) == 1:
                time.sleep(pause)
            if event["sequence"] >= until or (stop_after and len(got) >= stop_after):
                break
    return got


def test_resume_with_last_event_id_gives_every_event_once(tmp_path: Path) -> None:
    with running(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log") as server:  # noqa: SIM117
        with server.client() as client:
            create(client, "r1")
            client.post("/v1/sessions/r1/messages", json={"message": OK_PROMPT})
            wait_for(client, "r1", "turn.ended")
            first = _read(client, "r1", until=10**9, stop_after=5)  # then the connection drops
            client.post("/v1/sessions/r1/messages", json={"message": "markdown"})
            stored = wait_for(client, "r1", "turn.ended", after=8)
            last = stored[-1]["sequence"]
            # The header wins over the offset.
            rest = _read(
                client,
                "r1",
                until=last,
                headers={"Last-Event-ID": str(first[-1]["sequence"])},
                params={"offset": 0},
            )
            everything = first + rest
            assert [e["sequence"] for e in everything] == list(range(1, last + 1))
            assert everything == events_of(client, "r1")
            check_stream(everything)
            from_offset = _read(client, "r1", until=last, params={"offset": 6})
            assert from_offset[0]["sequence"] == 7


def test_idle_stream_gets_pings(tmp_path: Path) -> None:
    with (
        running(
            f"sqlite:///{tmp_path / 's.db'}",
            tmp_path / "log",
            args=["--no-token", "--sse-ping-seconds", "0.2"],
        ) as server,
        server.client() as client,
    ):
        create(client, "p1")
        lines: list[str] = []
        with client.stream("GET", "/v1/sessions/p1/events/sse") as response:
            for line in response.iter_lines():
                lines.append(line)
                if lines.count(": ping") >= 2:
                    break
        assert lines[0] == ": connected"
        assert any(line.startswith("id: 1") for line in lines)


async def _fill(url: str, session_id: str, count: int) -> None:
    """A stored session of ``count`` events: one long streamed answer."""
    async with await open_store(url) as store:
        await store.create_session(SessionRecord(id=session_id, agent="mock"))
        item = {"item_id": "big", "kind": "message", "role": "assistant", "status": "in_progress"}
        drafts = [
            EventDraft(
                type="session.started", data={"metadata": {"agent": "mock"}}, source="daemon"
            ),
            EventDraft(type="turn.started", data={"turn_id": "t1"}, source="daemon"),
            EventDraft(type="item.started", data={"item": item}),
        ]
        drafts += [
            EventDraft(type="item.delta", data={"item_id": "big", "delta": "x"})
            for _ in range(count - 5)
        ]
        done = {
            **item,
            "status": "completed",
            "content": [{"type": "text", "text": "x" * (count - 5)}],
        }
        drafts += [
            EventDraft(type="item.completed", data={"item": done}),
            EventDraft(
                type="turn.ended", data={"turn_id": "t1", "reason": "completed"}, source="daemon"
            ),
        ]
        for start in range(0, len(drafts), 1000):
            await store.append(session_id, drafts[start : start + 1000], expected_sequence=start)


def test_a_slow_reader_behind_10k_events_gets_them_all(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(_fill(url, "big", 10_000))
    with running(url, tmp_path / "log") as server, server.client() as client:
        # Live turns while the reader lags behind the backlog.
        def talk() -> None:
            with server.client() as writer:
                for _ in range(5):
                    events = events_of(writer, "big", offset=10_000)
                    after = events[-1]["sequence"] if events else 10_000
                    writer.post("/v1/sessions/big/messages", json={"message": OK_PROMPT})
                    wait_for(writer, "big", "turn.ended", after=after)

        thread = threading.Thread(target=talk)
        thread.start()
        got = _read(client, "big", until=10**9, stop_after=10_001 + 5 * 7, pause=1.0)
        thread.join()
        assert [e["sequence"] for e in got] == list(range(1, len(got) + 1))
        stored = events_of(client, "big")
        assert len(stored) == len(got) and got == stored
        check_stream(stored)
