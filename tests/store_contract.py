"""The behaviour every ``EventStore`` driver must have, written once.

``StoreContract`` holds the tests; a driver's test module subclasses it and provides a ``store``
fixture (an open, empty store) and a ``store_url`` fixture (the URL it was opened from). Our
``tests/test_store_contract.py`` runs it against memory, SQLite and Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sandbox_agent.events import EventDraft, UniversalEvent, format_time, new_event_id, utc_now
from sandbox_agent.store import (
    EventStore,
    IdempotencyConflict,
    InvalidCursor,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    StoreConfigError,
    StoreError,
    open_store,
)

# -- helpers -------------------------------------------------------------------------------


def delta(text: str = "x", *, event_id: str | None = None, **fields: Any) -> EventDraft:
    """An ``item.delta`` draft with an event id of its own (so it can be retried)."""
    return EventDraft(
        type="item.delta",
        data={"item_id": "item_1", "delta": text},
        event_id=event_id or new_event_id(),
        **fields,
    )


def deltas(n: int, prefix: str = "d") -> list[EventDraft]:
    return [delta(f"{prefix}{i}") for i in range(n)]


def ended(**fields: Any) -> EventDraft:
    return EventDraft(
        type="session.ended",
        data={"reason": "completed", "terminated_by": "agent"},
        source="daemon",
        event_id=new_event_id(),
        **fields,
    )


def resumed(**fields: Any) -> EventDraft:
    return EventDraft(
        type="session.resumed",
        data={"reason": "reopened", "native_resume": True, "replayed_events": 0},
        source="daemon",
        event_id=new_event_id(),
        **fields,
    )


async def new_session(store: EventStore, session_id: str | None = None, **fields: Any) -> str:
    fields.setdefault("agent", "mock")
    record = SessionRecord(id=session_id or f"s_{secrets.token_hex(5)}", **fields)
    return (await store.create_session(record)).id


def dumped(events: list[UniversalEvent]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in events]


def same_as_draft(event: UniversalEvent, draft: EventDraft) -> bool:
    return (
        event.event_id == draft.event_id
        and event.type == draft.type
        and event.data == draft.data
        and event.source == draft.source
        and event.synthetic == draft.synthetic
        and event.native_session_id == draft.native_session_id
        and event.raw == draft.raw
        and (draft.time is None or event.time == draft.time)
    )


async def take(
    store: EventStore, session_id: str, n: int, after: int = 0, timeout: float = 10.0
) -> list[UniversalEvent]:
    """The first ``n`` events ``subscribe`` yields (fails the test after ``timeout`` s)."""
    got: list[UniversalEvent] = []
    async with asyncio.timeout(timeout):
        async with contextlib.aclosing(store.subscribe(session_id, after=after)) as events:
            async for event in events:
                got.append(event)
                if len(got) == n:
                    break
    return got


async def read_all_paged(store: EventStore, page: int) -> list[tuple[int, UniversalEvent]]:
    found: list[tuple[int, UniversalEvent]] = []
    after = 0
    while True:
        chunk = await store.read_all(after_position=after, limit=page)
        if not chunk:
            return found
        assert len(chunk) <= page
        found.extend((p.position, p.event) for p in chunk)
        after = chunk[-1].position


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


# -- the suite -----------------------------------------------------------------------------


class StoreContract:
    """Subclass with ``store`` and ``store_url`` fixtures to run it against a driver."""

    # -- sessions -----------------------------------------------------------------------
    async def test_create_session_stores_every_field_with_an_empty_projection(
        self, store: EventStore
    ) -> None:
        record = SessionRecord(
            id="s1",
            agent="claude",
            agent_mode="build",
            permission_mode="plan",
            model="opus",
            variant="high",
            title="Fix the bug",
            directory="/work/repo",
            metadata={"labels": ["a", "b"], "n": 1, "nested": {"x": None}},
            init={"prompt": "héllo ✓", "env": {"A": "1"}},
        )
        created = await store.create_session(record)
        fetched = await store.get_session("s1")
        assert fetched == created
        for field in (
            "agent",
            "agent_mode",
            "permission_mode",
            "model",
            "variant",
            "title",
            "directory",
            "metadata",
            "init",
        ):
            assert getattr(fetched, field) == getattr(record, field), field
        assert fetched is not None
        assert (fetched.status, fetched.last_sequence, fetched.event_count) == ("active", 0, 0)
        assert fetched.ended_at is None
        assert fetched.created_at.tzinfo is not None

    async def test_create_session_ignores_projection_fields_passed_in(
        self, store: EventStore
    ) -> None:
        record = SessionRecord(
            id="s1",
            agent="mock",
            status="ended",
            last_sequence=7,
            event_count=7,
            ended_at=utc_now(),
            native_session_id="native-from-caller",
        )
        created = await store.create_session(record)
        assert (created.status, created.last_sequence, created.event_count) == ("active", 0, 0)
        assert created.ended_at is None
        assert created.native_session_id is None
        assert await store.get_session("s1") == created
        assert await store.last_sequence("s1") == 0
        stored = await store.append("s1", [delta()], expected_sequence=0)
        assert stored[0].sequence == 1

    async def test_create_session_with_a_taken_id_raises_session_exists(
        self, store: EventStore
    ) -> None:
        await new_session(store, "s1", title="first")
        with pytest.raises(SessionExists) as info:
            await new_session(store, "s1", title="second")
        assert info.value.session_id == "s1"
        assert isinstance(info.value, StoreError)
        fetched = await store.get_session("s1")
        assert fetched is not None and fetched.title == "first"

    async def test_get_session_of_an_unknown_id_is_none(self, store: EventStore) -> None:
        assert await store.get_session("nope") is None

    async def test_list_sessions_is_newest_first(self, store: EventStore) -> None:
        ids = [await new_session(store, f"s{i}") for i in range(5)]
        page = await store.list_sessions()
        assert [s.id for s in page.items] == ids[::-1]
        assert page.next_cursor is None

    async def test_list_sessions_pages_never_skip_or_repeat(self, store: EventStore) -> None:
        ids = [await new_session(store, f"s{i:02}") for i in range(11)]
        for limit in (1, 2, 3, 5, 10, 11, 12):
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.list_sessions(limit=limit, cursor=cursor)
                assert len(page.items) <= limit
                seen.extend(s.id for s in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == ids[::-1], limit

    async def test_list_sessions_cursor_stays_valid_while_sessions_are_added(
        self, store: EventStore
    ) -> None:
        for i in range(5):
            await new_session(store, f"s{i}")
        first = await store.list_sessions(limit=2)
        assert [s.id for s in first.items] == ["s4", "s3"]
        await new_session(store, "s5")
        await new_session(store, "s6")
        second = await store.list_sessions(limit=2, cursor=first.next_cursor)
        assert [s.id for s in second.items] == ["s2", "s1"]
        await new_session(store, "s7")
        third = await store.list_sessions(limit=2, cursor=second.next_cursor)
        assert [s.id for s in third.items] == ["s0"]
        assert third.next_cursor is None
        fresh = await store.list_sessions(limit=3)
        assert [s.id for s in fresh.items] == ["s7", "s6", "s5"]

    async def test_list_sessions_filters_by_status_and_agent(self, store: EventStore) -> None:
        for i in range(6):
            agent = "claude" if i % 2 else "codex"
            sid = await new_session(store, f"s{i}", agent=agent)
            if i % 3 == 0:
                await store.append(sid, [ended()])
        # s0 codex ended, s1 claude, s2 codex, s3 claude ended, s4 codex, s5 claude
        assert [s.id for s in (await store.list_sessions(status="ended")).items] == ["s3", "s0"]
        active = await store.list_sessions(status="active")
        assert [s.id for s in active.items] == ["s5", "s4", "s2", "s1"]
        claude = await store.list_sessions(agent="claude")
        assert [s.id for s in claude.items] == ["s5", "s3", "s1"]
        both = await store.list_sessions(agent="codex", status="active")
        assert [s.id for s in both.items] == ["s4", "s2"]
        assert (await store.list_sessions(agent="nobody")).items == []

    async def test_list_sessions_pages_through_a_filter(self, store: EventStore) -> None:
        for i in range(7):
            sid = await new_session(store, f"s{i}")
            if i % 2 == 0:
                await store.append(sid, [ended()])
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_sessions(limit=1, cursor=cursor, status="ended")
            seen.extend(s.id for s in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ["s6", "s4", "s2", "s0"]

    async def test_list_sessions_rejects_a_cursor_it_did_not_make(self, store: EventStore) -> None:
        await new_session(store)
        with pytest.raises(InvalidCursor):
            await store.list_sessions(cursor="not-a-cursor!")

    async def test_update_session_sets_title_and_replaces_metadata(self, store: EventStore) -> None:
        await new_session(store, "s1", title="old", metadata={"a": 1, "b": 2})
        before = await store.get_session("s1")
        updated = await store.update_session("s1", title="new", metadata={"c": [1, 2]})
        assert updated.title == "new"
        assert updated.metadata == {"c": [1, 2]}
        assert await store.get_session("s1") == updated
        assert before is not None and updated.updated_at >= before.updated_at
        # What is not passed stays as it is.
        again = await store.update_session("s1", metadata={"d": True})
        assert (again.title, again.metadata) == ("new", {"d": True})
        again = await store.update_session("s1", title="newer")
        assert (again.title, again.metadata) == ("newer", {"d": True})

    async def test_update_session_of_an_unknown_id_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound):
            await store.update_session("nope", title="x")

    async def test_delete_session_removes_its_events_and_snapshots(self, store: EventStore) -> None:
        await new_session(store, "s1")
        await new_session(store, "keep")
        drafts = deltas(3)
        await store.append("s1", drafts)
        kept = await store.append("keep", deltas(2))
        await store.save_snapshot("s1", 2, {"n": 2}, 1)
        assert await store.delete_session("s1") is True
        assert await store.get_session("s1") is None
        with pytest.raises(SessionNotFound):
            await store.read("s1")
        with pytest.raises(SessionNotFound):
            await store.last_sequence("s1")
        assert [p.event for p in await store.read_all()] == kept
        # A new session with the same id starts empty: nothing of the old one is left.
        await new_session(store, "s1")
        assert await store.read("s1") == []
        assert await store.load_snapshot("s1") is None
        again = await store.append("s1", drafts, expected_sequence=0)
        assert [e.sequence for e in again] == [1, 2, 3]
        assert await store.read("keep") == kept

    async def test_delete_session_of_an_unknown_id_returns_false(self, store: EventStore) -> None:
        assert await store.delete_session("nope") is False

    async def test_list_sessions_orders_by_created_at_also_when_the_caller_gives_it(
        self, store: EventStore
    ) -> None:
        # Sessions imported or mirrored from elsewhere keep their creation time.
        for sid, year in (("2020", 2020), ("2019", 2019), ("2021", 2021)):
            created = datetime(year, 1, 1, tzinfo=UTC)
            await store.create_session(SessionRecord(id=sid, agent="m", created_at=created))
        now = await new_session(store, "now")
        assert [s.id for s in (await store.list_sessions()).items] == [now, "2021", "2020", "2019"]
        first = await store.list_sessions(limit=2)
        rest = await store.list_sessions(limit=2, cursor=first.next_cursor)
        assert [s.id for s in first.items + rest.items] == [now, "2021", "2020", "2019"]

    async def test_list_sessions_pages_through_sessions_created_at_the_same_instant(
        self, store: EventStore
    ) -> None:
        instant = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        for i in range(7):
            await store.create_session(SessionRecord(id=f"s{i}", agent="m", created_at=instant))
        for limit in (1, 2, 3):
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.list_sessions(limit=limit, cursor=cursor)
                seen.extend(s.id for s in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert sorted(seen) == [f"s{i}" for i in range(7)] and len(seen) == 7, limit

    async def test_session_ids_with_any_characters_work(self, store: EventStore) -> None:
        odd = ["a'b\"c", "100%_x", "ü/🚀\\", " spaced ", "semi;colon--", "日本"]
        for sid in odd:
            await new_session(store, sid)
            await store.append(sid, deltas(2))
            assert [e.session_id for e in await store.read(sid)] == [sid, sid]
        assert [s.id for s in (await store.list_sessions()).items] == odd[::-1]
        assert await store.delete_session(odd[0]) is True
        assert await store.get_session(odd[1]) is not None

    async def test_overlong_ids_are_stored_or_refused_with_a_store_error(
        self, store: EventStore
    ) -> None:
        # Whatever limits a driver has, it must not leak a database exception, and what it
        # accepts it must give back.
        long_sid = "s" * 300
        try:
            await new_session(store, long_sid)
        except StoreError:
            assert await store.get_session(long_sid) is None
        else:
            assert (await store.get_session(long_sid)) is not None
        sid = await new_session(store)
        draft = EventDraft(type="t." + "y" * 200, event_id="e" * 300, native_session_id="n" * 300)
        try:
            await store.append(sid, [draft])
        except StoreError:
            assert await store.read(sid) == []
        else:
            [event] = await store.read(sid)
            assert same_as_draft(event, draft)

    async def test_text_with_a_nul_character_is_stored_or_refused_with_a_store_error(
        self, store: EventStore
    ) -> None:
        # NUL is valid in a Python string and in JSON; a driver whose database cannot keep it
        # in a text column must say so with a StoreError, never leak a database exception.
        nul = "a\x00b"
        try:
            created = await store.create_session(
                SessionRecord(id="s1", agent="mock", title=nul, directory=nul)
            )
        except StoreError:
            assert await store.get_session("s1") is None
        else:
            assert (created.title, created.directory) == (nul, nul)
            fetched = await store.get_session("s1")
            assert fetched is not None and fetched.title == nul
        sid = await new_session(store)
        try:
            updated = await store.update_session(sid, title=nul)
        except StoreError:
            record = await store.get_session(sid)
            assert record is not None and record.title is None
        else:
            assert updated.title == nul
        draft = delta(native_session_id=nul, event_id="evt\x00nul")
        try:
            await store.append(sid, [draft])
        except StoreError:
            assert await store.read(sid) == []
        else:
            [event] = await store.read(sid)
            assert same_as_draft(event, draft)

    async def test_extreme_times_are_stored_exactly_or_refused(self, store: EventStore) -> None:
        sid = await new_session(store)
        for when in (
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ):
            before = await store.last_sequence(sid)
            try:
                [stored] = await store.append(sid, [delta(time=when)])
            except (StoreError, ValueError):
                assert await store.last_sequence(sid) == before
                continue
            assert [e.time for e in await store.read(sid, after=before)] == [when]
            assert stored.time == when

    # -- append -------------------------------------------------------------------------
    async def test_append_numbers_events_from_one_without_gaps(self, store: EventStore) -> None:
        sid = await new_session(store)
        first = await store.append(sid, deltas(3))
        second = await store.append(sid, deltas(1))
        third = await store.append(sid, deltas(4))
        assert [e.sequence for e in first + second + third] == list(range(1, 9))
        assert all(e.session_id == sid for e in first + second + third)
        assert await store.last_sequence(sid) == 8

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

    # -- the sessions projection --------------------------------------------------------
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

    # -- reading ------------------------------------------------------------------------
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

    # -- what goes in comes out ---------------------------------------------------------
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

    # -- snapshots ----------------------------------------------------------------------
    async def test_load_snapshot_returns_the_newest_at_or_before(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(10))
        for seq in (3, 7, 5):
            await store.save_snapshot(sid, seq, {"at": seq, "items": [seq]}, 1)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.state) == (7, {"at": 7, "items": [7]})
        assert snap.session_id == sid and snap.version == 1
        for at, want in ((10, 7), (7, 7), (6, 5), (5, 5), (4, 3), (3, 3)):
            snap = await store.load_snapshot(sid, at_or_before=at)
            assert snap is not None and snap.sequence == want, at
        assert await store.load_snapshot(sid, at_or_before=2) is None

    async def test_prune_snapshots_keeps_the_newest_and_one_per_span(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        for seq in range(10, 310, 10):
            await store.save_snapshot(sid, seq, {"at": seq}, 2)
        for seq in (50, 150):
            await store.save_snapshot(sid, seq, {"old": seq}, 1)
        assert await store.snapshot_keys(sid) == sorted(
            [(seq, 2) for seq in range(10, 310, 10)] + [(50, 1), (150, 1)]
        )
        deleted = await store.prune_snapshots(sid, keep_latest=2, keep_every=100, version=2)
        # Spans [0, 100), [100, 200), [200, 300), [300, 400): their newest, and 290, 300.
        kept = [(90, 2), (190, 2), (290, 2), (300, 2)]
        assert await store.snapshot_keys(sid) == kept
        assert deleted == 32 - len(kept)
        snap = await store.load_snapshot(sid, at_or_before=289)
        assert snap is not None and (snap.sequence, snap.state) == (190, {"at": 190})
        assert await store.prune_snapshots(sid, keep_latest=1) == 3  # newest only
        assert await store.snapshot_keys(sid) == [(300, 2)]
        assert await store.prune_snapshots("nobody", keep_latest=1) == 0
        with pytest.raises(ValueError):
            await store.prune_snapshots(sid, keep_latest=1, keep_every=0)

    async def test_load_snapshot_filters_by_version(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 2, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, {"v": 2}, 2)
        await store.save_snapshot(sid, 6, {"v": 1}, 1)
        snap = await store.load_snapshot(sid, version=2)
        assert snap is not None and (snap.sequence, snap.version, snap.state) == (4, 2, {"v": 2})
        snap = await store.load_snapshot(sid, at_or_before=5, version=1)
        assert snap is not None and (snap.sequence, snap.state) == (2, {"v": 1})
        assert await store.load_snapshot(sid, version=3) is None
        assert await store.load_snapshot(sid, at_or_before=3, version=2) is None

    async def test_load_snapshot_json_gives_what_load_snapshot_gives(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        state = {"text": 'caf\u00e9 \u0000 "q"', "n": [1, 2.5, None, True], "nested": {"a": {}}}
        await store.save_snapshot(sid, 2, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, state, 2)
        await store.save_snapshot(sid, 6, {"v": 3}, 1)
        for at, version in ((None, None), (5, None), (None, 2), (3, 1), (6, 1), (1, None)):
            snap = await store.load_snapshot(sid, at_or_before=at, version=version)
            text = await store.load_snapshot_json(sid, at_or_before=at, version=version)
            if snap is None:
                assert text is None, (at, version)
            else:
                assert text is not None and text[0] == snap.sequence, (at, version)
                assert json.loads(text[1]) == snap.state, (at, version)
        assert await store.load_snapshot_json("no-such-session") is None

    async def test_highest_version_wins_at_the_same_sequence(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 5, {"v": 2}, 2)
        await store.save_snapshot(sid, 5, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, {"v": 3}, 3)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.version, snap.state) == (5, 2, {"v": 2})
        snap = await store.load_snapshot(sid, version=1)
        assert snap is not None and (snap.sequence, snap.version) == (5, 1)

    async def test_save_snapshot_replaces_one_with_the_same_sequence_and_version(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 5, {"old": True}, 1)
        saved = await store.save_snapshot(sid, 5, {"new": [1, {"x": None}]}, 1)
        assert saved.state == {"new": [1, {"x": None}]}
        snap = await store.load_snapshot(sid)
        assert snap is not None and snap.state == {"new": [1, {"x": None}]}
        assert await store.load_snapshot(sid, at_or_before=5, version=1) == snap

    async def test_load_snapshot_is_none_when_none_was_saved(self, store: EventStore) -> None:
        sid = await new_session(store)
        assert await store.load_snapshot(sid) is None

    async def test_save_snapshot_of_an_unknown_session_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound):
            await store.save_snapshot("nope", 1, {}, 1)

    async def test_save_snapshot_json_stores_the_text_as_that_state(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.save_snapshot_json(sid, 3, '{"old":1}', 1)
        await store.save_snapshot_json(sid, 3, '{"a":[1,{"b":null}],"t":"\\u00e9"}', 1)
        await store.save_snapshot(sid, 2, {"v": 2}, 1)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.version) == (3, 1)
        assert snap.state == {"a": [1, {"b": None}], "t": "\u00e9"}
        loaded = await store.load_snapshot_json(sid, version=1)
        assert loaded is not None and loaded[0] == 3
        assert json.loads(loaded[1]) == snap.state
        with pytest.raises(SessionNotFound):
            await store.save_snapshot_json("nope", 1, "{}", 1)
        with pytest.raises(ValueError):
            await store.save_snapshot_json(sid, 4, "[1, 2]", 1)

    # -- fork ---------------------------------------------------------------------------
    async def test_fork_session_copies_the_whole_stream_with_new_ids(
        self, store: EventStore
    ) -> None:
        src = await new_session(store, "src", agent="claude", title="t", metadata={"k": 1})
        source = await store.append(
            src,
            [delta("a", native_session_id="n1", raw={"r": 1}), delta("b", synthetic=True)],
        )
        source += await store.append(src, [ended()])
        fork = await store.fork_session(src, "fork")
        assert fork.id == "fork"
        assert fork.agent == "claude" and fork.title == "t"
        assert fork.metadata == {"k": 1, "forked_from": {"session_id": "src", "sequence": 3}}
        assert (fork.last_sequence, fork.event_count, fork.status) == (3, 3, "ended")
        assert await store.get_session("fork") == fork
        copied = await store.read("fork")
        assert [e.sequence for e in copied] == [1, 2, 3]
        assert {e.event_id for e in copied}.isdisjoint({e.event_id for e in source})
        assert len({e.event_id for e in copied}) == 3
        keep = ("type", "data", "source", "synthetic", "native_session_id", "raw", "time")
        for c, s in zip(copied, source, strict=True):
            assert c.session_id == "fork"
            assert {k: getattr(c, k) for k in keep} == {k: getattr(s, k) for k in keep}
        assert dumped(await store.read(src)) == dumped(source)

    async def test_fork_session_at_k_copies_events_one_to_k(self, store: EventStore) -> None:
        src = await new_session(store, "src")
        source = await store.append(src, [*deltas(4), ended(), resumed(), delta()])
        fork = await store.fork_session(src, "f3", at=3)
        assert fork.metadata["forked_from"] == {"session_id": "src", "sequence": 3}
        assert (fork.last_sequence, fork.event_count, fork.status) == (3, 3, "active")
        assert [e.data for e in await store.read("f3")] == [e.data for e in source[:3]]
        ended_fork = await store.fork_session(src, "f5", at=5)
        assert (ended_fork.status, ended_fork.ended_at) == ("ended", source[4].time)
        empty = await store.fork_session(src, "f0", at=0)
        assert (empty.last_sequence, await store.read("f0")) == (0, [])
        # The fork is a stream of its own: it grows without touching the source.
        await store.append("f3", deltas(2), expected_sequence=3)
        assert await store.last_sequence("f3") == 5
        assert await store.last_sequence(src) == 7

    async def test_fork_session_of_an_unknown_source_or_to_a_taken_id_fails(
        self, store: EventStore
    ) -> None:
        await new_session(store, "src")
        await store.append("src", deltas(2))
        with pytest.raises(SessionNotFound):
            await store.fork_session("nope", "f")
        await new_session(store, "taken")
        with pytest.raises(SessionExists):
            await store.fork_session("src", "taken")
        assert await store.read("taken") == []
        assert await store.get_session("f") is None

    # -- prune --------------------------------------------------------------------------
    async def test_prune_removes_ended_sessions_by_default(self, store: EventStore) -> None:
        done1 = await new_session(store)
        live = await new_session(store)
        done2 = await new_session(store)
        await store.append(done1, [*deltas(3), ended()])
        await store.append(live, deltas(2))
        await store.append(done2, [ended()])
        await store.save_snapshot(done1, 2, {"x": 1}, 1)
        result = await store.prune()
        assert sorted(result.sessions) == sorted([done1, done2])
        assert result.events == 5
        assert await store.get_session(done1) is None and await store.get_session(done2) is None
        assert [s.id for s in (await store.list_sessions()).items] == [live]
        assert {p.event.session_id for p in await store.read_all()} == {live}
        # Nothing left to prune.
        assert (await store.prune()).sessions == []

    async def test_prune_with_status_none_removes_sessions_of_any_status(
        self, store: EventStore
    ) -> None:
        a, b = await new_session(store), await new_session(store)
        await store.append(a, deltas(2))
        await store.append(b, [ended()])
        result = await store.prune(status=None)
        assert (sorted(result.sessions), result.events) == (sorted([a, b]), 3)
        assert (await store.list_sessions()).items == []

    async def test_prune_with_status_active_spares_ended_sessions(self, store: EventStore) -> None:
        a, b = await new_session(store), await new_session(store)
        await store.append(a, deltas(2))
        await store.append(b, [ended()])
        result = await store.prune(status="active")
        assert (result.sessions, result.events) == ([a], 2)
        assert await store.get_session(b) is not None

    async def test_prune_older_than_spares_recently_updated_sessions(
        self, store: EventStore
    ) -> None:
        old = [await new_session(store) for _ in range(2)]
        for sid in old:
            await store.append(sid, [delta(), ended()])
        await asyncio.sleep(0.01)
        cutoff = utc_now()
        await asyncio.sleep(0.01)
        recent = await new_session(store)
        await store.append(recent, [ended()])
        # Created before the cutoff but updated after it: recent too.
        touched = old[1]
        await store.append(touched, [resumed(), ended()])
        result = await store.prune(older_than=cutoff)
        assert (result.sessions, result.events) == ([old[0]], 2)
        assert await store.get_session(recent) is not None
        assert await store.get_session(touched) is not None

    async def test_prune_keep_latest_spares_the_newest(self, store: EventStore) -> None:
        sids = [await new_session(store, f"s{i}") for i in range(5)]
        for n, sid in enumerate(sids, start=1):
            await store.append(sid, [*deltas(n - 1), ended()])
        live = await new_session(store, "live")
        result = await store.prune(keep_latest=2)
        assert sorted(result.sessions) == ["s0", "s1", "s2"]
        assert result.events == 1 + 2 + 3
        assert [s.id for s in (await store.list_sessions()).items] == ["live", "s4", "s3"]
        assert await store.get_session(live) is not None

    # -- subscribe ----------------------------------------------------------------------
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
            async with contextlib.aclosing(store.subscribe(sid, page_size=4)) as events:
                async for event in events:
                    got.append(event)
                    if len(got) == 25:
                        break
        assert dumped(got) == dumped(stored)

    async def test_subscribe_wakes_at_once_on_an_append_in_this_process(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        arrivals: asyncio.Queue[tuple[UniversalEvent, float]] = asyncio.Queue()

        async def consume() -> None:
            async for event in store.subscribe(sid):
                arrivals.put_nowait((event, time.monotonic()))

        consumer = asyncio.create_task(consume())
        try:
            delays = []
            for _ in range(5):
                await asyncio.sleep(0.1)  # the consumer is parked waiting
                started = time.monotonic()
                [appended] = await store.append(sid, deltas(1))
                event, arrived = await asyncio.wait_for(arrivals.get(), 5)
                assert event == appended
                delays.append(arrived - started)
            assert max(delays) < 0.3, delays
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def test_close_ends_subscribers(self, store_url: str) -> None:
        # Many subscribers, started a millisecond apart so that whatever polling a driver does
        # is at every phase when the store closes: none may raise, all must end.
        for _ in range(5):
            store = await open_store(store_url)
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

    # -- opening ------------------------------------------------------------------------
    async def test_open_store_rejects_an_unknown_option(self, store_url: str) -> None:
        with pytest.raises(StoreConfigError, match="no_such_option"):
            await open_store(with_option(store_url, "no_such_option=1"))
        with pytest.raises(StoreConfigError, match="no_such_option"):
            await open_store(store_url, no_such_option=1)

    async def test_store_is_an_async_context_manager_that_closes_it(self, store_url: str) -> None:
        async with await open_store(store_url) as store:
            sid = await new_session(store)
            reader = asyncio.create_task(take(store, sid, 1))
            await asyncio.sleep(0.05)
        # Closing ended the subscriber without an event.
        assert await asyncio.wait_for(reader, 5) == []
