"""Prompts that arrive while a turn runs are recorded at once and start in order when the turns
before them end (the session engine in process, over a real SQLite file and the mock agent)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sandbox_agent.agents import AgentSettings, Attachment
from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.sessions import (
    InvalidSessionRequest,
    QueueFull,
    RequestNotFound,
    SessionConfig,
    SessionEngine,
    TurnInProgress,
)
from sandbox_agent.sessions.session import MAX_QUEUED
from sandbox_agent.store import EventStore, open_store

SETTINGS = AgentSettings(mock_delay_ms=0)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[SessionEngine]:
    store = await open_store(f"sqlite:///{tmp_path / 'queue.db'}")
    engine = SessionEngine(store, settings=SETTINGS, root=str(tmp_path))
    try:
        yield engine
    finally:
        await engine.shutdown()
        await store.close()


async def until(
    store: EventStore,
    session_id: str,
    predicate: Callable[[list[UniversalEvent]], bool],
    timeout: float = 10,
) -> None:
    """Wait until ``predicate(events)`` holds for the session's stored events."""
    events: list[UniversalEvent] = []
    async with asyncio.timeout(timeout):
        async for event in store.subscribe(session_id, after=0):
            events.append(event)
            if predicate(events):
                return


def asked(count: int) -> Callable[[list[UniversalEvent]], bool]:
    return lambda events: types(events).count("permission.requested") == count


def types(events: list[UniversalEvent]) -> list[str]:
    return [event.type for event in events]


def user_texts(events: list[UniversalEvent]) -> list[str]:
    return [
        event.data["item"]["content"][0]["text"]
        for event in events
        if event.type == "item.completed" and event.data["item"]["role"] == "user"
    ]


def ended_turns(events: list[UniversalEvent]) -> int:
    return sum(1 for event in events if event.type == "turn.ended")


async def test_a_prompt_during_a_turn_is_queued_and_starts_when_the_turn_ends(
    engine: SessionEngine, tmp_path: Path
) -> None:
    # Attachments are kept resolved.
    notes = await asyncio.to_thread(os.path.realpath, tmp_path / "notes.txt")
    live = await engine.create("s", SessionConfig(agent="mock"))
    first = await live.send_message("permission")  # the mock's turn waits for two answers
    assert first.queue_id is None
    await until(engine.store, "s", asked(2))
    queued = await live.send_message("echo second", [Attachment(path="notes.txt")])
    third = await live.send_message("echo third")
    assert (queued.queue_id, queued.position) == ("q_1", 1)
    assert (third.queue_id, third.position) == ("q_2", 2)
    events = await engine.store.read("s")
    assert types(events)[-2:] == ["prompt.queued", "prompt.queued"]
    assert events[-2].data["attachments"] == [{"path": notes, "mime": None, "filename": None}]
    assert [p.queue_id for p in live.state.queued] == ["q_1", "q_2"]

    for permission_id in list(live.state.pending_permissions):
        await live.reply_permission(permission_id, "once")
    await until(engine.store, "s", lambda es: ended_turns(es) == 3)
    events = await engine.store.read("s")
    assert user_texts(events) == ["permission", "echo second", "echo third"]
    dequeued = [e for e in events if e.type == "prompt.dequeued"]
    assert [(e.data["queue_id"], e.data["reason"]) for e in dequeued] == [
        ("q_1", "started"),
        ("q_2", "started"),
    ]
    # Each starts right after the turn before it ended, and its turn follows at once.
    for event in dequeued:
        at = events.index(event)
        assert events[at - 1].type == "turn.ended"
        assert events[at + 1].type == "turn.started"
    # The queued prompt keeps its attachment.
    second = next(e for e in events if e.type == "item.completed" and "second" in str(e.data))
    assert second.data["item"]["content"][1] == {
        "type": "file_ref",
        "path": notes,
        "action": "read",
        "diff": None,
    }
    state = replay(events)
    assert state.queued == [] and state.anomalies == [] and state.status == "idle"


async def test_if_idle_refuses_a_prompt_during_a_turn_and_records_nothing(
    engine: SessionEngine,
) -> None:
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(engine.store, "s", asked(2))
    before = await engine.store.last_sequence("s")
    with pytest.raises(TurnInProgress):
        await live.send_message("echo no", if_idle=True)
    assert await engine.store.last_sequence("s") == before
    # Idle again: if_idle starts the turn as any prompt does.
    await live.cancel()
    accepted = await live.send_message("echo yes", if_idle=True)
    assert accepted.queue_id is None


async def test_a_waiting_prompt_can_be_cancelled_and_the_others_keep_their_order(
    engine: SessionEngine,
) -> None:
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(engine.store, "s", asked(2))
    for text in ("echo a", "echo b", "echo c"):
        await live.send_message(text)
    await live.cancel_queued("q_2")
    with pytest.raises(RequestNotFound) as missing:
        await live.cancel_queued("q_2")
    assert missing.value.kind == "queued_prompt"
    for permission_id in list(live.state.pending_permissions):
        await live.reply_permission(permission_id, "once")
    await until(engine.store, "s", lambda es: ended_turns(es) == 3)
    events = await engine.store.read("s")
    assert user_texts(events) == ["permission", "echo a", "echo c"]
    assert replay(events).anomalies == []


async def test_cancel_ends_the_turn_and_the_prompts_waiting_behind_it(
    engine: SessionEngine,
) -> None:
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(engine.store, "s", asked(2))
    await live.send_message("echo a")
    await live.send_message("echo b")
    await live.cancel()
    await asyncio.sleep(0.1)  # nothing may start after the cancel
    events = await engine.store.read("s")
    assert types(events)[-3:] == ["prompt.dequeued", "prompt.dequeued", "turn.ended"]
    assert {e.data["reason"] for e in events[-3:-1]} == {"cancelled"}
    assert events[-1].data["reason"] == "cancelled"
    assert user_texts(events) == ["permission"]
    state = replay(events)
    assert state.queued == [] and state.status != "running"


async def test_terminate_drops_the_waiting_prompts_before_the_session_ends(
    engine: SessionEngine,
) -> None:
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(engine.store, "s", asked(2))
    await live.send_message("echo a")
    await live.terminate()
    events = await engine.store.read("s")
    dequeued = [e for e in events if e.type == "prompt.dequeued"]
    assert [e.data["reason"] for e in dequeued] == ["session_ended"]
    assert events[-1].type == "session.ended"
    assert replay(events).queued == []
    with pytest.raises(InvalidSessionRequest):
        await live.send_message("echo later")


async def test_the_queue_survives_a_restart_and_drains_after_recovery(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    store = await open_store(url)
    engine = SessionEngine(store, settings=SETTINGS)
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(store, "s", asked(2))
    await live.send_message("echo after the restart")
    # The server goes away with the turn open and the prompt waiting.
    await engine.shutdown()
    await store.close()

    store = await open_store(url)
    engine = SessionEngine(store, settings=SETTINGS)
    try:
        assert await engine.recover() == ["s"]
        await until(store, "s", lambda es: ended_turns(es) == 2)
        events = await store.read("s")
        reasons = [e.data["reason"] for e in events if e.type == "turn.ended"]
        assert reasons == ["interrupted", "completed"]
        assert user_texts(events) == ["permission", "echo after the restart"]
        assert replay(events).queued == []
    finally:
        await engine.shutdown()
        await store.close()


async def test_the_queue_holds_max_queued_prompts_and_refuses_one_more(
    engine: SessionEngine,
) -> None:
    live = await engine.create("s", SessionConfig(agent="mock"))
    await live.send_message("permission")
    await until(engine.store, "s", asked(2))
    for n in range(MAX_QUEUED):
        assert (await live.send_message(f"echo {n}")).position == n + 1
    before = await engine.store.last_sequence("s")
    with pytest.raises(QueueFull) as full:
        await live.send_message("echo one too many")
    assert full.value.limit == MAX_QUEUED
    assert await engine.store.last_sequence("s") == before
    await live.cancel()
    assert live.state.queued == []
