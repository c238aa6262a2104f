"""Store faults mid-turn (issue #15, item 2): a store that cannot be reached is retried with
bounded backoff; past the bound the turn's agent is stopped, and once the store answers again
the session records ``error`` + ``turn.ended {reason: error}``, is idle, and takes the next
prompt. Meanwhile routes answer 503 ``store_unavailable`` with ``Retry-After`` and
``/v1/health`` says so.

In process (the default run): the session engine over a real SQLite file behind the kit's
``FaultyStore``; the drivers' own errors through the kit's ``CuttingProxy`` (Postgres) and a
full tmpfs (SQLite). End to end (``slow``): a real server process over Postgres through the
proxy, and over SQLite on a tmpfs that fills up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sandbox_agent.agents import AgentSettings
from sandbox_agent.events import UniversalEvent
from sandbox_agent.sessions import SessionConfig, SessionEngine
from sandbox_agent.sessions.store_retry import StoreRetry
from sandbox_agent.store import (
    EventStore,
    StoreUnavailable,
    open_store,
)
from sandbox_agent.testing.consistency import check_events, server_events
from sandbox_agent.testing.databases import (
    drop_schema,
    new_schema_name,
    pg_base_url,
    pg_url,
    require_postgres,
    sqlite_url,
)
from sandbox_agent.testing.faults import CuttingProxy, FaultyStore, fill_disk, small_disk
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess, problem

#: A mock turn of ten events, one every ``mock_delay_ms``.
LONG_TURN = "markdown"
#: Short bounds for the in-process tests (the server runs with the defaults).
FAST = StoreRetry(seconds=0.3, first=0.02, most=0.1, probe=0.05)


# -- helpers ---------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def engine_over(
    tmp_path: Path, mock_delay_ms: int
) -> AsyncIterator[tuple[SessionEngine, FaultyStore]]:
    inner = await open_store(sqlite_url(tmp_path / "store.db"))
    store = FaultyStore(inner)
    engine = SessionEngine(
        store, settings=AgentSettings(mock_delay_ms=mock_delay_ms), root=str(tmp_path)
    )
    try:
        yield engine, store
    finally:
        await engine.shutdown()
        await store.close()


async def until(
    store: EventStore,
    session_id: str,
    predicate: Callable[[list[UniversalEvent]], bool],
    timeout: float = 30,
) -> list[UniversalEvent]:
    """The session's stored events once ``predicate`` holds for them (``timeout``: a safety
    net against a hang, not a bound under test)."""
    async with asyncio.timeout(timeout):
        while True:
            events = await store.read(session_id)
            if predicate(events):
                return events
            await asyncio.sleep(0.02)


async def eventually(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``condition()`` holds (``timeout``: a safety net, not a bound under test)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state of the engine, no event to wait on
            await asyncio.sleep(0.02)


def types(events: list[UniversalEvent]) -> list[str]:
    return [e.type for e in events]


def turns_ended(events: list[UniversalEvent]) -> list[str]:
    return [e.data["reason"] for e in events if e.type == "turn.ended"]


def assert_ended_by_the_store(written: list[Any]) -> None:
    """What the recovery wrote (events or their JSON): ``error {code: store_unavailable}``,
    the turn's open items closed, ``turn.ended {reason: error}`` last."""
    kinds = [e["type"] if isinstance(e, dict) else e.type for e in written]
    data = [e["data"] if isinstance(e, dict) else e.data for e in written]
    assert kinds[0] == "error" and data[0]["code"] == "store_unavailable", kinds
    assert kinds[-1] == "turn.ended" and data[-1]["reason"] == "error", kinds
    assert set(kinds[1:-1]) <= {"item.completed", "permission.resolved", "question.resolved"}


def assistant_events(events: list[UniversalEvent]) -> int:
    return sum(1 for e in events if e.source == "agent")


# -- in process: retries ---------------------------------------------------------------------
@pytest.mark.parametrize("after_commit", [False, True], ids=["lost", "stored-ack-lost"])
async def test_a_short_outage_mid_turn_is_retried_and_the_turn_completes(
    tmp_path: Path, after_commit: bool
) -> None:
    async with engine_over(tmp_path, mock_delay_ms=0) as (engine, store):
        live = await engine.create("s", SessionConfig(agent="mock"))
        # The turn's start goes through; the agent's first batches fail three times (with
        # after_commit, each of those was stored and only its answer lost).
        store.fail("append", skip=1, times=3, after_commit=after_commit)
        await live.send_message(LONG_TURN)
        events = await until(store, "s", lambda ev: "turn.ended" in types(ev))
        assert turns_ended(events) == ["completed"]
        assert "error" not in types(events)
        assert (await live.settled_state()).open_turn is None and live.store_failure is None
        check_events(events)  # numbered 1..N, each event once: no retry stored twice
        assert len({e.event_id for e in events}) == len(events)
        await engine.check_store()


# -- in process: past the bound ----------------------------------------------------------------
async def test_a_store_down_past_the_bound_stops_the_agent_then_ends_the_turn_with_an_error(
    tmp_path: Path,
) -> None:
    async with engine_over(tmp_path, mock_delay_ms=30) as (engine, store):
        live = await engine.create("s", SessionConfig(agent="mock"))
        live.store_retry = FAST
        await live.send_message(LONG_TURN)
        await until(store, "s", lambda ev: assistant_events(ev) >= 2)
        store.fail("append", times=10**9)  # down: every append fails from now on
        # The bound passes: the agent is stopped.
        await eventually(lambda: live.store_failure is not None and live.adapter is None)
        with pytest.raises(StoreUnavailable):
            await engine.check_store()  # what /v1/health reports
        with pytest.raises(StoreUnavailable):
            await live.send_message(OK_PROMPT)  # one try while the session recovers
        stopped = await store.read("s")
        assert "turn.ended" not in types(stopped)
        await asyncio.sleep(0.3)  # several recovery tries, all failing: nothing is written
        assert await store.read("s") == stopped

        store.clear()  # the store answers again
        events = await until(store, "s", lambda ev: "turn.ended" in types(ev))
        assert_ended_by_the_store(events[len(stopped) :])
        assert (await live.settled_state()).open_turn is None and live.store_failure is None
        await engine.check_store()

        await live.send_message(OK_PROMPT)  # the next prompt works, with a new agent
        events = await until(store, "s", lambda ev: len(turns_ended(ev)) == 2)
        assert turns_ended(events) == ["error", "completed"]
        check_events(events)


# -- end to end: a real server process (slow) -----------------------------------------------
def unavailable(response: httpx.Response) -> dict[str, Any]:
    """The 503 ``store_unavailable`` problem, with its ``Retry-After``."""
    body = problem(response, 503, "store_unavailable")
    assert int(response.headers["Retry-After"]) >= 1, response.headers
    return body


async def server_events_json(client: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def poll(
    client: httpx.AsyncClient,
    session_id: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """The session's events over HTTP once ``predicate`` holds (``timeout``: a safety net)."""
    async with asyncio.timeout(timeout):
        while True:
            events = await server_events_json(client, session_id)
            if predicate(events):
                return events
            await asyncio.sleep(0.05)


async def outage_mid_turn(
    server: ServerProcess,
    down: Callable[[], object],
    up: Callable[[], object],
    *,
    reads_fail: bool,
) -> dict[str, float]:
    """A mock turn streams; the store goes down (``down``) after its second agent event and
    stays down past the session's retry bound; then it comes back (``up``). Returns what was
    measured (seconds)."""
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        response = await client.post("/v1/sessions/s", json={"agent": "mock"})
        assert response.status_code == 200, response.text
        response = await client.post("/v1/sessions/s/messages", json={"message": LONG_TURN})
        assert response.status_code == 204, response.text
        await poll(client, "s", lambda ev: sum(e["source"] == "agent" for e in ev) >= 2)

        down()
        went_down = time.monotonic()
        # A prompt now waits for the session's retries, then 503 (it is not recorded).
        started = time.monotonic()
        unavailable(await client.post("/v1/sessions/s/messages", json={"message": OK_PROMPT}))
        figures["message_503_after"] = time.monotonic() - started
        if reads_fail:
            unavailable(await client.get("/v1/sessions"))
            unavailable(await client.get("/v1/sessions/s"))
            unavailable(await client.get("/v1/sessions/s/events"))
        # Past the bound the session gave up on the store and waits for it: health says so.
        async with asyncio.timeout(60):
            while True:
                body = unavailable(await client.get("/v1/health"))
                if "waits for the store" in body["detail"]:
                    break
                await asyncio.sleep(0.1)
        figures["gave_up_after"] = time.monotonic() - went_down
        started = time.monotonic()
        unavailable(await client.post("/v1/sessions/s/messages", json={"message": OK_PROMPT}))
        figures["message_503_while_recovering"] = time.monotonic() - started

        up()
        came_back = time.monotonic()
        events = await poll(client, "s", lambda ev: "turn.ended" in [e["type"] for e in ev])
        figures["turn_ended_after_restore"] = time.monotonic() - came_back
        codes = [e["data"].get("code") if e["type"] == "error" else None for e in events]
        first = codes.index("store_unavailable")
        assert_ended_by_the_store(events[first:])
        assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == ["error"]
        assert (await client.get("/v1/health")).status_code == 200
        info = await client.get("/v1/sessions/s")
        assert info.status_code == 200 and info.json()["status"] == "idle", info.text

        # The next prompt works (a new agent), and the whole stream is gapless and valid.
        response = await client.post("/v1/sessions/s/messages", json={"message": OK_PROMPT})
        assert response.status_code == 204, response.text
        events = await poll(
            client, "s", lambda ev: [e["type"] for e in ev].count("turn.ended") == 2
        )
        assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == [
            "error",
            "completed",
        ]
    check_events(await server_events(server.url, "s"))
    return figures


@pytest.mark.slow
@pytest.mark.postgres
async def test_postgres_cut_mid_turn_under_a_real_server(tmp_path: Path) -> None:
    require_postgres()
    target = urlsplit(pg_base_url())
    schema = new_schema_name()
    try:
        async with CuttingProxy(target.port or 5432, target.hostname or "127.0.0.1") as proxy:
            url = pg_url(schema).replace(target.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
            server = ServerProcess(url, tmp_path / "server.log", mock_delay_ms=150)
            await asyncio.to_thread(server.start)
            try:
                figures = await outage_mid_turn(server, proxy.down, proxy.up, reads_fail=True)
            finally:
                await asyncio.to_thread(server.stop)
            print(f"postgres cut: {figures}")
    finally:
        await drop_schema(schema)


@pytest.mark.slow
async def test_a_full_disk_mid_turn_under_a_real_server(tmp_path: Path) -> None:
    with small_disk("16m") as disk:
        server = ServerProcess(
            sqlite_url(disk / "store.db"), tmp_path / "server.log", mock_delay_ms=150
        )
        await asyncio.to_thread(server.start)
        filler: list[Path] = []
        try:
            figures = await outage_mid_turn(
                server,
                lambda: filler.append(fill_disk(disk)),
                lambda: filler[0].unlink(),
                reads_fail=False,  # a full disk still serves reads
            )
        finally:
            if filler and filler[0].exists():
                filler[0].unlink()
            await asyncio.to_thread(server.stop)
        print(f"disk full: {figures}")
