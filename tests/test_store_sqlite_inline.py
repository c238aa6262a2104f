"""SQLite's inline appends (``store/sqlite.py``): small appends run on the event loop's thread
on a connection that never waits, so another writer holding the lock must send them to the
writer thread (the loop keeps running), and the WAL they write is checkpointed in that thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from sandbox_agent.store import StoreConfigError, StoreError, open_store
from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.support import deltas, dumped, new_session


async def test_an_append_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with await open_store(sqlite_url(path)) as store:
        sid = await new_session(store)
        first = await store.append(sid, deltas(2))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        try:
            append = asyncio.create_task(store.append(sid, deltas(3), expected_sequence=2))
            # The loop runs on (20 turns of it) while the append waits: an append that blocked
            # the loop would let no turn run until it had given up (done, with an error).
            for _ in range(20):
                await asyncio.sleep(0.01)
                assert not append.done()
        finally:
            other.execute("COMMIT")
            other.close()
        second = await asyncio.wait_for(append, 10)
        assert [e.sequence for e in second] == [3, 4, 5]
        assert dumped(await store.read(sid)) == dumped(first + second)


async def test_inline_appends_leave_a_bounded_wal(tmp_path: Path) -> None:
    # The inline connection never checkpoints; without the writer thread's checkpoints the
    # WAL would hold every page written (about 100 MB here; about 20 MB with them).
    path = tmp_path / "s.db"
    async with await open_store(sqlite_url(path)) as store:
        sid = await new_session(store)
        for n in range(2000):
            await store.append(sid, deltas(5, prefix="x" * 2000), expected_sequence=5 * n)
            await asyncio.sleep(0)  # let a checkpoint in the writer thread run
        assert await store.last_sequence(sid) == 10_000
        wal = await asyncio.to_thread(os.path.getsize, f"{path}-wal")
    assert wal < 40_000_000, wal


@pytest.mark.parametrize("value", ["-1", "many"])
async def test_a_bad_inline_append_max_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(StoreConfigError, match="inline_append_max"):
        await open_store(f"{sqlite_url(tmp_path / 's.db')}?inline_append_max={value}")


@pytest.mark.parametrize("inline", [True, False])
async def test_an_append_to_a_database_without_tables_says_to_migrate(
    tmp_path: Path, inline: bool
) -> None:
    url = sqlite_url(tmp_path / "s.db") + ("" if inline else "?inline_append_max=0")
    async with await open_store(url, migrate=False) as store:
        with pytest.raises(StoreError, match="sandbox-agent db upgrade"):
            await store.append("s1", deltas(1))
