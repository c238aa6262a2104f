"""The contract, group 'subscribe': stored then live events, wake-ups, close, deletes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sandbox_agent.events import UniversalEvent
from sandbox_agent.store import (
    EventStore,
    SessionNotFound,
)
from sandbox_agent.testing.contract._frame import ContractFrame, group, keeps
from sandbox_agent.testing.contract.processes import TOTAL, check_report, write_stream
from sandbox_agent.testing.subscriber import consume
from sandbox_agent.testing.support import (
    deltas,
    dumped,
    new_session,
    subscription,
    take,
)


@group("subscribe")
class SubscribeContract(ContractFrame):
    async def test_subscribe_yields_stored_then_live_events_in_order(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        stored = await store.append(sid, deltas(3))
        reader = asyncio.create_task(take(store, sid, 8))
        await asyncio.sleep(0.05)
        stored += await store.append(sid, deltas(2))
        await asyncio.sleep(0.02)
        stored += await store.append(sid, deltas(3))
        assert dumped(await reader) == dumped(stored)

    async def test_subscribe_starts_after_the_given_sequence(self, store: EventStore) -> None:
        sid = await new_session(store)
        stored = await store.append(sid, deltas(5))
        assert dumped(await take(store, sid, 2, after=3)) == dumped(stored[3:])

    async def test_subscribe_pages_through_a_long_stream(self, store: EventStore) -> None:
        sid = await new_session(store)
        stored = await store.append(sid, deltas(25))
        got: list[UniversalEvent] = []
        async with asyncio.timeout(10):
            async with contextlib.aclosing(subscription(store, sid, page_size=4)) as events:
                async for event in events:
                    got.append(event)
                    if len(got) == 25:
                        break
        assert dumped(got) == dumped(stored)

    async def test_subscribe_wakes_at_once_on_an_append_in_this_process(
        self, store: EventStore
    ) -> None:
        # With the driver's polling off, only the append itself can wake the parked consumer:
        # each event must arrive (the timeout is a liveness bound, not a measure of speed).
        sid = await new_session(store)
        poll_interval = store.driver.poll_interval
        store.driver.poll_interval = None
        arrivals: asyncio.Queue[UniversalEvent] = asyncio.Queue()

        async def consume() -> None:
            async for event in store.subscribe(sid):
                arrivals.put_nowait(event)

        consumer = asyncio.create_task(consume())
        try:
            for _ in range(5):
                await asyncio.sleep(0.1)  # the consumer is parked waiting
                [appended] = await store.append(sid, deltas(1))
                assert await asyncio.wait_for(arrivals.get(), 30) == appended
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            store.driver.poll_interval = poll_interval

    async def test_close_ends_subscribers(self) -> None:
        # Many subscribers, started a millisecond apart so that whatever polling a driver does
        # is at every phase when the store closes: none may raise, all must end.
        for _ in range(5):
            store = await self.make_store()
            sid = await new_session(store)
            await store.append(sid, deltas(2))
            got: list[list[int]] = []
            all_caught_up = asyncio.Event()

            async def consume(
                delay: float,
                store: EventStore = store,
                sid: str = sid,
                got: list[list[int]] = got,
                all_caught_up: asyncio.Event = all_caught_up,
            ) -> None:
                await asyncio.sleep(delay)
                seen: list[int] = []
                got.append(seen)
                async for event in store.subscribe(sid):
                    seen.append(event.sequence)
                    if len(got) == 50 and all(len(s) == 2 for s in got):
                        all_caught_up.set()

            consumers = [asyncio.create_task(consume(i * 0.001)) for i in range(50)]
            # Close once every subscriber has both events (on a loaded machine that can take
            # longer than the stagger), each then waiting at its own phase of the driver's loop.
            async with asyncio.timeout(10):
                await all_caught_up.wait()
            await asyncio.sleep(0.01)
            await store.close()
            async with asyncio.timeout(5):
                await asyncio.gather(*consumers)  # they end, without an error
            assert got == [[1, 2]] * 50

    async def test_subscribe_to_an_unknown_session_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound):
            await take(store, "nope", 1, timeout=5)

    async def test_subscriber_of_a_deleted_session_gets_session_not_found(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(1))
        reader = asyncio.create_task(take(store, sid, 5))
        await asyncio.sleep(0.1)
        await store.delete_session(sid)
        with pytest.raises(SessionNotFound):
            await asyncio.wait_for(reader, 5)

    @keeps("a subscriber sees every event once, in order")
    async def test_subscribers_in_this_process_see_every_event_once_in_order(
        self, store: EventStore
    ) -> None:
        # Two subscribers while a writer appends 10,000 events; the slow one sleeps now and
        # then so that it falls thousands of events behind.
        sid = await new_session(store)
        readers = [asyncio.create_task(consume(store, sid, TOTAL, p)) for p in ("fast", "slow")]
        await asyncio.sleep(0.05)
        await write_stream(store, sid, TOTAL)
        async with asyncio.timeout(60):
            fast, slow = await asyncio.gather(*readers)
        check_report(fast, TOTAL)
        check_report(slow, TOTAL)
        assert slow["lag"] >= 1000, slow
