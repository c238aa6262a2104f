"""The kit's ``FaultyStore``: the calls it is told to fail, slow down or crash on, and only
those, over every driver (the plugin's ``event_store``); everything else is the real store."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import (
    EventStore,
    SessionRecord,
    StoreError,
    StoreUnavailable,
    open_store,
)
from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.faults import FaultyStore, StoreCall


def _draft(n: int) -> EventDraft:
    return EventDraft(type="item.started", data={"item": {"item_id": f"i{n}"}}, event_id=f"e{n}")


async def _faulty(store: EventStore) -> FaultyStore:
    faulty = FaultyStore(store)
    await faulty.create_session(SessionRecord(id="s", agent="mock"))
    await faulty.append("s", [EventDraft(type="session.started")])
    return faulty


async def test_a_failed_append_writes_nothing_and_the_next_one_goes_through(
    event_store: EventStore,
) -> None:
    faulty = await _faulty(event_store)
    faulty.fail("append")
    with pytest.raises(StoreUnavailable, match=r"insert_events \(session 's'\) failed: a fault"):
        await faulty.append("s", [_draft(1)])
    assert [e.type for e in await faulty.read("s")] == ["session.started"]
    [stored] = await faulty.append("s", [_draft(1)])
    assert stored.sequence == 2
    # A short page of a read is checked against the session's last sequence (StoreCorrupt on a
    # gap): those lookups aside, the record is the failed insert, the read, the insert.
    assert [c for c in faulty.calls if c.primitive != "select_last_sequence"][-3:] == [
        StoreCall("insert_events", "s", "fail"),
        StoreCall("select_events", "s", None),
        StoreCall("insert_events", "s", None),
    ]


async def test_an_append_failed_after_commit_is_stored_and_its_retry_is_idempotent(
    event_store: EventStore,
) -> None:
    faulty = await _faulty(event_store)
    faulty.fail("append", after_commit=True)
    with pytest.raises(StoreUnavailable):
        await faulty.append("s", [_draft(1)], expected_sequence=1)
    assert [e.event_id for e in await faulty.read("s")][1:] == ["e1"]
    # The writer did not hear back: it retries the same batch, which is found stored.
    [again] = await faulty.append("s", [_draft(1)], expected_sequence=1)
    assert again.sequence == 2 and await faulty.last_sequence("s") == 2
    assert StoreCall("insert_events", "s", "fail_after_commit") in faulty.calls


async def test_faults_pick_calls_by_operation_skip_times_session_and_error(
    event_store: EventStore,
) -> None:
    faulty = await _faulty(event_store)
    await faulty.create_session(SessionRecord(id="other", agent="mock"))
    boom = StoreError("disk full")
    faulty.fail("read", skip=1, times=2, error=boom, session_id="s")
    await faulty.read("s")  # skipped
    await faulty.read("other")  # another session
    for _ in range(2):
        with pytest.raises(StoreError, match="disk full") as raised:
            await faulty.read("s")
        assert raised.value is boom
    await faulty.read("s")  # times spent
    faulty.fail("get_session", times=None)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await faulty.get_session("s")
    faulty.clear()
    assert (await faulty.get_session("s")) is not None
    with pytest.raises(ValueError, match="no store operation 'apend'; one of: append, "):
        faulty.fail("apend")


async def test_a_delay_slows_the_chosen_calls_only(event_store: EventStore) -> None:
    faulty = await _faulty(event_store)
    faulty.delay("read", 0.2, times=1)
    # Which calls slept is in the record (no upper bound on a duration: a loaded machine may
    # take its time over any call); the chosen one slept its 0.2 s at least.
    await faulty.last_sequence("s")
    assert faulty.calls[-1].fault is None
    started = time.monotonic()
    await faulty.read("s")
    assert time.monotonic() - started >= 0.2
    assert _last_select(faulty) == StoreCall("select_events", "s", "delay")
    await faulty.read("s")
    assert _last_select(faulty) == StoreCall("select_events", "s", None)  # times=1: once only


def _last_select(faulty: FaultyStore) -> StoreCall:
    """The last ``select_events`` call (a read's short page is followed by a look at the last
    sequence, which is not the call under test)."""
    return [c for c in faulty.calls if c.primitive == "select_events"][-1]


@pytest.mark.parametrize("after_commit", [False, True], ids=["before", "after-commit"])
async def test_subscribers_of_a_faulty_store_see_every_committed_append(
    event_store: EventStore, after_commit: bool
) -> None:
    faulty = await _faulty(event_store)

    async def follow(count: int) -> list[str]:
        seen: list[str] = []
        async for event in faulty.subscribe("s"):
            seen.append(event.event_id)
            if len(seen) == count:
                break
        return seen

    following = asyncio.create_task(follow(2))
    await asyncio.sleep(0.05)
    faulty.fail("append", after_commit=after_commit)
    with pytest.raises(StoreUnavailable):
        await faulty.append("s", [_draft(1)])
    if not after_commit:
        await asyncio.sleep(0.05)
        assert not following.done()  # nothing was written
        await faulty.append("s", [_draft(1)])
    # Committed, so a subscriber hears of it (as it would from the database), lost ack or not.
    assert (await asyncio.wait_for(following, 5))[1:] == ["e1"]


CRASHING = """
import asyncio, sys
from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.faults import FaultyStore

async def main() -> None:
    store = FaultyStore(await open_store(sys.argv[1])).crash_after("append", nth=2)
    await store.create_session(SessionRecord(id="s", agent="mock"))
    for n in range(1, 4):
        draft = EventDraft(type="item.started", data={"item": {"item_id": str(n)}})
        await store.append("s", [draft])
        print("appended", n, flush=True)

asyncio.run(main())
"""


def test_crash_after_kills_the_process_once_the_nth_append_committed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "crash.db")
    done = subprocess.run(
        [sys.executable, "-c", CRASHING, url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split("\n")[:-1] == ["appended 1"]  # nothing ran after the 2nd commit

    async def stored() -> int:
        async with await open_store(url) as store:
            return await store.last_sequence("s")

    assert asyncio.run(stored()) == 2
