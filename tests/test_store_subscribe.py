"""Promise 5 for ``subscribe`` under load: while a writer appends 10,000 events, subscribers
in other processes (SQLite, Postgres; memory: in this process) see every event exactly once
and in order, including one that sleeps so that it falls thousands of events behind; and a
subscriber sees what another store on the same database appends between its own appends."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.store import EventStore, open_store

from helpers.children import expect_line, json_result, spawn
from helpers.databases import PERSISTENT_DRIVERS, driver_params
from helpers.subscriber import consume, event_id_for, expected_digest
from store_contract import deltas, dumped, new_session, with_option

TOTAL = 10_000


async def write_stream(store: EventStore, session_id: str, total: int) -> None:
    """``total`` events in batches of 1-20, with the ids the subscribers expect."""
    rng = random.Random(7)
    last = 0
    while last < total:
        size = min(rng.randint(1, 20), total - last)
        drafts = [
            EventDraft(
                type="item.delta",
                data={"item_id": "i", "delta": f"{last + j}"},
                event_id=event_id_for(last + j),
            )
            for j in range(1, size + 1)
        ]
        await store.append(session_id, drafts, expected_sequence=last)
        last += size
        if rng.random() < 0.05:
            await asyncio.sleep(0.001)  # now and then let the subscribers catch up


def check_report(report: dict, total: int) -> None:
    assert report["problems"] == []
    assert report["last"] == total
    assert report["digest"] == expected_digest(total)


@pytest.mark.parametrize("driver", driver_params(PERSISTENT_DRIVERS), indirect=True)
async def test_subscribers_in_other_processes_see_every_event_once_in_order(
    store_url: str,
) -> None:
    async with await open_store(store_url) as store:
        sid = await new_session(store)
        children = [
            await spawn("subscriber.py", store_url, sid, TOTAL, p) for p in ("fast", "slow")
        ]
        try:
            for child in children:
                await expect_line(child, "ready")
            await asyncio.sleep(0.2)  # both are parked in subscribe on an empty stream
            await write_stream(store, sid, TOTAL)
            fast, slow = [await json_result(child, timeout=180) for child in children]
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
    check_report(fast, TOTAL)
    check_report(slow, TOTAL)
    assert slow["lag"] >= 1000, slow  # it did fall far behind


@pytest.mark.parametrize("driver", driver_params(("memory",)), indirect=True)
async def test_subscribers_in_this_process_see_every_event_once_in_order(
    store: EventStore,
) -> None:
    sid = await new_session(store)
    readers = [asyncio.create_task(consume(store, sid, TOTAL, p)) for p in ("fast", "slow")]
    await asyncio.sleep(0.05)
    await write_stream(store, sid, TOTAL)
    async with asyncio.timeout(60):
        fast, slow = await asyncio.gather(*readers)
    check_report(fast, TOTAL)
    check_report(slow, TOTAL)
    assert slow["lag"] >= 1000, slow


@pytest.mark.parametrize("driver", driver_params(PERSISTENT_DRIVERS), indirect=True)
async def test_a_caught_up_subscriber_sees_appends_of_another_store(store_url: str) -> None:
    # A subscriber served from its own store's tail (store/tail.py): appends by another
    # store on the same database (another process, a replica), interleaved with its own,
    # must still reach it, each once.
    # SQLite finds other processes' appends by polling; Postgres is told (NOTIFY), so a
    # poll slower than the test's timeout proves that the notice reaches the subscriber.
    poll = "0.05" if store_url.startswith("sqlite") else "60"
    async with (
        await open_store(with_option(store_url, f"poll_interval={poll}")) as here,
        await open_store(store_url) as there,
    ):
        sid = await new_session(here)
        got: list[UniversalEvent] = []
        arrived = asyncio.Event()

        async def consume() -> None:
            async for event in here.subscribe(sid):
                got.append(event)
                arrived.set()

        consumer = asyncio.create_task(consume())
        try:
            expected: list[UniversalEvent] = []
            for n, writer in enumerate([here, there, there, here, there, here, here, there]):
                expected += await writer.append(sid, deltas(1), expected_sequence=n)
                async with asyncio.timeout(10):
                    while len(got) < len(expected):
                        arrived.clear()
                        await arrived.wait()
                assert dumped(got) == dumped(expected), n
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
