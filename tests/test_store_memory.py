"""What only the memory driver does: optional caps that evict the oldest data, counted and
logged, never silently."""

from __future__ import annotations

import logging

import pytest

from sandbox_agent.store import open_store
from sandbox_agent.store.memory import MemoryDriver
from sandbox_agent.testing.support import deltas, new_session


async def test_memory_store_evicts_the_oldest_session_beyond_max_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await open_store("memory://?max_sessions=2")
    assert isinstance(store.driver, MemoryDriver)
    for sid in ("s1", "s2", "s3"):
        await new_session(store, sid)
    assert await store.get_session("s1") is None
    assert [s.id for s in (await store.list_sessions()).items] == ["s3", "s2"]
    assert store.driver.evicted_sessions == 1
    assert any("s1" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def test_memory_store_evicts_the_oldest_events_beyond_max_events_per_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await open_store("memory://", max_events_per_session=5)
    assert isinstance(store.driver, MemoryDriver)
    sid = await new_session(store)
    await store.append(sid, deltas(4))
    stored = await store.append(sid, deltas(4))
    assert store.driver.evicted_events == 3
    assert any(r.levelno >= logging.WARNING for r in caplog.records)
    # The newest events are kept with their sequences; the stream goes on from there.
    assert [e.sequence for e in await store.read(sid)] == [4, 5, 6, 7, 8]
    assert [e.sequence for e in await store.read(sid, after=6)] == [7, 8]
    assert await store.read(sid, after=5, limit=1) == [stored[1]]
    assert await store.last_sequence(sid) == 8
    more = await store.append(sid, deltas(1), expected_sequence=8)
    assert more[0].sequence == 9
