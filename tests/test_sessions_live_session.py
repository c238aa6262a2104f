"""``LiveSession`` in process, where a test can widen the window between a commit and the live
state catching up with it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sandbox_agent.agents import AgentSettings
from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.sessions import LiveSession
from sandbox_agent.store import EventStore, SessionRecord, open_store


def _slow_returning_append(store: EventStore) -> None:
    """Make ``store.append`` return a few loop turns after it committed and woke subscribers,
    as SQLite's does (the connection thread hands the result back later)."""
    append = store.append

    async def append_then_linger(
        session_id: str, drafts: Sequence[EventDraft], expected_sequence: int | None = None
    ) -> list[UniversalEvent]:
        stored = await append(session_id, drafts, expected_sequence)
        for _ in range(5):
            await asyncio.sleep(0)
        return stored

    store.append = append_then_linger  # type: ignore[method-assign]


async def test_a_message_sent_as_soon_as_turn_ended_is_streamed_is_accepted() -> None:
    async with await open_store("memory://") as store:
        record = await store.create_session(SessionRecord(id="s", agent="mock"))
        live = await LiveSession.load(store, record, settings=AgentSettings(mock_delay_ms=0))
        started = EventDraft(type="session.started", data={"metadata": {}}, source="daemon")
        await live.append([started])
        _slow_returning_append(store)
        ended = 0
        async with asyncio.timeout(10):
            await live.send_message("Reply with exactly the single word OK.")
            async for event in store.subscribe("s", after=live.last_sequence):
                if event.type != "turn.ended":
                    continue
                ended += 1
                if ended == 3:
                    break
                # What a client does on seeing turn.ended: the next prompt, at once.
                await live.send_message("Reply with exactly the single word OK.")
        await live.stop_agent()
    assert ended == 3
