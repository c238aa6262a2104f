"""Forking a session in process: the copy (``sessions/fork.py``, a property over any stream and
any fork point), and how the engine continues a fork with the mock agent: natively at the
source's end, by replay before it, after a turn that ran, offline forks on first use."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.agents import AgentSettings
from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.replay import SequencePastEnd
from sandbox_agent.replay.restore import HEADER
from sandbox_agent.sessions import (
    AgentNotInstalled,
    InvalidSessionRequest,
    LiveSession,
    SessionConfig,
    SessionEngine,
)
from sandbox_agent.sessions.fork import fork_stream
from sandbox_agent.store import (
    EventStore,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    open_store,
)
from sandbox_agent.testing.consistency import check_events
from sandbox_agent.testing.databases import driver_params, fresh_url
from sandbox_agent.testing.strategies import drafts

_ids = itertools.count()


def content(event: UniversalEvent) -> dict[str, Any]:
    """What a fork copies of an event: all but its ids and its session."""
    return event.model_dump(mode="json", exclude={"event_id", "session_id"})


async def _copy_matches(store: EventStore, stream: list[EventDraft], at: int) -> None:
    n = next(_ids)
    source, fork = f"src{n}", f"fork{n}"
    await store.create_session(SessionRecord(id=source, agent="mock"))
    await store.append(source, stream)
    record = await fork_stream(store, source, fork, min(at, len(stream)))
    upto = min(at, len(stream))
    assert record.metadata["forked_from"]["sequence"] == upto
    original = await store.read(source, limit=10_000)
    copied = await store.read(fork, limit=10_000)
    assert [content(e) for e in copied] == [content(e) for e in original[:upto]]
    assert {e.session_id for e in copied} == {fork}
    assert not {e.event_id for e in copied} & {e.event_id for e in original}
    # The source is left as it was.
    assert [content(e) for e in await store.read(source, limit=10_000)] == [
        content(e) for e in original
    ]


@pytest.mark.parametrize("driver", driver_params(("memory", "sqlite", "postgres")))
def test_a_fork_holds_the_sources_events_one_to_n_for_any_stream_and_n(
    driver: str, tmp_path: Path
) -> None:
    with fresh_url(driver, tmp_path) as url:
        _check_copies(url)


def _check_copies(url: str) -> None:
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(open_store(url))

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(stream=st.lists(drafts(), min_size=1, max_size=25), at=st.integers(1, 30))
    def prop(stream: list[EventDraft], at: int) -> None:
        loop.run_until_complete(_copy_matches(store, stream, at))

    try:
        prop()
    finally:
        loop.run_until_complete(store.close())
        loop.close()


# -- the engine, with the mock agent ------------------------------------------------------------
@pytest.fixture
async def engine() -> AsyncIterator[SessionEngine]:
    async with await open_store("memory://") as store:
        engine = SessionEngine(store, settings=AgentSettings(mock_delay_ms=0))
        try:
            yield engine
        finally:
            await engine.shutdown()


async def _turn(live: LiveSession, message: str) -> list[UniversalEvent]:
    """Send ``message`` and return the turn's events once it ended."""
    before = live.last_sequence
    await live.send_message(message)
    events: list[UniversalEvent] = []
    async with asyncio.timeout(10):
        async for event in live._store.subscribe(live.id, after=before):
            events.append(event)
            if event.type == "turn.ended":
                return events
    raise AssertionError("unreachable")


def _said(events: list[UniversalEvent]) -> list[str]:
    return [
        part["text"]
        for e in events
        if e.type == "item.completed" and e.data["item"]["role"] == "assistant"
        for part in e.data["item"]["content"]
        if part["type"] == "text"
    ]


def _resumed(events: list[UniversalEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "session.resumed"]


async def _source(engine: SessionEngine) -> LiveSession:
    live = await engine.create("src", SessionConfig(agent="mock"))
    await _turn(live, "echo the password is swordfish")
    await _turn(live, "echo second answer")
    return live


async def test_a_fork_at_the_end_continues_on_a_native_fork(engine: SessionEngine) -> None:
    source = await _source(engine)
    end = source.last_sequence
    fork = await engine.fork("src", "f", None)
    assert fork.fork_resumed is not None and fork.fork_resumed.native_resume is True
    assert fork.record.metadata["forked_from"] == {
        "session_id": "src",
        "sequence": end,
        "native_session_id": "mock-src",
        "native_resume": True,
    }
    events = await engine.store.read("f", limit=1000)
    mark = events[end]
    assert (mark.type, mark.data["reason"], mark.data["native_resume"]) == (
        "session.resumed",
        "forked",
        True,
    )
    assert mark.native_session_id == "mock-f"  # its own native session, not the source's
    answer = await _turn(fork, "echo third")
    assert _said(answer) == ["third"]  # no replay before the prompt: the agent has it
    check_events(await engine.store.read("f", limit=1000))
    # The source goes on as it was, on its own native session.
    assert [e.native_session_id for e in await _turn(source, "echo more")][-1] == "mock-src"


async def test_a_fork_before_the_end_is_restored_by_replay(engine: SessionEngine) -> None:
    await _source(engine)
    first_turn_end = next(
        e.sequence for e in await engine.store.read("src", limit=1000) if e.type == "turn.ended"
    )
    fork = await engine.fork("src", "f", first_turn_end)
    assert fork.fork_resumed is not None
    assert (fork.fork_resumed.native_resume, fork.fork_resumed.replayed_events) == (False, 2)
    assert fork.record.metadata["forked_from"]["native_session_id"] is None
    (said,) = _said(await _turn(fork, "what was the password?"))
    # The mock echoes what it got: the replay of the fork's conversation, then the prompt.
    assert said.startswith(HEADER) and "swordfish" in said and "second answer" not in said
    assert said.endswith("what was the password?")
    assert _said(await _turn(fork, "echo once")) == ["once"]  # the replay goes once
    check_events(await engine.store.read("f", limit=1000))


async def test_a_fork_of_a_running_turn_copies_what_is_stored_and_closes_it(
    tmp_path: Path,
) -> None:
    async with await open_store("memory://") as store:
        engine = SessionEngine(store, settings=AgentSettings(mock_delay_ms=50))
        try:
            source = await engine.create("src", SessionConfig(agent="mock"))
            await source.send_message("markdown")
            async with asyncio.timeout(10):
                async for event in store.subscribe("src"):
                    if event.type == "item.delta":
                        break
            assert source.state.open_turn is not None
            fork = await engine.fork("src", "f")
            point = fork.record.metadata["forked_from"]["sequence"]
            events = await store.read("f", limit=1000)
            tail = [(e.type, e.data.get("reason")) for e in events[point:]]
            # Replay, since the source's native session was mid-turn; the copy's turn closed.
            assert tail[0] == ("session.resumed", "forked")
            assert ("turn.ended", "interrupted") in tail
            assert fork.record.metadata["forked_from"]["native_resume"] is False
            assert fork.state.open_turn is None
            check_events(events)
            # The source's turn runs on to its end untouched.
            async with asyncio.timeout(10):
                async for event in store.subscribe("src", after=point):
                    if event.type == "turn.ended":
                        assert event.data["reason"] == "completed"
                        break
        finally:
            await engine.shutdown()


async def test_a_fork_of_an_ended_session_reopens(engine: SessionEngine) -> None:
    source = await _source(engine)
    await source.terminate()
    fork = await engine.fork("src", "f")
    assert fork.state.ended is None
    assert _said(await _turn(fork, "echo alive")) == ["alive"]
    events = await engine.store.read("f", limit=1000)
    assert [r["reason"] for r in _resumed(events)] == ["forked"]
    check_events(events)


async def test_an_offline_fork_continues_when_first_used_or_recovered(
    engine: SessionEngine,
) -> None:
    await _source(engine)
    store = engine.store
    ended = [e.sequence for e in await store.read("src", limit=1000) if e.type == "turn.ended"]
    await fork_stream(store, "src", "lazy", ended[0])  # what sandbox-agent fork does
    await fork_stream(store, "src", "recovered")
    assert len(_resumed(await store.read("lazy", limit=1000))) == 0
    live = await engine.get("lazy")
    said = _said(await _turn(live, "echo hi"))
    assert said[0].startswith(HEADER)
    events = await store.read("lazy", limit=1000)
    assert [(r["reason"], r["native_resume"]) for r in _resumed(events)] == [("forked", False)]
    check_events(events)
    # A server starting on the store recovers the active fork: continuing it is its recovery.
    fresh = SessionEngine(store, settings=AgentSettings(mock_delay_ms=0))
    try:
        assert "recovered" in await fresh.recover()
        events = await store.read("recovered", limit=1000)
        assert [(r["reason"], r["native_resume"]) for r in _resumed(events)] == [("forked", True)]
        check_events(events)
    finally:
        await fresh.shutdown()


async def test_bad_forks_are_refused_and_leave_nothing(engine: SessionEngine) -> None:
    source = await _source(engine)
    with pytest.raises(SessionNotFound):
        await engine.fork("nope", "f")
    with pytest.raises(SessionExists):
        await engine.fork("src", "src")
    with pytest.raises(InvalidSessionRequest):
        await engine.fork("src", "f", 0)
    with pytest.raises(SequencePastEnd):
        await engine.fork("src", "f", source.last_sequence + 1)
    assert await engine.store.get_session("f") is None
    assert engine.loaded("f") is None


async def test_a_prompt_to_an_offline_fork_of_a_running_turn_starts_at_once(
    engine: SessionEngine,
) -> None:
    await _source(engine)
    await fork_stream(engine.store, "src", "mid", 3)  # inside the first turn
    live = await engine.get("mid")
    accepted = await live.send_message("echo after")
    assert accepted.queue_id is None  # the copy's turn was closed first, not waited for
    events = await engine.store.read("mid", limit=1000)
    assert [(e.type, e.data.get("reason")) for e in events[3:6]] == [
        ("session.resumed", "forked"),
        ("item.completed", None),
        ("turn.ended", "interrupted"),
    ]
    async with asyncio.timeout(10):
        async for event in engine.store.subscribe("mid", after=events[-1].sequence):
            if event.type == "turn.ended":
                break
    check_events(await engine.store.read("mid", limit=1000))


async def test_a_fork_of_a_session_whose_agent_is_not_installed_is_refused(
    tmp_path: Path,
) -> None:
    async with await open_store("memory://") as store:
        await store.create_session(SessionRecord(id="src", agent="amp"))
        started = EventDraft(type="session.started", data={"metadata": {}}, source="daemon")
        await store.append("src", [started])
        engine = SessionEngine(store, settings=AgentSettings(agents_dir=tmp_path / "none"))
        try:
            with pytest.raises(AgentNotInstalled):
                await engine.fork("src", "f")
            assert await store.get_session("f") is None
        finally:
            await engine.shutdown()
