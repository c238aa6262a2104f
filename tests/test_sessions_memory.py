"""A loaded session's memory does not grow with its history (issue 15, the soak): the live
session keeps a working state and a bounded memory of items, and folds the rest from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sandbox_agent.agents import AgentSettings
from sandbox_agent.replay import replay, state_at
from sandbox_agent.sessions import LiveSession, SessionConfig, SessionEngine
from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.faults import FaultyStore


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


async def test_every_whole_state_fold_of_an_engine_takes_a_turn_in_one_limit(
    tmp_path: Path,
) -> None:
    # A due snapshot of a working session is a whole fold too: outside the limit, as before,
    # such folds ran beside GET .../state's and took the server's peak with them (the soak).
    async with FaultyStore(await open_store(sqlite_url(tmp_path / "store.db"))) as store:
        engine = SessionEngine(
            store,
            settings=AgentSettings(mock_delay_ms=0),
            root=str(tmp_path),
            snapshot_every=2,  # every append of s2's turn makes a snapshot due
            state_folds=1,
        )
        try:
            first = await engine.create("s1", SessionConfig(agent="mock"))
            second = await engine.create("s2", SessionConfig(agent="mock"))
            await _turns(store, first, 1)
            finished: list[str] = []

            async def fold_first() -> None:
                await engine.state_at("s1")
                finished.append("fold of s1")

            store.delay("load_snapshot", 1.5, session_id="s1")
            store.delay("read", 1.5, session_id="s1")
            folding = asyncio.create_task(fold_first())
            await asyncio.sleep(0.5)  # s1's fold holds the one turn, inside its slow read
            assert not folding.done()
            await _turns(store, second, 1)
            finished.append("turn of s2")
            await folding
            assert finished == ["fold of s1", "turn of s2"]
            # And the snapshots the turn waited for were written.
            assert await store.snapshot_keys("s2")
        finally:
            await engine.shutdown()
