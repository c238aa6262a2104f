"""The contract, group 'sessions': create, get, list, update and delete sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox_agent.events import EventDraft, new_event_id, utc_now
from sandbox_agent.store import (
    EventStore,
    InvalidCursor,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    StoreError,
)
from sandbox_agent.store.errors import InvalidText
from sandbox_agent.testing.contract._frame import ContractFrame, group
from sandbox_agent.testing.support import (
    delta,
    deltas,
    ended,
    new_session,
    same_as_draft,
)


@group("sessions")
class SessionsContract(ContractFrame):
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

    @pytest.mark.parametrize(
        "field",
        ["id", "agent", "agent_mode", "permission_mode", "model", "variant", "title", "directory"],
    )
    async def test_a_nul_character_in_a_session_text_field_is_refused_naming_the_field(
        self, store: EventStore, field: str
    ) -> None:
        # NUL is valid in a Python string and in JSON, but Postgres' text cannot keep it: the
        # store refuses it on every driver alike, before the database is touched.
        fields = {"id": "s1", "agent": "mock", field: "a\x00b"}
        with pytest.raises(InvalidText) as refused:
            await store.create_session(SessionRecord(**fields))
        assert isinstance(refused.value, ValueError)
        assert refused.value.field == field and field in str(refused.value)
        assert await store.all_sessions() == []

    async def test_a_nul_character_in_a_title_is_refused_whether_the_session_exists_or_not(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        before = await store.get_session(sid)
        for target in (sid, "missing"):
            with pytest.raises(InvalidText) as refused:
                await store.update_session(target, title="\x00", metadata={"k": 1})
            assert (refused.value.field, refused.value.session_id) == ("title", target)
        assert await store.get_session(sid) == before
        assert await store.get_session("missing") is None

    @pytest.mark.parametrize("field", ["event_id", "type", "native_session_id"])
    async def test_a_nul_character_in_an_events_text_column_is_refused_naming_the_field(
        self, store: EventStore, field: str
    ) -> None:
        sid = await new_session(store)
        before = await store.get_session(sid)
        bad = EventDraft(**{"type": "x.text", "event_id": new_event_id(), field: "x.a\x00b"})
        with pytest.raises(InvalidText) as refused:
            await store.append(sid, [delta("1"), bad])
        assert refused.value.field == field
        assert await store.read(sid) == []
        assert await store.get_session(sid) == before

    async def test_a_fork_to_an_id_with_a_nul_character_is_refused(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(2))
        with pytest.raises(InvalidText):
            await store.fork_session(sid, "fork\x00")
        assert [r.id for r in await store.all_sessions()] == [sid]

    async def test_nul_characters_in_json_fields_round_trip(self, store: EventStore) -> None:
        # Only the text columns refuse NUL: metadata and init are JSON, which keeps it.
        nul = {"k\x00": "v\x00", "list": ["\x00"]}
        created = await store.create_session(
            SessionRecord(id="s1", agent="mock", metadata=nul, init=nul)
        )
        assert (created.metadata, created.init) == (nul, nul)
        updated = await store.update_session("s1", metadata={"m": "\x00"})
        assert updated.metadata == {"m": "\x00"}
        fetched = await store.get_session("s1")
        assert fetched is not None and (fetched.metadata, fetched.init) == ({"m": "\x00"}, nul)

    async def test_a_lone_surrogate_is_refused_in_text_and_in_json_naming_the_field(
        self, store: EventStore
    ) -> None:
        # "\ud800" parses from JSON ("\\ud800") into a Python str but is not UTF-8: no driver
        # can keep it anywhere, so the store refuses it before any I/O, JSON payloads included.
        lone = "a\ud800b"
        for field in ("title", "directory"):
            with pytest.raises(InvalidText) as refused:
                await store.create_session(SessionRecord(id="s1", agent="mock", **{field: lone}))
            assert refused.value.field == field and "surrogate" in str(refused.value)
        for field in ("metadata", "init"):
            with pytest.raises(InvalidText) as refused:
                await store.create_session(
                    SessionRecord(id="s1", agent="mock", **{field: {"k": lone}})
                )
            assert refused.value.field == field
        assert await store.all_sessions() == []
        sid = await new_session(store)
        before = await store.get_session(sid)
        with pytest.raises(InvalidText) as refused:
            await store.update_session(sid, metadata={lone: 1})
        assert refused.value.field == "metadata"
        for field, bad in (
            ("data", EventDraft(type="x.text", data={"text": lone})),
            ("raw", EventDraft(type="x.text", raw={"line": lone})),
            ("type", EventDraft(type=f"x.{lone}")),
        ):
            with pytest.raises(InvalidText) as refused:
                await store.append(sid, [delta("1"), bad])
            assert refused.value.field == field
        assert await store.read(sid) == []
        assert await store.get_session(sid) == before

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
