"""Streams for the replay tests: the kit's builder and strategies, and writing streams into
stores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.store import EventStore, SessionRecord, open_store
from sandbox_agent.testing.streams import T0, Stream, canonical_session, make_event

__all__ = [
    "T0",
    "Stream",
    "canonical_session",
    "drafts_of",
    "make_event",
    "store_stream",
    "write_sqlite",
]


def drafts_of(events: Sequence[UniversalEvent]) -> list[EventDraft]:
    return [EventDraft.from_event(e) for e in events]


async def store_stream(
    store: EventStore, events: Sequence[UniversalEvent], agent: str = "mock"
) -> None:
    """Create the events' session in ``store`` and append them (ids and times kept)."""
    session_id = events[0].session_id
    if await store.get_session(session_id) is None:
        await store.create_session(SessionRecord(id=session_id, agent=agent))
    await store.append(session_id, drafts_of(events))


def write_sqlite(url: str, *streams: Sequence[UniversalEvent]) -> None:
    """Write streams into the store at ``url`` (for the CLI tests)."""

    async def go() -> None:
        async with await open_store(url) as store:
            for events in streams:
                await store_stream(store, events)

    asyncio.run(go())
