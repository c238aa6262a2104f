"""A loaded session's memory does not grow with its history (issue 15, the soak): the live
session keeps a working state and a bounded memory of items, and folds the rest from the store."""

from __future__ import annotations

from pathlib import Path

from sandbox_agent.agents import AgentSettings
from sandbox_agent.replay import replay, state_at
from sandbox_agent.sessions import LiveSession, SessionConfig, SessionEngine
from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.databases import sqlite_url


async def _turns(store: EventStore, live: LiveSession, count: int) -> None:
    for _ in range(count):
        after = live.last_sequence
        await live.send_message("Reply with exactly the single word OK.")
        async for event in store.subscribe(live.id, after=after):
            if event.type == "turn.ended":
                break
        await live.settled_state()


def _retained(live: LiveSession) -> tuple[int, int]:
    """What the live session holds that could grow: its working state's JSON size and the
    normaliser's entries."""
    return len(live.state.to_json_text()), live.normaliser.remembered


async def test_a_loaded_sessions_memory_does_not_grow_with_its_history(tmp_path: Path) -> None:
    async with await open_store(sqlite_url(tmp_path / "store.db")) as store:
        engine = SessionEngine(
            store, settings=AgentSettings(mock_delay_ms=0), root=str(tmp_path), snapshot_every=500
        )
        try:
            live = await engine.create("s", SessionConfig(agent="mock"))
            await _turns(store, live, 200)  # 400 items: past the normaliser's window
            at_200 = _retained(live)
            await _turns(store, live, 300)
            at_500 = _retained(live)
            assert live.turn_count == 500
            # The digits of the counters may grow; nothing per turn or item.
            assert at_500[0] <= at_200[0] + 64, (at_200, at_500)
            assert at_500[1] <= at_200[1], (at_200, at_500)
            # Whatever needs the whole state folds it from the store, equal to a full replay.
            full = await live.full_state()
            everything = await store.read("s", after=0, limit=100_000)
            assert full == replay(everything)
            assert len(full.turns) == 500
            # The snapshots the live session wrote are full folds too.
            snapshot = await state_at(store, "s", 1000)
            assert snapshot == replay(everything[:1000])
        finally:
            await engine.shutdown()
