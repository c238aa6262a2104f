"""The contract, group 'processes': subscribers and appenders in other processes.

While a writer appends 10,000 events, subscribers in two child processes see every event
exactly once and in order, one of them sleeping so that it falls thousands of events behind;
appenders in three child processes race with ``expected_sequence`` (one winner per round) or
interleave whole batches. The children are ``python -m sandbox_agent.testing.subscriber`` and
``... .appender``, which open the store's URL themselves.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sandbox_agent.events import EventDraft
from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.children import expect_line, json_result, spawn, stop
from sandbox_agent.testing.contract._frame import ContractFrame, group, keeps
from sandbox_agent.testing.contract.concurrency import (
    check_free,
    check_projection_and_log,
    check_race,
)
from sandbox_agent.testing.subscriber import event_id_for, expected_digest
from sandbox_agent.testing.support import new_session, promise

#: Events the subscriber tests write.
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


def check_report(report: dict[str, Any], total: int) -> None:
    """A subscriber's report: every event of 1..total once, in order, with its id."""
    name = "a subscriber sees every event once, in order"
    assert report["problems"] == [], promise(name, report["problems"])
    assert report["last"] == total, promise(name, f"stopped at {report['last']} of {total}")
    assert report["digest"] == expected_digest(total), promise(name, "the events differ")


@group("processes")
class ProcessesContract(ContractFrame):
    async def run_writers(
        self, url: str, sid: str, mode: str, n: int, size: int, writers: int
    ) -> list[Any]:
        start = self.tmp_path / f"start-{mode}"
        children = [
            await spawn("appender", url, sid, f"p{i}", mode, n, size, start) for i in range(writers)
        ]
        try:
            for child in children:
                await expect_line(child, "ready")
            start.touch()
            return [await json_result(child) for child in children]
        finally:
            await stop(children)

    @keeps("a subscriber sees every event once, in order")
    async def test_subscribers_in_other_processes_see_every_event_once_in_order(self) -> None:
        url = await self.process_store_url()
        async with await open_store(url) as store:
            sid = await new_session(store)
            children = [
                await spawn("subscriber", url, sid, TOTAL, pace) for pace in ("fast", "slow")
            ]
            try:
                for child in children:
                    await expect_line(child, "ready")
                await asyncio.sleep(0.2)  # both are parked in subscribe on an empty stream
                await write_stream(store, sid, TOTAL)
                fast, slow = [await json_result(child, timeout=180) for child in children]
            finally:
                await stop(children)
        check_report(fast, TOTAL)
        check_report(slow, TOTAL)
        assert slow["lag"] >= 1000, slow  # it did fall far behind

    @keeps("one winner per expected sequence")
    async def test_appenders_in_several_processes_with_expected_sequence_never_both_win(
        self,
    ) -> None:
        url = await self.process_store_url()
        async with await open_store(url) as store:
            sid = await new_session(store)
        rounds, size = 40, 3
        reports = await self.run_writers(url, sid, "race", rounds, size, 3)
        async with await open_store(url) as store:
            check_race(await store.read(sid), reports, rounds, size)
            await check_projection_and_log(store, sid, rounds * size)
        assert sum(len(r["conflicts"]) for r in reports) == 2 * rounds

    @keeps("a batch is stored whole")
    async def test_appenders_in_several_processes_interleave_whole_batches(self) -> None:
        url = await self.process_store_url()
        async with await open_store(url) as store:
            sid = await new_session(store)
        size = 5
        reports = await self.run_writers(url, sid, "free", 40, size, 3)
        async with await open_store(url) as store:
            check_free(await store.read(sid), reports, size)
            await check_projection_and_log(store, sid, 3 * 40 * size)
