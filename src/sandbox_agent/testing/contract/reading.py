"""The contract, groups 'reading' and 'round_trip': reads, the global log, and what goes in
coming out unchanged."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest

from sandbox_agent.events import EventDraft, UniversalEvent, format_time, new_event_id, utc_now
from sandbox_agent.events.versions import Upcasters
from sandbox_agent.store import (
    EventRow,
    EventStore,
    SessionChange,
    SessionNotFound,
    SessionRecord,
    StorageDriver,
    StoreCorrupt,
    StoredRow,
)
from sandbox_agent.testing.contract._frame import ContractFrame, group, keeps
from sandbox_agent.testing.support import (
    delta,
    deltas,
    dumped,
    ended,
    new_session,
    read_all_paged,
)


class _Losing:
    """The driver under test, losing the rows of some sequences on the way out: a damaged
    stream (a bad page, a restore that missed rows), whatever the driver."""

    def __init__(self, inner: StorageDriver, lost: set[int]) -> None:
        self._inner = inner
        self._lost = lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def attach(self, wake: Callable[[str], None]) -> None:
        pass  # the driver keeps its own store's callback

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        rows = await self._inner.select_events(session_id, after, limit)
        return [row for row in rows if int(row[0]) not in self._lost]


@group("reading")
class ReadingContract(ContractFrame):
    @keeps("a gap is StoreCorrupt, never a shorter stream")
    async def test_a_read_that_finds_a_gap_raises_store_corrupt(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(6))
        cases: list[tuple[set[int], int, int | None]] = [
            ({3}, 0, None),  # a hole inside the page
            ({3}, 1, 4),  # ... inside a limited page
            ({1}, 0, 2),  # the first event
            ({5, 6}, 2, None),  # the end: a page shorter than the session's row says
            ({6}, 5, 1),  # ... seen from a page of one
        ]
        for lost, after, limit in cases:
            lossy = EventStore(
                cast(StorageDriver, _Losing(store.driver, lost)), sealer=store.sealer
            )
            with pytest.raises(StoreCorrupt) as caught:
                await lossy.read(sid, after=after, limit=limit)
            assert caught.value.session_id == sid, caught.value
            assert caught.value.sequence == min(lost), caught.value
            assert f"{min(lost)}" in str(caught.value)
            found = await lossy.verify(sid)
            assert [(f.kind, f.sequence) for f in found] == [("gap", min(lost))], found
        # What lies before the damage reads whole; the store itself is sound.
        lossy = EventStore(cast(StorageDriver, _Losing(store.driver, {5})), sealer=store.sealer)
        assert [e.sequence for e in await lossy.read(sid, limit=4)] == [1, 2, 3, 4]
        assert await store.verify(sid) == []
        assert [e.sequence for e in await store.read(sid)] == [1, 2, 3, 4, 5, 6]

    async def test_read_returns_events_after_a_sequence_up_to_a_limit(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        stored = await store.append(sid, deltas(10))
        assert dumped(await store.read(sid)) == dumped(stored)
        assert dumped(await store.read(sid, after=4)) == dumped(stored[4:])
        assert dumped(await store.read(sid, after=4, limit=3)) == dumped(stored[4:7])
        assert dumped(await store.read(sid, limit=1)) == dumped(stored[:1])
        assert await store.read(sid, after=10) == []
        assert await store.read(sid, after=50) == []

    async def test_read_of_an_unknown_session_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound):
            await store.read("nope")
        with pytest.raises(SessionNotFound):
            await store.last_sequence("nope")

    async def test_read_paging_never_skips_or_repeats(self, store: EventStore) -> None:
        sid = await new_session(store)
        for size in (1, 4, 2, 7, 3, 3):
            await store.append(sid, deltas(size))
        stored = await store.read(sid)
        assert [e.sequence for e in stored] == list(range(1, 21))
        for limit in (1, 2, 3, 6, 7, 19, 20, 21):
            seen: list[UniversalEvent] = []
            after = 0
            while page := await store.read(sid, after=after, limit=limit):
                assert len(page) <= limit
                seen.extend(page)
                after = page[-1].sequence
            assert dumped(seen) == dumped(stored), limit

    async def test_read_all_positions_strictly_increase_in_commit_order_across_sessions(
        self, store: EventStore
    ) -> None:
        a, b, c = [await new_session(store, s) for s in ("a", "b", "c")]
        order: list[UniversalEvent] = []
        for sid, n in ((a, 2), (b, 1), (a, 1), (c, 3), (b, 2), (a, 1)):
            order.extend(await store.append(sid, deltas(n)))
        everything = await store.read_all()
        positions = [p.position for p in everything]
        assert all(x < y for x, y in itertools.pairwise(positions))
        assert positions[0] >= 1
        assert dumped([p.event for p in everything]) == dumped(order)
        tail = await store.read_all(after_position=positions[3])
        assert [p.position for p in tail] == positions[4:]
        assert await store.read_all(after_position=positions[-1]) == []

    async def test_read_all_paging_never_skips_or_repeats(self, store: EventStore) -> None:
        sids = [await new_session(store) for _ in range(3)]
        for i in range(12):
            await store.append(sids[i % 3], deltas(1 + i % 4))
        whole = await store.read_all(limit=10_000)
        assert len(whole) == sum(1 + i % 4 for i in range(12))
        for page in (1, 2, 5, 29, 30, 31):
            found = await read_all_paged(store, page)
            assert [(p, e.model_dump()) for p, e in found] == [
                (p.position, p.event.model_dump()) for p in whole
            ], page

    async def test_read_all_leaves_out_deleted_sessions(self, store: EventStore) -> None:
        a, b = await new_session(store), await new_session(store)
        await store.append(a, deltas(2))
        kept = await store.append(b, deltas(2))
        await store.delete_session(a)
        assert dumped([p.event for p in await store.read_all()]) == dumped(kept)


@group("round_trip")
class RoundTripContract(ContractFrame):
    async def test_unknown_event_types_round_trip_unchanged(self, store: EventStore) -> None:
        sid = await new_session(store)
        data: dict[str, Any] = {
            "future_field": {"nested": [1, "two", None, True, {"deep": [[]]}]},
            "count": 3,
            "ratio": 0.1,
            "tiny": 1e-7,
            "negative": -2.5,
            "big": 2**62,
            "empty": {},
            "text": 'émoji 🚀 "quotes" \\ back\nslash\ttab',
        }
        draft = EventDraft(type="workspace.indexed", data=data, event_id=new_event_id())
        assert draft.data == data
        [stored] = await store.append(sid, [draft])
        [read] = await store.read(sid)
        assert read.type == "workspace.indexed"
        assert read.data == data
        assert stored.data == data
        assert read.typed_data().model_dump() == data

    async def test_schema_versions_are_kept_per_row_and_old_rows_are_upcast_on_read(
        self, store: EventStore
    ) -> None:
        """Each row keeps the ``schema_version`` it was written with (``EventRow``), in every
        select; reads bring an old one to the current shape (events/versions.py)."""
        sid = await new_session(store)
        registry = Upcasters()
        registry.register("contract.note", 1, lambda data: {"body": data["text"]})
        registry.register("contract.note", 2, lambda data: {**data, "v": 3})
        rows = [
            EventRow(
                new_event_id(), utc_now(), "contract.note", "client", False, None, data, None, v
            )
            for data, v in [('{"text": "a"}', 1), ('{"body": "b"}', 2), ('{"body": "c"}', 7)]
        ]
        await store.driver.insert_events(sid, rows, 0, SessionChange(3, utc_now()))
        selected = await store.driver.select_events(sid, 0, None)
        assert [int(row[9]) for row in selected] == [1, 2, 7], "versions as written"
        by_id = await store.driver.select_events_by_id(sid, [rows[1].event_id])
        assert [int(row[9]) for row in by_id] == [2]
        everything = await store.driver.select_all(0, 1000)
        assert [int(row[11]) for row in everything if row[1] == sid] == [1, 2, 7]
        kept, store.upcasters = store.upcasters, registry
        try:
            read = await store.read(sid)
            [appended] = await store.append(
                sid, [EventDraft(type="contract.note", data={"body": "d", "v": 3})]
            )
        finally:
            store.upcasters = kept
        assert [e.data for e in read] == [
            {"body": "a", "v": 3},
            {"body": "b", "v": 3},
            {"body": "c"},  # a newer release's version: as stored
        ]
        [row] = await store.driver.select_events(sid, 3, None)
        assert (int(row[9]), appended.data) == (3, {"body": "d", "v": 3}), "written as current"

    async def test_unknown_content_part_types_round_trip_unchanged(self, store: EventStore) -> None:
        sid = await new_session(store)
        hologram = {"type": "hologram", "frames": [1, 2, 3], "meta": {"depth": None, "fps": 2.5}}
        text_with_extra = {"type": "text", "text": "hi", "lang": "en"}
        draft = EventDraft(
            type="item.completed",
            data={
                "item": {
                    "item_id": "i1",
                    "kind": "hologram_message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [text_with_extra, hologram, {"type": "json", "json": {"a": [1]}}],
                    "future_item_field": "kept",
                }
            },
            event_id=new_event_id(),
        )
        content = draft.data["item"]["content"]
        assert content[0] == text_with_extra and content[1] == hologram
        await store.append(sid, [draft])
        [read] = await store.read(sid)
        assert read.data == draft.data
        assert read.data["item"]["content"][1] == hologram
        assert read.data["item"]["future_item_field"] == "kept"
        assert read.typed_data().model_dump(mode="json", by_alias=True) == draft.data

    async def test_payload_strings_round_trip_unchanged(self, store: EventStore) -> None:
        sid = await new_session(store)
        odd = ["", " ", "\x00nul", "\u2028\u2029", "\ud7ff\ue000\U0010ffff", "'; drop table x; --"]
        drafts = [
            EventDraft(type="x.strings", data={"s": s, s: s}, raw=s, event_id=new_event_id())
            for s in odd
        ]
        await store.append(sid, drafts)
        read = await store.read(sid)
        assert [(e.data, e.raw) for e in read] == [({"s": s, s: s}, s) for s in odd]

    async def test_raw_payloads_round_trip(self, store: EventStore) -> None:
        sid = await new_session(store)
        raws: list[Any] = [
            None,
            {"type": "assistant", "message": {"content": [{"text": "hi"}]}},
            ["a", 1, None, {"b": False}],
            "plain string",
            42,
            3.5,
            True,
            {"unicode": "日本語", "nested": {"list": [[], {}]}},
        ]
        drafts = [delta(f"{i}", raw=raw) for i, raw in enumerate(raws)]
        stored = await store.append(sid, drafts)
        read = await store.read(sid)
        assert [e.raw for e in read] == raws
        assert [e.raw for e in stored] == raws
        assert [e.raw for e in (p.event for p in await store.read_all())] == raws

    async def test_time_round_trips_exactly_to_the_microsecond(self, store: EventStore) -> None:
        sid = await new_session(store)
        times = [
            datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            datetime(2030, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
            datetime(2030, 1, 2, 3, 4, 5, 0, tzinfo=UTC),
            datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ]
        stored = await store.append(sid, [delta(str(i), time=t) for i, t in enumerate(times)])
        for events in (stored, await store.read(sid), [p.event for p in await store.read_all()]):
            assert [e.time for e in events] == times
            assert [e.time.microsecond for e in events] == [t.microsecond for t in times]
            assert [format_time(e.time) for e in events] == [format_time(t) for t in times]

    async def test_times_given_in_another_offset_keep_their_instant(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        local = datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
        stored = await store.append(sid, [delta(time=local)])
        for events in (stored, await store.read(sid), [p.event for p in await store.read_all()]):
            assert events[0].time == local
            assert events[0].model_dump(mode="json")["time"] == "2030-06-01T19:00:00.123456Z"

    async def test_session_times_round_trip_to_the_microsecond(self, store: EventStore) -> None:
        created = datetime(2029, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
        await store.create_session(SessionRecord(id="s1", agent="mock", created_at=created))
        record = await store.get_session("s1")
        assert record is not None
        assert record.created_at == created
        when = datetime(2029, 3, 4, 6, 0, 0, 7, tzinfo=UTC)
        await store.append("s1", [ended(time=when)])
        record = await store.get_session("s1")
        assert record is not None and record.ended_at == when
