"""The in-memory driver (``memory://``): rows in dicts of this process, for tests and ephemeral
use. Options: ``max_sessions`` and ``max_events_per_session`` (when one is hit the oldest
session or event is evicted, counted and logged)."""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pydantic_core import from_json, to_json

from sandbox_agent.events.envelope import utc_now
from sandbox_agent.store.checkpoints import (
    CheckpointRow,
    CheckpointTransaction,
    check_consumer_name,
    check_position,
)
from sandbox_agent.store.driver import (
    EventRow,
    IntegrityReport,
    PositionedRow,
    RewrittenRow,
    SessionChange,
    SnapshotRow,
    StorageDriver,
    StoredRow,
)
from sandbox_agent.store.errors import (
    DuplicateEventId,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    StoreError,
)
from sandbox_agent.store.event_store import EventStore
from sandbox_agent.store.records import SessionRecord, SessionStatus
from sandbox_agent.store.url import int_option, no_more_options, split_url

log = logging.getLogger(__name__)


class _Stream:
    __slots__ = ("ids", "positions", "record", "rows", "snapshots")

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self.rows: deque[tuple[Any, ...]] = deque()  # StoredRow tuples, by sequence
        self.positions: deque[int] = deque()
        self.ids: set[str] = set()
        self.snapshots: dict[tuple[int, int], SnapshotRow] = {}


class MemoryDriver(StorageDriver):
    """Every stream in process memory. Caps are optional; when one is hit the oldest session or
    event is evicted, counted in ``evicted_sessions`` / ``evicted_events`` and logged."""

    def __init__(
        self, *, max_sessions: int | None = None, max_events_per_session: int | None = None
    ) -> None:
        for name, cap in (
            ("max_sessions", max_sessions),
            ("max_events_per_session", max_events_per_session),
        ):
            if cap is not None and cap < 1:
                raise StoreConfigError(f"memory store: {name} must be >= 1, got {cap}")
        self._max_sessions = max_sessions
        self._max_events = max_events_per_session
        self.drops_oldest_events = max_events_per_session is not None
        self._streams: dict[str, _Stream] = {}  # in creation order: the first is the oldest
        self._position = 0
        self._wake: Callable[[str], None] = lambda _: None
        self.evicted_sessions = 0
        self.evicted_events = 0
        # Consumers: name -> (position, updated_at), and the lock each transaction holds.
        self._checkpoints: dict[str, tuple[int, datetime]] = {}
        self._checkpoint_locks: dict[str, asyncio.Lock] = {}

    def attach(self, wake: Callable[[str], None]) -> None:
        self._wake = wake  # for sessions evicted by the cap

    # -- sessions -------------------------------------------------------------------------
    async def insert_session(self, record: SessionRecord) -> None:
        if record.id in self._streams:
            raise SessionExists(record.id)
        if self._max_sessions is not None and len(self._streams) >= self._max_sessions:
            oldest = next(iter(self._streams))
            del self._streams[oldest]
            self._wake(oldest)
            self.evicted_sessions += 1
            log.warning(
                "memory store full (max_sessions=%d): evicted session %s",
                self._max_sessions,
                oldest,
            )
        # A copy through JSON: a caller's later change to its metadata cannot reach the store.
        self._streams[record.id] = _Stream(_copied(record))

    async def select_session(self, session_id: str) -> SessionRecord | None:
        stream = self._streams.get(session_id)
        return None if stream is None else stream.record

    async def select_sessions(
        self,
        *,
        limit: int,
        before: tuple[datetime, str] | None,
        status: SessionStatus | None,
        agent: str | None,
    ) -> list[SessionRecord]:
        records = sorted(
            (stream.record for stream in self._streams.values()),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        found: list[SessionRecord] = []
        for record in records:
            if before is not None and (record.created_at, record.id) >= before:
                continue
            if status is not None and record.status != status:
                continue
            if agent is not None and record.agent != agent:
                continue
            found.append(record)
            if len(found) == limit:
                break
        return found

    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> bool:
        stream = self._streams.get(session_id)
        if stream is None:
            return False
        stream.record = _copied(stream.record.model_copy(update=dict(changes)))
        return True

    async def delete_session(self, session_id: str) -> bool:
        return self._streams.pop(session_id, None) is not None

    # -- events ---------------------------------------------------------------------------
    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFound(session_id)
        last = stream.record.last_sequence
        if expected_sequence is not None and expected_sequence != last:
            raise SequenceConflict(session_id, expected_sequence, last)
        if any(row.event_id in stream.ids for row in rows):
            raise DuplicateEventId(session_id)
        for offset, row in enumerate(rows, start=1):
            self._position += 1
            stream.rows.append((last + offset, *row))
            stream.positions.append(self._position)
            stream.ids.add(row.event_id)
        self._evict(stream)
        stream.record = change.applied_to(stream.record)
        return last

    def _evict(self, stream: _Stream) -> None:
        if self._max_events is None:
            return
        dropped = 0
        while len(stream.rows) > self._max_events:
            row = stream.rows.popleft()
            stream.positions.popleft()
            stream.ids.discard(row[1])
            dropped += 1
        if dropped:
            self.evicted_events += dropped
            log.warning(
                "memory store: session %s over max_events_per_session=%d, evicted %d oldest events",
                stream.record.id,
                self._max_events,
                dropped,
            )

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFound(session_id)
        if not stream.rows:
            return []
        start = max(0, after - stream.rows[0][0] + 1)
        stop = len(stream.rows) if limit is None else min(len(stream.rows), start + limit)
        return [stream.rows[i] for i in range(start, stop)]

    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        stream = self._streams.get(session_id)
        if stream is None:
            return []
        wanted = set(event_ids) & stream.ids
        return [row for row in stream.rows if row[1] in wanted] if wanted else []

    async def rewrite_events(self, session_id: str, rows: Sequence[RewrittenRow]) -> None:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFound(session_id)
        first = stream.rows[0][0] if stream.rows else 1
        places = []
        for row in rows:
            index = row.sequence - first
            if not 0 <= index < len(stream.rows):
                raise StoreError(
                    f"session {session_id!r}: no stored event {row.sequence} to rewrite "
                    "(nothing was written)"
                )
            places.append(index)
        for index, row in zip(places, rows, strict=True):
            old = stream.rows[index]
            version = old[9] if row.schema_version is None else row.schema_version
            stream.rows[index] = (*old[:7], row.data, row.raw, version)

    async def check_integrity(self) -> IntegrityReport:
        # Python objects, no pages or files: nothing that can rot.
        return IntegrityReport(supported=True, method="memory: nothing to check")

    async def select_last_sequence(self, session_id: str) -> int | None:
        stream = self._streams.get(session_id)
        return None if stream is None else stream.record.last_sequence

    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        found = [
            (position, stream.record.id, *row)
            for stream in self._streams.values()
            for position, row in zip(stream.positions, stream.rows, strict=True)
            if position > after_position
        ]
        found.sort(key=lambda row: row[0])
        return found[:limit]

    # -- consumer checkpoints -------------------------------------------------------------
    # In-process: the handler's writes are on_commit callbacks, run with the checkpoint's move
    # and no await in between, so no other task sees one without the other.
    @asynccontextmanager
    async def checkpoint_transaction(self, name: str) -> AsyncIterator[CheckpointTransaction]:
        check_consumer_name(name)
        async with self._checkpoint_locks.setdefault(name, asyncio.Lock()):
            position = self._checkpoints.get(name, (0, utc_now()))[0]
            txn = CheckpointTransaction(name, position)
            yield txn
            self._checkpoints[name] = (txn.position, utc_now())
            txn.committed()

    async def select_checkpoints(self) -> list[CheckpointRow]:
        positions = sorted(p for stream in self._streams.values() for p in stream.positions)
        return [
            CheckpointRow(name, position, at, len(positions) - bisect.bisect(positions, position))
            for name, (position, at) in sorted(self._checkpoints.items())
        ]

    async def write_checkpoint(self, name: str, position: int | None) -> bool:
        check_consumer_name(name)
        async with self._checkpoint_locks.setdefault(name, asyncio.Lock()):
            existed = name in self._checkpoints
            if position is None:
                self._checkpoints.pop(name, None)
            else:
                self._checkpoints[name] = (check_position(position), utc_now())
        return existed

    # -- snapshots ------------------------------------------------------------------------
    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFound(session_id)
        stream.snapshots[(sequence, version)] = SnapshotRow(sequence, version, state, created_at)

    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        stream = self._streams.get(session_id)
        if stream is None:
            return None
        keys = [
            key
            for key in stream.snapshots
            if (at_or_before is None or key[0] <= at_or_before)
            and (version is None or key[1] == version)
        ]
        return stream.snapshots[max(keys)] if keys else None

    async def select_snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        stream = self._streams.get(session_id)
        return [] if stream is None else sorted(stream.snapshots)

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        stream = self._streams.get(session_id)
        if stream is None:
            return 0
        return sum(stream.snapshots.pop(key, None) is not None for key in set(keys))


def _copied(record: SessionRecord) -> SessionRecord:
    if not record.metadata and not record.init:
        return record
    return record.model_copy(
        update={
            "metadata": from_json(to_json(record.metadata)),
            "init": from_json(to_json(record.init)),
        }
    )


async def open_memory_store(url: str, **options: Any) -> EventStore:
    """``memory://?max_sessions=100&max_events_per_session=10000``."""
    _, query = split_url(url)
    merged: dict[str, Any] = {**query, **options}
    merged.pop("migrate", None)  # nothing to migrate
    driver = MemoryDriver(
        max_sessions=int_option(merged, "max_sessions"),
        max_events_per_session=int_option(merged, "max_events_per_session"),
    )
    no_more_options(merged, url)
    return EventStore(driver)
