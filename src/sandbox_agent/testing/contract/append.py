"""The contract, groups 'append' and 'projection': numbering, conflicts, idempotent retries,
whole batches, and the session row that follows the events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox_agent.events import EventDraft, new_event_id, utc_now
from sandbox_agent.store import (
    EventStore,
    IdempotencyConflict,
    SequenceConflict,
    SessionNotFound,
)
from sandbox_agent.testing.contract._frame import ContractFrame, group, keeps
from sandbox_agent.testing.support import (
    delta,
    deltas,
    dumped,
    ended,
    new_session,
    resumed,
    same_as_draft,
)


@group("append")
class AppendContract(ContractFrame):
    @keeps("gapless sequences")
    async def test_append_numbers_events_from_one_without_gaps(self, store: EventStore) -> None:
        sid = await new_session(store)
        first = await store.append(sid, deltas(3))
        second = await store.append(sid, deltas(1))
        third = await store.append(sid, deltas(4))
        assert [e.sequence for e in first + second + third] == list(range(1, 9))
        assert all(e.session_id == sid for e in first + second + third)
        assert await store.last_sequence(sid) == 8

    @keeps("a batch is stored whole")
    async def test_a_batch_is_stored_whole_and_in_order(self, store: EventStore) -> None:
        sid = await new_session(store)
        drafts = deltas(5)
        stored = await store.append(sid, drafts)
        assert [e.event_id for e in stored] == [d.event_id for d in drafts]
        read = await store.read(sid)
        assert [e.event_id for e in read] == [d.event_id for d in drafts], (
            f"appended {len(drafts)} events, {len(read)} stored"
        )
        assert dumped(read) == dumped(stored)

    async def test_append_returns_what_read_returns(self, store: EventStore) -> None:
        sid = await new_session(store)
        drafts = [
            delta("a", native_session_id="native-1", synthetic=True),
            EventDraft(type="turn.started", source="client", event_id=new_event_id()),
            delta("b", raw={"line": "orig"}),
        ]
        stored = await store.append(sid, drafts)
        assert dumped(await store.read(sid)) == dumped(stored)
        for event, draft in zip(stored, drafts, strict=True):
            assert same_as_draft(event, draft)

    async def test_append_fills_in_missing_event_ids_and_times(self, store: EventStore) -> None:
        sid = await new_session(store)
        before = utc_now()
        stored = await store.append(sid, [EventDraft(type="turn.started") for _ in range(3)])
        after = utc_now()
        assert len({e.event_id for e in stored}) == 3
        assert all(e.event_id.startswith("evt_") for e in stored)
        for event in stored:
            assert event.time.tzinfo is not None
            assert before - timedelta(seconds=1) <= event.time <= after + timedelta(seconds=1)
        assert dumped(await store.read(sid)) == dumped(stored)

    async def test_append_with_expected_sequence_zero_on_an_empty_stream(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        stored = await store.append(sid, deltas(2), expected_sequence=0)
        assert [e.sequence for e in stored] == [1, 2]
        stored = await store.append(sid, deltas(1), expected_sequence=2)
        assert [e.sequence for e in stored] == [3]

    @keeps("a stale expected_sequence raises SequenceConflict and writes nothing")
    async def test_append_with_a_stale_expected_sequence_raises_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(3))
        before = await store.get_session(sid)
        for expected in (0, 2, 4, 10):
            with pytest.raises(SequenceConflict) as info:
                await store.append(sid, deltas(2), expected_sequence=expected)
            assert (info.value.session_id, info.value.expected, info.value.actual) == (
                sid,
                expected,
                3,
            )
        assert await store.last_sequence(sid) == 3
        assert len(await store.read(sid)) == 3
        assert len(await store.read_all()) == 3
        after = await store.get_session(sid)
        assert after is not None and before is not None
        assert (after.last_sequence, after.event_count) == (3, 3)

    @keeps("idempotent retries by event id")
    async def test_append_is_idempotent_by_event_id(self, store: EventStore) -> None:
        sid = await new_session(store)
        drafts = deltas(3)
        stored = await store.append(sid, drafts)
        record = await store.get_session(sid)
        again = await store.append(sid, drafts)
        assert dumped(again) == dumped(stored)
        assert dumped(await store.read(sid)) == dumped(stored)
        assert len(await store.read_all()) == 3
        after = await store.get_session(sid)
        assert after is not None and record is not None
        assert (after.last_sequence, after.event_count) == (3, 3)

    async def test_reappend_with_a_stale_expected_sequence_returns_the_stored_events(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        drafts = deltas(2)
        stored = await store.append(sid, drafts, expected_sequence=0)
        await store.append(sid, deltas(3))
        # The writer lost the reply and retries with what it saw then.
        again = await store.append(sid, drafts, expected_sequence=0)
        assert dumped(again) == dumped(stored)
        assert await store.last_sequence(sid) == 5

    async def test_reappend_of_any_prefix_is_a_noop(self, store: EventStore) -> None:
        sid = await new_session(store)
        batches = [deltas(2, "a"), deltas(3, "b"), deltas(1, "c")]
        for b in batches:
            await store.append(sid, b)
        drafts = [d for b in batches for d in b]
        stored = await store.read(sid)
        for k in range(1, len(drafts) + 1):
            again = await store.append(sid, drafts[:k], expected_sequence=0)
            assert dumped(again) == dumped(stored[:k])
        for start in range(len(drafts)):
            again = await store.append(sid, drafts[start:])
            assert dumped(again) == dumped(stored[start:])
        assert dumped(await store.read(sid)) == dumped(stored)
        assert len(await store.read_all()) == len(drafts)

    async def test_reappend_without_a_time_matches_the_time_the_store_gave(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        drafts = deltas(2)
        assert all(d.time is None for d in drafts)
        stored = await store.append(sid, drafts)
        assert dumped(await store.append(sid, drafts)) == dumped(stored)

    async def test_reappend_of_an_event_id_with_other_content_raises_idempotency_conflict(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        original = delta("same")
        stored = await store.append(sid, [original, delta("next")])
        changes: list[dict[str, Any]] = [
            {"data": {"item_id": "item_1", "delta": "other"}},
            {"type": "item.started", "data": {"item": {"item_id": "i"}}},
            {"source": "client"},
            {"synthetic": True},
            {"native_session_id": "n-1"},
            {"raw": {"x": 1}},
            {"time": datetime(2001, 1, 1, tzinfo=UTC)},
        ]
        for change in changes:
            fields = {**original.model_dump(), **change}
            with pytest.raises(IdempotencyConflict) as info:
                await store.append(sid, [EventDraft(**fields)])
            assert info.value.event_id == original.event_id, change
        assert dumped(await store.read(sid)) == dumped(stored)

    async def test_partly_stored_batch_raises_idempotency_conflict_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        drafts = deltas(2)
        stored = await store.append(sid, drafts)
        fresh = delta("new")
        for batch in ([*drafts, fresh], [fresh, drafts[1]], [drafts[0], fresh]):
            with pytest.raises(IdempotencyConflict):
                await store.append(sid, batch)
            with pytest.raises(IdempotencyConflict):
                await store.append(sid, batch, expected_sequence=2)
        assert dumped(await store.read(sid)) == dumped(stored)
        assert len(await store.read_all()) == 2

    async def test_duplicate_event_id_inside_one_batch_raises_idempotency_conflict(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        twice = delta("a")
        with pytest.raises(IdempotencyConflict) as info:
            await store.append(sid, [twice, delta("b"), twice])
        assert info.value.event_id == twice.event_id
        assert await store.read(sid) == []
        assert await store.last_sequence(sid) == 0

    async def test_same_event_id_may_be_used_in_two_sessions(self, store: EventStore) -> None:
        a, b = await new_session(store), await new_session(store)
        draft = delta("shared")
        [in_a] = await store.append(a, [draft])
        await store.append(b, deltas(1))
        [in_b] = await store.append(b, [draft])
        assert (in_a.session_id, in_a.sequence) == (a, 1)
        assert (in_b.session_id, in_b.sequence) == (b, 2)

    async def test_append_to_an_unknown_session_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound) as info:
            await store.append("nope", deltas(1))
        assert info.value.session_id == "nope"
        with pytest.raises(SessionNotFound):
            await store.append("nope", deltas(1), expected_sequence=0)
        assert await store.read_all() == []

    async def test_empty_batch_writes_nothing(self, store: EventStore) -> None:
        sid = await new_session(store)
        assert await store.append(sid, []) == []
        await store.append(sid, deltas(2))
        before = await store.get_session(sid)
        assert await store.append(sid, []) == []
        assert await store.append(sid, [], expected_sequence=2) == []
        assert await store.get_session(sid) == before
        assert len(await store.read(sid)) == 2

    async def test_a_large_batch_is_appended_and_retried_whole(self, store: EventStore) -> None:
        sid = await new_session(store)
        drafts = deltas(2500)
        stored = await store.append(sid, drafts, expected_sequence=0)
        assert [e.sequence for e in stored] == list(range(1, 2501))
        assert dumped(await store.append(sid, drafts, expected_sequence=0)) == dumped(stored)
        middle = await store.append(sid, drafts[1000:2100])
        assert dumped(middle) == dumped(stored[1000:2100])
        with pytest.raises(IdempotencyConflict):
            await store.append(sid, [*drafts, delta()])
        assert await store.last_sequence(sid) == 2500

    async def test_stored_events_do_not_change_when_the_caller_mutates_its_payload(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        data: dict[str, Any] = {"items": [1, 2], "inner": {"k": "v"}}
        raw: dict[str, Any] = {"orig": [1]}
        draft = EventDraft(type="x.custom", data=data, raw=raw, event_id=new_event_id())
        await store.append(sid, [draft])
        draft.data["items"].append(3)
        draft.data["inner"]["k"] = "changed"
        raw["orig"].append(2)
        [event] = await store.read(sid)
        assert event.data == {"items": [1, 2], "inner": {"k": "v"}}
        assert event.raw == {"orig": [1]}


@group("projection")
class ProjectionContract(ContractFrame):
    async def test_append_updates_last_sequence_event_count_and_updated_at(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        created = await store.get_session(sid)
        await asyncio.sleep(0.002)
        await store.append(sid, deltas(3))
        await store.append(sid, deltas(2))
        record = await store.get_session(sid)
        assert record is not None and created is not None
        assert (record.last_sequence, record.event_count) == (5, 5)
        assert record.updated_at > created.updated_at
        assert record.created_at == created.created_at

    async def test_session_ended_event_ends_the_session_and_sets_ended_at(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        await store.append(sid, [*deltas(2), ended(time=when)])
        record = await store.get_session(sid)
        assert record is not None
        assert record.status == "ended"
        assert record.ended_at == when
        assert [s.id for s in (await store.list_sessions(status="ended")).items] == [sid]

    async def test_session_resumed_event_makes_the_session_active_again(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.append(sid, [ended()])
        await store.append(sid, [resumed(), delta()])
        record = await store.get_session(sid)
        assert record is not None
        assert (record.status, record.ended_at, record.last_sequence) == ("active", None, 3)
        # Ended and resumed in one batch: the last one counts.
        await store.append(sid, [ended(), resumed()])
        record = await store.get_session(sid)
        assert record is not None and (record.status, record.ended_at) == ("active", None)
        when = datetime(2031, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
        await store.append(sid, [resumed(), ended(time=when)])
        record = await store.get_session(sid)
        assert record is not None and (record.status, record.ended_at) == ("ended", when)

    async def test_native_session_id_is_projected_from_the_events(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.append(sid, [delta(native_session_id="native-a")])
        record = await store.get_session(sid)
        assert record is not None and record.native_session_id == "native-a"
        # An event without one leaves it; a later one replaces it.
        await store.append(sid, [delta(), delta(native_session_id="native-b"), delta()])
        record = await store.get_session(sid)
        assert record is not None and record.native_session_id == "native-b"

    async def test_a_rejected_append_leaves_the_projection_as_it_was(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(2))
        before = await store.get_session(sid)
        with pytest.raises(SequenceConflict):
            await store.append(sid, [ended(native_session_id="n")], expected_sequence=1)
        with pytest.raises(IdempotencyConflict):
            twice = ended()
            await store.append(sid, [twice, twice])
        assert await store.get_session(sid) == before
