"""A store behaves like a plain Python model of it, for any store factory.

A hypothesis ``RuleBasedStateMachine`` drives a real store and ``Model`` side by side and
compares every answer: returned events, errors and their details, reads, paging, the global
log, subscriptions, forks, prunes, the sessions projection and snapshots. Each example runs on
an event loop of its own, since hypothesis drives the machine synchronously::

    from sandbox_agent.testing.machine import run_store_machine, url_store_machine

    def test_my_driver_behaves_like_the_model():
        run_store_machine(url_store_machine(lambda tmp: f"mydb:///{tmp}/x"), examples=50)

``store_machine(make_store, ...)`` takes any async factory of empty stores instead.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.store import (
    EventStore,
    IdempotencyConflict,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    StoreError,
    open_store,
)
from sandbox_agent.store.errors import InvalidText
from sandbox_agent.testing.strategies import draft_specs, make_draft
from sandbox_agent.testing.support import dumped, same_as_draft, take

__all__ = ["Model", "StoreMachine", "run_store_machine", "store_machine", "url_store_machine"]

_T = TypeVar("_T")

SIDS = ["a", "b", "c", "d"]
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)

batches = st.lists(draft_specs, max_size=4)
full_batches = st.lists(draft_specs, min_size=1, max_size=6)


@dataclass
class ModelSession:
    order: int
    agent: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[UniversalEvent] = field(default_factory=list)
    status: str = "active"
    ended_at: datetime | None = None
    native_session_id: str | None = None
    snapshots: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


class Model:
    """What the store should hold: plain dicts and lists."""

    def __init__(self) -> None:
        self.sessions: dict[str, ModelSession] = {}
        self.log: list[tuple[str, str]] = []  # (session id, event id) in commit order
        self.created = 0

    def create(self, session_id: str, agent: str, **fields: Any) -> ModelSession:
        self.created += 1
        session = self.sessions[session_id] = ModelSession(self.created, agent, **fields)
        return session

    def newest_first(self, status: str | None = None) -> list[str]:
        ids = sorted(self.sessions, key=lambda s: self.sessions[s].order, reverse=True)
        return [s for s in ids if status is None or self.sessions[s].status == status]

    def commit(self, session_id: str, events: list[UniversalEvent]) -> None:
        session = self.sessions[session_id]
        for event in events:
            session.events.append(event)
            self.log.append((session_id, event.event_id))
            if event.native_session_id is not None:
                session.native_session_id = event.native_session_id
            if event.type == "session.ended":
                session.status, session.ended_at = "ended", event.time
            elif event.type == "session.resumed":
                session.status, session.ended_at = "active", None

    def delete(self, session_id: str) -> None:
        del self.sessions[session_id]
        self.log = [entry for entry in self.log if entry[0] != session_id]


class StoreMachine(RuleBasedStateMachine):
    """Hypothesis drives a store and ``Model`` side by side and compares every answer.

    Subclasses (made by ``store_machine`` and ``url_store_machine``) implement ``open_store``,
    and ``reopen_store`` with ``reopens = True``; ``cleanup`` runs after each example."""

    #: Whether ``reopen_store`` gives the same data back (enables the ``reopen`` rule).
    reopens: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._store: EventStore | None = None
        self.model = Model()
        self.ids = 0

    # -- what a subclass gives ------------------------------------------------------------
    async def open_store(self) -> EventStore:
        """A new, empty store for this example."""
        raise NotImplementedError

    async def reopen_store(self, store: EventStore) -> EventStore:
        """Close ``store`` and open its data again (only with ``reopens = True``)."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        """After the example, once its store is closed."""

    # -- plumbing -----------------------------------------------------------------------
    def run(self, coro: Awaitable[_T]) -> _T:
        async def wait() -> _T:
            return await coro

        return self.loop.run_until_complete(wait())

    def outcome(self, coro: Awaitable[Any]) -> tuple[str, Any]:
        try:
            return "ok", self.run(coro)
        except (
            SessionExists,
            SessionNotFound,
            SequenceConflict,
            IdempotencyConflict,
            InvalidText,
        ) as exc:
            return type(exc).__name__, exc
        except StoreError as exc:
            return "StoreError", exc

    @property
    def store(self) -> EventStore:
        assert self._store is not None
        return self._store

    def next_event_id(self) -> str:
        self.ids += 1
        return f"e{self.ids}"

    def teardown(self) -> None:
        try:
            if self._store is not None:
                self.run(self._store.close())
            self.run(self.cleanup())
        finally:
            self.loop.close()

    @initialize()
    def open(self) -> None:
        self._store = self.run(self.open_store())
        for sid in SIDS[:3]:
            self.run(self.store.create_session(SessionRecord(id=sid, agent="mock")))
            self.model.create(sid, "mock")

    @invariant()
    def streams_and_records_match_the_model(self) -> None:
        if self._store is None:
            return
        for sid, session in self.model.sessions.items():
            assert dumped(self.run(self.store.read(sid))) == dumped(session.events), sid
            self.check_record(sid, self.run(self.store.get_session(sid)))
        self.list_sessions(2, None)

    # -- sessions -----------------------------------------------------------------------
    @rule(sid=st.sampled_from(SIDS), agent=st.sampled_from(["mock", "claude"]))
    def create_session(self, sid: str, agent: str) -> None:
        got, value = self.outcome(
            self.store.create_session(SessionRecord(id=sid, agent=agent, metadata={"k": sid}))
        )
        if sid in self.model.sessions:
            assert got == "SessionExists", (got, value)
            return
        assert got == "ok", (got, value)
        self.model.create(sid, agent, metadata={"k": sid})
        assert value.id == sid and value.agent == agent
        assert (value.last_sequence, value.event_count, value.status) == (0, 0, "active")

    @rule(
        sid=st.sampled_from(SIDS),
        title=st.none() | st.text(max_size=5) | st.sampled_from(["\x00", "a\x00b"]),
        metadata=st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    def update_session(self, sid: str, title: str | None, metadata: dict[str, Any] | None) -> None:
        got, value = self.outcome(self.store.update_session(sid, title=title, metadata=metadata))
        if title is not None and "\x00" in title:
            # Refused before the session is looked up, on every driver: nothing changes.
            assert got == "InvalidText" and value.field == "title", (got, value)
            return
        session = self.model.sessions.get(sid)
        if session is None:
            assert got == "SessionNotFound", (got, value)
            return
        assert got == "ok", (got, value)
        if title is not None:
            session.title = title
        if metadata is not None:
            session.metadata = metadata
        self.check_record(sid, value)

    @rule(sid=st.sampled_from(SIDS))
    def delete_session(self, sid: str) -> None:
        deleted = self.run(self.store.delete_session(sid))
        assert deleted is (sid in self.model.sessions)
        if deleted:
            self.model.delete(sid)

    def check_record(self, sid: str, record: SessionRecord | None) -> None:
        session = self.model.sessions[sid]
        assert record is not None, sid
        want = {
            "id": sid,
            "agent": session.agent,
            "title": session.title,
            "metadata": session.metadata,
            "status": session.status,
            "ended_at": session.ended_at,
            "native_session_id": session.native_session_id,
            "last_sequence": len(session.events),
            "event_count": len(session.events),
        }
        assert {k: getattr(record, k) for k in want} == want

    @rule()
    def check_sessions(self) -> None:
        for sid in SIDS:
            record = self.run(self.store.get_session(sid))
            if sid in self.model.sessions:
                self.check_record(sid, record)
                assert self.run(self.store.last_sequence(sid)) == len(
                    self.model.sessions[sid].events
                )
            else:
                assert record is None

    @rule(limit=st.integers(1, 5), status=st.sampled_from([None, "active", "ended"]))
    def list_sessions(self, limit: int, status: Any) -> None:
        seen: list[str] = []
        cursor = None
        for _ in range(len(SIDS) * 2 + 2):
            page = self.run(self.store.list_sessions(limit=limit, cursor=cursor, status=status))
            assert len(page.items) <= limit
            seen.extend(r.id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == self.model.newest_first(status)

    # -- append -------------------------------------------------------------------------
    @rule(sid=st.sampled_from(SIDS), specs=batches, expect=st.sampled_from(["none", "current"]))
    def append(self, sid: str, specs: list[Any], expect: str) -> None:
        self.append_batch(sid, specs, expect, 0)

    @rule(sid=st.sampled_from(SIDS), specs=full_batches, current=st.booleans())
    def append_more(self, sid: str, specs: list[Any], current: bool) -> None:
        self.append_batch(sid, specs, "current" if current else "none", 0)

    @rule(sid=st.sampled_from(SIDS), specs=full_batches, off=st.integers(1, 3))
    def append_with_a_stale_expected_sequence(self, sid: str, specs: list[Any], off: int) -> None:
        self.append_batch(sid, specs, "stale", off)

    @rule(sid=st.sampled_from(SIDS), n=st.integers(5, 15), spec=draft_specs)
    def append_a_long_batch(self, sid: str, n: int, spec: tuple[Any, ...]) -> None:
        self.append_batch(sid, [spec] * n, "none", 0)

    def append_batch(self, sid: str, specs: list[Any], expect: str, off: int) -> None:
        drafts = [make_draft(self.next_event_id(), spec) for spec in specs]
        session = self.model.sessions.get(sid)
        last = len(session.events) if session is not None else 0
        expected: int | None = None
        if expect == "current":
            expected = last
        elif expect == "stale" and drafts:
            # Behind or ahead of the stream, never equal to it.
            expected = last - off if last - off >= 0 else last + off
        got, value = self.outcome(self.store.append(sid, drafts, expected_sequence=expected))
        if session is None:
            assert got == "SessionNotFound", (got, value)
            return
        if expect == "stale" and drafts:
            assert got == "SequenceConflict", (got, value)
            assert (value.expected, value.actual) == (expected, last)
            return
        assert got == "ok", (got, value)
        assert len(value) == len(drafts)
        for i, (event, draft) in enumerate(zip(value, drafts, strict=True)):
            assert event.sequence == last + 1 + i
            assert event.session_id == sid
            assert same_as_draft(event, draft), (event, draft)
        self.model.commit(sid, value)

    def stored_slice(self, sid: str, start: int, length: int) -> list[UniversalEvent]:
        events = self.model.sessions[sid].events
        start = start % len(events)
        return events[start : start + length]

    def has_events(self) -> bool:
        return any(s.events for s in self.model.sessions.values())

    def with_events(self, index: int) -> str:
        sids = [s for s in SIDS if s in self.model.sessions and self.model.sessions[s].events]
        return sids[index % len(sids)]

    @precondition(has_events)
    @rule(
        index=st.integers(0, 3),
        start=st.integers(0, 50),
        length=st.integers(1, 5),
        expected=st.none() | st.integers(0, 30),
        keep_time=st.booleans(),
    )
    def reappend_is_a_noop(
        self, index: int, start: int, length: int, expected: int | None, keep_time: bool
    ) -> None:
        sid = self.with_events(index)
        stored = self.stored_slice(sid, start, length)
        drafts = [EventDraft.from_event(e) for e in stored]
        if not keep_time:  # a writer that let the store pick the time retries without one
            drafts = [d.model_copy(update={"time": None}) for d in drafts]
        got, value = self.outcome(self.store.append(sid, drafts, expected_sequence=expected))
        assert got == "ok", (got, value)
        assert dumped(value) == dumped(stored)

    @precondition(has_events)
    @rule(
        index=st.integers(0, 3),
        start=st.integers(0, 50),
        how=st.sampled_from(["content", "partly", "twice"]),
        expected=st.none() | st.integers(0, 30),
    )
    def conflicting_reappend(self, index: int, start: int, how: str, expected: int | None) -> None:
        sid = self.with_events(index)
        [event] = self.stored_slice(sid, start, 1)
        draft = EventDraft.from_event(event)
        if how == "content":
            batch = [EventDraft(**{**draft.model_dump(), "type": "x.other", "data": {"v": 1}})]
        elif how == "partly":
            batch = [draft, make_draft(self.next_event_id(), ("x.future", "", None, None, 0, 0))]
        else:
            fresh = make_draft(self.next_event_id(), ("item.delta", "t", None, None, 0, None))
            batch = [fresh, fresh]
        got, value = self.outcome(self.store.append(sid, batch, expected_sequence=expected))
        allowed = {"IdempotencyConflict"}
        if expected is not None and expected != len(self.model.sessions[sid].events):
            allowed.add("SequenceConflict")  # which of the two is reported is not specified
        assert got in allowed, (got, value)

    # -- reading ------------------------------------------------------------------------
    def pick(self, index: int) -> str:
        """A session that exists (the longest streams first), or an unknown one for index 4."""
        known = sorted(self.model.sessions, key=lambda s: -len(self.model.sessions[s].events))
        return known[index % len(known)] if known and index < 4 else "unknown"

    @rule(index=st.integers(0, 4), after=st.integers(0, 20), limit=st.none() | st.integers(1, 7))
    def read(self, index: int, after: int, limit: int | None) -> None:
        sid = self.pick(index)
        got, value = self.outcome(self.store.read(sid, after=after, limit=limit))
        session = self.model.sessions.get(sid)
        if session is None:
            assert got == "SessionNotFound", (got, value)
            return
        want = session.events[after:]
        if limit is not None:
            want = want[:limit]
        assert got == "ok", (got, value)
        assert dumped(value) == dumped(want)

    @rule(index=st.integers(0, 3), page=st.integers(1, 6))
    def read_in_pages(self, index: int, page: int) -> None:
        sid = self.pick(index)
        if sid not in self.model.sessions:
            return
        seen: list[UniversalEvent] = []
        after = 0
        while chunk := self.run(self.store.read(sid, after=after, limit=page)):
            seen.extend(chunk)
            after = chunk[-1].sequence
        assert dumped(seen) == dumped(self.model.sessions[sid].events)

    @rule(page=st.integers(1, 8))
    def read_all(self, page: int) -> None:
        found: list[tuple[str, str]] = []
        positions: list[int] = []
        after = 0
        while chunk := self.run(self.store.read_all(after_position=after, limit=page)):
            assert len(chunk) <= page
            positions.extend(p.position for p in chunk)
            found.extend((p.event.session_id, p.event.event_id) for p in chunk)
            after = chunk[-1].position
        assert found == self.model.log
        assert all(x < y for x, y in itertools.pairwise(positions))

    @rule(index=st.integers(0, 4), after=st.integers(0, 20), n=st.integers(1, 10))
    def subscribe(self, index: int, after: int, n: int) -> None:
        sid = self.pick(index)
        session = self.model.sessions.get(sid)
        if session is None:
            got, value = self.outcome(take(self.store, sid, 1, timeout=10))
            assert got == "SessionNotFound", (got, value)
            return
        want = session.events[after : after + n]
        if not want:
            return
        got_events = self.run(take(self.store, sid, len(want), after=after))
        assert dumped(got_events) == dumped(want)

    # -- fork, prune, snapshots -----------------------------------------------------------
    @rule(
        source=st.sampled_from(SIDS),
        new=st.sampled_from(SIDS),
        at=st.none() | st.integers(0, 20),
    )
    def fork(self, source: str, new: str, at: int | None) -> None:
        got, value = self.outcome(self.store.fork_session(source, new, at=at))
        src = self.model.sessions.get(source)
        if src is None:
            assert got == "SessionNotFound", (got, value)
            return
        if new in self.model.sessions:
            assert got == "SessionExists", (got, value)
            return
        assert got == "ok", (got, value)
        upto = len(src.events) if at is None else min(at, len(src.events))
        forked = {"session_id": source, "sequence": upto}
        self.model.create(
            new, src.agent, title=src.title, metadata={**src.metadata, "forked_from": forked}
        )
        copies = self.run(self.store.read(new))
        assert len(copies) == upto
        keep = ("type", "data", "source", "synthetic", "native_session_id", "raw", "time")
        for i, (copy, original) in enumerate(zip(copies, src.events, strict=False), start=1):
            assert copy.sequence == i and copy.session_id == new
            assert {k: getattr(copy, k) for k in keep} == {k: getattr(original, k) for k in keep}
        assert len({c.event_id for c in copies}) == upto
        assert {c.event_id for c in copies}.isdisjoint(e.event_id for e in src.events)
        self.model.commit(new, copies)
        self.check_record(new, value)

    @rule(
        status=st.sampled_from([None, "active", "ended"]),
        keep_latest=st.none() | st.integers(0, 3),
        older_than=st.sampled_from([None, FAR_PAST, FAR_FUTURE]),
    )
    def prune(self, status: Any, keep_latest: int | None, older_than: datetime | None) -> None:
        result = self.run(
            self.store.prune(older_than=older_than, keep_latest=keep_latest, status=status)
        )
        candidates = self.model.newest_first(status)
        if keep_latest:
            candidates = candidates[keep_latest:]
        if older_than == FAR_PAST:
            candidates = []
        events = sum(len(self.model.sessions[s].events) for s in candidates)
        assert (sorted(result.sessions), result.events) == (sorted(candidates), events)
        for sid in candidates:
            self.model.delete(sid)

    @rule(
        sid=st.sampled_from(SIDS),
        sequence=st.integers(0, 6),
        version=st.integers(1, 2),
        value=st.integers(),
    )
    def save_snapshot(self, sid: str, sequence: int, version: int, value: int) -> None:
        state = {"value": value, "at": [sequence]}
        got, saved = self.outcome(self.store.save_snapshot(sid, sequence, state, version))
        session = self.model.sessions.get(sid)
        if session is None:
            assert got == "SessionNotFound", (got, saved)
            return
        assert got == "ok", (got, saved)
        session.snapshots[(sequence, version)] = state
        self.load_snapshot(sid, sequence, version)

    @rule(
        sid=st.sampled_from(SIDS),
        at_or_before=st.none() | st.integers(0, 7),
        version=st.none() | st.integers(1, 2),
    )
    def load_snapshot(self, sid: str, at_or_before: int | None, version: int | None) -> None:
        session = self.model.sessions.get(sid)
        if session is None:
            return
        snap = self.run(self.store.load_snapshot(sid, at_or_before=at_or_before, version=version))
        # The highest sequence wins; at one sequence, the highest version.
        matching = [
            (seq, ver)
            for seq, ver in session.snapshots
            if (at_or_before is None or seq <= at_or_before) and (version is None or ver == version)
        ]
        if not matching:
            assert snap is None
            return
        seq, ver = max(matching)
        state = session.snapshots[(seq, ver)]
        assert snap is not None
        assert (snap.session_id, snap.sequence, snap.version, snap.state) == (sid, seq, ver, state)

    @rule(
        sid=st.sampled_from(SIDS),
        keep_latest=st.integers(0, 3),
        keep_every=st.none() | st.integers(1, 4),
        version=st.none() | st.integers(1, 2),
    )
    def prune_snapshots(
        self, sid: str, keep_latest: int, keep_every: int | None, version: int | None
    ) -> None:
        deleted = self.run(
            self.store.prune_snapshots(
                sid, keep_latest=keep_latest, keep_every=keep_every, version=version
            )
        )
        session = self.model.sessions.get(sid)
        if session is None:
            assert deleted == 0
            return
        # The model of the policy: of the snapshots of ``version`` (all when None), the newest
        # keep_latest and the newest of each span of keep_every sequences stay.
        keys = sorted(k for k in session.snapshots if version is None or k[1] == version)
        kept = set(keys[-keep_latest:] if keep_latest else [])
        if keep_every is not None:
            kept |= {
                max(k for k in keys if k[0] // keep_every == span)
                for span in {k[0] // keep_every for k in keys}
            }
        doomed = [k for k in session.snapshots if k not in kept]
        assert deleted == len(doomed)
        for key in doomed:
            del session.snapshots[key]
        assert self.run(self.store.snapshot_keys(sid)) == sorted(session.snapshots)

    # -- lifecycle ----------------------------------------------------------------------
    @precondition(lambda self: self.reopens)
    @rule()
    def reopen(self) -> None:
        self._store = self.run(self.reopen_store(self.store))


def store_machine(
    make_store: Callable[[], Awaitable[EventStore]],
    *,
    reopen: Callable[[EventStore], Awaitable[EventStore]] | None = None,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    name: str = "StoreMachine",
) -> type[StoreMachine]:
    """A machine over ``make_store()`` (a new, empty, open store per example). ``reopen``
    closes a store and opens its data again (without it the machine never reopens);
    ``cleanup()`` runs after each example, once the store is closed."""

    class Machine(StoreMachine):
        reopens = reopen is not None

        async def open_store(self) -> EventStore:
            return await make_store()

        async def reopen_store(self, store: EventStore) -> EventStore:
            assert reopen is not None
            return await reopen(store)

        async def cleanup(self) -> None:
            if cleanup is not None:
                await cleanup()

    Machine.__name__ = Machine.__qualname__ = name
    return Machine


def url_store_machine(
    fresh_url: Callable[[Path], str],
    *,
    drop: Callable[[str], Awaitable[None]] | None = None,
    name: str = "StoreMachine",
) -> type[StoreMachine]:
    """A machine over ``open_store`` of ``fresh_url(tmp_dir)`` (a URL of an empty store; the
    directory is new for each example and removed after it), which it also reopens (unless
    the URL is ``memory://``). ``drop(url)`` removes the store after each example."""

    class Machine(StoreMachine):
        def __init__(self) -> None:
            self.tmp = Path(tempfile.mkdtemp(prefix="store-machine-"))
            self.url = fresh_url(self.tmp)
            self.reopens = not self.url.startswith("memory:")
            super().__init__()

        async def open_store(self) -> EventStore:
            return await open_store(self.url)

        async def reopen_store(self, store: EventStore) -> EventStore:
            await store.close()
            return await open_store(self.url)

        async def cleanup(self) -> None:
            try:
                if drop is not None:
                    await drop(self.url)
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)

    Machine.__name__ = Machine.__qualname__ = name
    return Machine


def run_store_machine(
    machine: type[StoreMachine] | Callable[[], Awaitable[EventStore]],
    *,
    examples: int = 100,
    steps: int = 30,
    **overrides: Any,
) -> None:
    """Run ``machine`` (or ``store_machine(machine)`` for a factory of stores) as a test:
    ``examples`` examples of up to ``steps`` steps, no deadline, no example database;
    ``overrides`` are more hypothesis ``settings`` (``phases=...``, ``print_blob=True``)."""
    runs = machine if isinstance(machine, type) else store_machine(machine)
    run_state_machine_as_test(
        runs,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
            **overrides,
        ),
    )
