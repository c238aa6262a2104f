"""Promise 5 for ``subscribe`` under load: while a writer appends 10,000 events, subscribers
in other processes (SQLite, Postgres; memory: in this process) see every event exactly once
and in order, including one that sleeps so that it falls thousands of events behind."""

from __future__ import annotations

import asyncio
import random

import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import EventStore, open_store

from helpers.children import expect_line, json_result, spawn
from helpers.databases import PERSISTENT_DRIVERS, driver_params
from helpers.subscriber import consume, event_id_for, expected_digest
from store_contract import new_session

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
