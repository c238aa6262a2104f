"""The contract, group 'concurrency': concurrent appenders to one session, as asyncio tasks and
on several stores over one database, a ``read_all`` follower, deletes during appends.

With ``expected_sequence`` exactly one writer wins each race and the others get
``SequenceConflict``; without it, whole batches interleave. Either way the stream stays
1..N with no gap or duplicate, and ``read_all`` positions follow the streams' order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest

from sandbox_agent.events import UniversalEvent
from sandbox_agent.store import EventStore, SessionNotFound, open_store
from sandbox_agent.testing.appender import free, race
from sandbox_agent.testing.contract._frame import ContractFrame, group, keeps
from sandbox_agent.testing.support import deltas, dumped, new_session, promise


def check_race(events: list[UniversalEvent], reports: list[Any], rounds: int, size: int) -> None:
    """The stream after ``race`` writers: each round won once, whole, by one writer."""
    name = "one winner per expected sequence"
    assert [e.sequence for e in events] == list(range(1, rounds * size + 1)), promise(
        "gapless sequences", [e.sequence for e in events]
    )
    winners: dict[int, str] = {}
    for report in reports:
        writer = report["writer"]
        won = {int(r): seqs for r, seqs in report["won"].items()}
        lost = {r for r, _, _ in report["conflicts"]}
        assert len(won) + len(report["conflicts"]) == rounds, promise(name, writer)
        assert not lost & set(won), promise(name, writer)
        for r, seqs in won.items():
            assert r not in winners, promise(name, f"round {r} won by {winners[r]} and {writer}")
            winners[r] = writer
            assert seqs == list(range(r * size + 1, (r + 1) * size + 1)), promise(name, seqs)
        for r, expected, actual in report["conflicts"]:
            # Rejected because the round had been won: the stream had moved past it.
            assert expected == r * size, promise(name, (r, expected, actual))
            assert actual >= expected + size and actual % size == 0, promise(
                "SequenceConflict reports the actual sequence", (r, expected, actual)
            )
    assert sorted(winners) == list(range(rounds)), promise(name, "a round nobody won")
    for r, writer in winners.items():
        ids = [e.event_id for e in events[r * size : (r + 1) * size]]
        assert ids == [f"{writer}/r{r}/{j}" for j in range(size)], promise(
            "a batch is stored whole", (r, ids)
        )


def check_free(events: list[UniversalEvent], reports: list[Any], size: int) -> None:
    """The stream after ``free`` writers: whole batches, each writer's in its order."""
    total = sum(len(report["placed"]) for report in reports) * size
    assert [e.sequence for e in events] == list(range(1, total + 1)), promise(
        "gapless sequences", [e.sequence for e in events]
    )
    assert len({e.event_id for e in events}) == total, promise("no duplicate events")
    for start in range(0, total, size):
        label = events[start].data["item_id"]  # "<writer>/b<k>"
        assert [e.event_id for e in events[start : start + size]] == [
            f"{label}/{j}" for j in range(size)
        ], promise("a batch is stored whole", f"batch {label} is not whole at {start + 1}")
    by_id = {e.event_id: e.sequence for e in events}
    for report in reports:
        writer = report["writer"]
        firsts = []
        for k, seqs in sorted((int(k), s) for k, s in report["placed"].items()):
            assert seqs == [by_id[f"{writer}/b{k}/{j}"] for j in range(size)], promise(
                "append returns what is stored", (writer, k)
            )
            firsts.append(seqs[0])
        assert firsts == sorted(firsts), promise(
            "a writer's batches keep their order", f"{writer}'s batches out of order"
        )


async def check_projection_and_log(store: EventStore, session_id: str, total: int) -> None:
    """The session row counts ``total`` events, and the global log has them in stream order."""
    record = await store.get_session(session_id)
    assert record is not None
    assert (record.last_sequence, record.event_count) == (total, total), promise(
        "the session row follows its events", record
    )
    positions: list[tuple[int, int]] = []
    after = 0
    while chunk := await store.read_all(after_position=after, limit=500):
        positions.extend(
            (p.position, p.event.sequence) for p in chunk if p.event.session_id == session_id
        )
        after = chunk[-1].position
    # Within a stream, positions grow with sequences: commit order is stream order.
    assert [seq for _, seq in positions] == list(range(1, total + 1)), promise(
        "read_all positions follow commit order", positions
    )
    assert all(a[0] < b[0] for a, b in itertools.pairwise(positions)), promise(
        "read_all positions follow commit order", positions
    )


@group("concurrency")
class ConcurrencyContract(ContractFrame):
    async def shared_stores(self, n: int) -> tuple[str, list[EventStore]]:
        """``n`` stores opened on one fresh URL (skips when stores do not share data)."""
        url = await self.new_store_url()
        if not self.shares_data(url):
            pytest.skip("stores opened on one URL do not share their data here")
        return url, [await open_store(url) for _ in range(n)]

    @keeps("one winner per expected sequence")
    async def test_concurrent_appenders_with_expected_sequence_never_both_win(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        rounds, size = 25, 3
        reports = await asyncio.gather(*(race(store, sid, f"w{i}", rounds, size) for i in range(8)))
        check_race(await store.read(sid), reports, rounds, size)
        await check_projection_and_log(store, sid, rounds * size)

    @keeps("a batch is stored whole")
    async def test_concurrent_appenders_without_expected_sequence_interleave_whole_batches(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        size = 4
        reports = await asyncio.gather(*(free(store, sid, f"w{i}", 20, size) for i in range(8)))
        check_free(await store.read(sid), reports, size)
        await check_projection_and_log(store, sid, 8 * 20 * size)

    @keeps("one winner per expected sequence")
    async def test_appenders_on_separate_connections_keep_the_stream_whole(self) -> None:
        _, stores = await self.shared_stores(4)
        try:
            sid = await new_session(stores[0])
            rounds, size = 25, 2
            reports = await asyncio.gather(
                *(race(s, sid, f"w{i}", rounds, size) for i, s in enumerate(stores))
            )
            check_race(await stores[1].read(sid), reports, rounds, size)
            await check_projection_and_log(stores[3], sid, rounds * size)
            other = await new_session(stores[0])
            reports = await asyncio.gather(
                *(free(s, other, f"f{i}", 15, 3) for i, s in enumerate(stores))
            )
            check_free(await stores[2].read(other), reports, 3)
            await check_projection_and_log(stores[3], other, 4 * 15 * 3)
        finally:
            for s in stores:
                await s.close()

    @keeps("read_all never skips an event that commits late")
    async def test_read_all_follower_never_skips_an_event_that_commits_late(self) -> None:
        # Writers on their own connections append to different sessions while a follower pages
        # through read_all: an event whose position is taken early but that commits late must
        # not be passed over.
        url = await self.new_store_url()
        writers = [await open_store(url) for _ in range(4 if self.shares_data(url) else 1)]
        try:
            sids = [await new_session(writers[0]) for _ in range(4)]
            batches, size = 40, 3
            total = len(sids) * batches * size
            seen: list[tuple[int, str]] = []

            async def follow() -> None:
                after = 0
                async with asyncio.timeout(60):
                    while len(seen) < total:
                        chunk = await writers[0].read_all(after_position=after, limit=7)
                        if not chunk:
                            await asyncio.sleep(0.001)
                            continue
                        seen.extend((p.position, p.event.event_id) for p in chunk)
                        after = chunk[-1].position

            async def write(i: int) -> None:
                await free(writers[i % len(writers)], sids[i], f"w{i}", batches, size)

            await asyncio.gather(follow(), *(write(i) for i in range(len(sids))))
            positions = [p for p, _ in seen]
            assert all(a < b for a, b in itertools.pairwise(positions))
            assert len({event_id for _, event_id in seen}) == total
            everything = await writers[0].read_all(limit=total + 1)
            assert [(p.position, p.event.event_id) for p in everything] == seen
        finally:
            for s in writers:
                await s.close()

    @keeps("a deleted session leaves no event behind")
    async def test_deleting_a_session_while_it_is_appended_to_leaves_no_event_behind(
        self,
    ) -> None:
        url = await self.new_store_url()
        writer = await open_store(url)
        deleter = await open_store(url) if self.shares_data(url) else writer
        try:
            for r in range(20):
                sid = f"s{r}"
                await new_session(writer, sid)

                async def append_until_gone(sid: str = sid) -> None:
                    with contextlib.suppress(SessionNotFound):
                        while True:
                            await writer.append(sid, deltas(3))
                            await asyncio.sleep(0)  # the memory driver never yields by itself

                appending = asyncio.create_task(append_until_gone())
                await asyncio.sleep(0.002 * (r % 5))
                assert await deleter.delete_session(sid) is True
                await asyncio.wait_for(appending, 10)
                left = [p.event for p in await deleter.read_all(limit=1_000_000)]
                assert [e for e in left if e.session_id == sid] == [], f"round {r}"
                # The id is free again, with an empty stream.
                await new_session(deleter, sid)
                assert await deleter.read(sid) == []
                await deleter.append(sid, deltas(1), expected_sequence=0)
                await deleter.delete_session(sid)
        finally:
            await writer.close()
            if deleter is not writer:
                await deleter.close()

    @keeps("a subscriber sees appends of another store")
    async def test_a_caught_up_subscriber_sees_appends_of_another_store(self) -> None:
        # A subscriber served from its own store's tail: appends by another store on the same
        # database (another process, a replica), interleaved with its own, must still reach
        # it, each once. ``subscriber_url`` may make the subscriber's store poll.
        url = await self.new_store_url()
        if not self.shares_data(url):
            pytest.skip("stores opened on one URL do not share their data here")
        async with (
            await open_store(self.subscriber_url(url)) as here,
            await open_store(url) as there,
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
