"""The in-memory driver (``memory://``): dicts in this process, for tests and ephemeral use."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from sandbox_agent.events import EventDraft, UniversalEvent, utc_now
from sandbox_agent.store.base import (
    DEFAULT_PAGE,
    EventStore,
    Projection,
    check_batch_ids,
    decode_session_cursor,
    encode_session_cursor,
    fill_drafts,
    resolve_retry,
)
from sandbox_agent.store.errors import (
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
)
from sandbox_agent.store.records import (
    Page,
    PositionedEvent,
    SessionRecord,
    SessionStatus,
    Snapshot,
)

log = logging.getLogger(__name__)


class _Stream:
    __slots__ = ("by_id", "events", "positions", "record", "snapshots")

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self.events: deque[UniversalEvent] = deque()
        self.positions: deque[int] = deque()
        self.by_id: dict[str, UniversalEvent] = {}
        self.snapshots: dict[tuple[int, int], Snapshot] = {}


class MemoryEventStore(EventStore):
    """Every stream in process memory. Caps are optional; when one is hit the oldest session or
    event is evicted, counted in ``evicted_sessions`` / ``evicted_events`` and logged."""

    def __init__(
        self, *, max_sessions: int | None = None, max_events_per_session: int | None = None
    ) -> None:
        super().__init__()
        for name, cap in (
            ("max_sessions", max_sessions),
            ("max_events_per_session", max_events_per_session),
        ):
            if cap is not None and cap < 1:
                raise StoreConfigError(f"memory store: {name} must be >= 1, got {cap}")
        self._max_sessions = max_sessions
        self._max_events = max_events_per_session
        self._streams: dict[str, _Stream] = {}
        self._created: dict[str, int] = {}  # session id -> creation order, for eviction
        self._counter = 0
        self._position = 0
        self.evicted_sessions = 0
        self.evicted_events = 0

    def _stream(self, session_id: str) -> _Stream:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFound(session_id)
        return stream

    async def create_session(self, record: SessionRecord) -> SessionRecord:
        if record.id in self._streams:
            raise SessionExists(record.id)
        now = utc_now()
        stored = record.model_copy(
            update={
                "created_at": record.created_at or now,
                "updated_at": now,
                "status": "active",
                "ended_at": None,
                "native_session_id": None,
                "last_sequence": 0,
                "event_count": 0,
            }
        )
        if self._max_sessions is not None and len(self._streams) >= self._max_sessions:
            oldest = min(self._created, key=self._created.__getitem__)
            await self.delete_session(oldest)
            self.evicted_sessions += 1
            log.warning(
                "memory store full (max_sessions=%d): evicted session %s",
                self._max_sessions,
                oldest,
            )
        self._streams[record.id] = _Stream(stored)
        self._counter += 1
        self._created[record.id] = self._counter
        return stored

    async def get_session(self, session_id: str) -> SessionRecord | None:
        stream = self._streams.get(session_id)
        return None if stream is None else stream.record

    async def list_sessions(
        self,
        limit: int = 100,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        agent: str | None = None,
    ) -> Page[SessionRecord]:
        key = None if cursor is None else decode_session_cursor(cursor)
        records = sorted(
            (stream.record for stream in self._streams.values()),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        items: list[SessionRecord] = []
        for record in records:
            if key is not None and (record.created_at, record.id) >= key:
                continue
            if status is not None and record.status != status:
                continue
            if agent is not None and record.agent != agent:
                continue
            if len(items) == limit:
                return Page(items=items, next_cursor=encode_session_cursor(items[-1]))
            items.append(record)
        return Page(items=items, next_cursor=None)

    async def update_session(
        self,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionRecord:
        stream = self._stream(session_id)
        changes: dict[str, Any] = {"updated_at": utc_now()}
        if title is not None:
            changes["title"] = title
        if metadata is not None:
            changes["metadata"] = json.loads(json.dumps(metadata))
        stream.record = stream.record.model_copy(update=changes)
        return stream.record

    async def delete_session(self, session_id: str) -> bool:
        if self._streams.pop(session_id, None) is None:
            return False
        del self._created[session_id]
        self._deleted(session_id)
        return True

    async def append(
        self,
        session_id: str,
        drafts: Sequence[EventDraft],
        expected_sequence: int | None = None,
    ) -> list[UniversalEvent]:
        stream = self._stream(session_id)
        if not drafts:
            return []
        filled = fill_drafts(drafts)
        check_batch_ids(session_id, filled)
        known = {eid: stream.by_id[eid] for _, eid, _ in filled if eid in stream.by_id}
        retried = resolve_retry(session_id, filled, known)
        if retried is not None:
            return retried
        last = stream.record.last_sequence
        if expected_sequence is not None and expected_sequence != last:
            raise SequenceConflict(session_id, expected_sequence, last)
        record = stream.record
        projection = Projection(record.status, record.ended_at, record.native_session_id)
        stored: list[UniversalEvent] = []
        for offset, (draft, event_id, time) in enumerate(filled, start=1):
            # Copy mutable payloads so a caller's later mutation cannot change history.
            event = UniversalEvent.model_construct(
                **{
                    **draft.to_event(
                        session_id=session_id, sequence=last + offset, event_id=event_id, time=time
                    ).__dict__,
                    "data": _copy(draft.data),
                    "raw": _copy(draft.raw),
                }
            )
            stored.append(event)
            projection.apply(event.type, event.time, event.native_session_id)
        for event in stored:
            self._position += 1
            stream.events.append(event)
            stream.positions.append(self._position)
            stream.by_id[event.event_id] = event
        self._evict(stream)
        stream.record = record.model_copy(
            update={
                "last_sequence": last + len(stored),
                "event_count": record.event_count + len(stored),
                "updated_at": utc_now(),
                "status": projection.status,
                "ended_at": projection.ended_at,
                "native_session_id": projection.native_session_id,
            }
        )
        self._appended(session_id, stored)
        return stored

    def _evict(self, stream: _Stream) -> None:
        if self._max_events is None:
            return
        dropped = 0
        while len(stream.events) > self._max_events:
            event = stream.events.popleft()
            stream.positions.popleft()
            del stream.by_id[event.event_id]
            dropped += 1
        if dropped:
            self.evicted_events += dropped
            log.warning(
                "memory store: session %s over max_events_per_session=%d, evicted %d oldest events",
                stream.record.id,
                self._max_events,
                dropped,
            )

    async def read(
        self, session_id: str, after: int = 0, limit: int | None = None
    ) -> list[UniversalEvent]:
        stream = self._stream(session_id)
        if not stream.events:
            return []
        first = stream.events[0].sequence
        start = max(0, after - first + 1)
        stop = len(stream.events) if limit is None else min(len(stream.events), start + limit)
        return [stream.events[i] for i in range(start, stop)]

    async def last_sequence(self, session_id: str) -> int:
        return self._stream(session_id).record.last_sequence

    async def read_all(
        self, after_position: int = 0, limit: int = DEFAULT_PAGE
    ) -> list[PositionedEvent]:
        found: list[PositionedEvent] = []
        for stream in self._streams.values():
            for position, event in zip(stream.positions, stream.events, strict=True):
                if position > after_position:
                    found.append(PositionedEvent(position, event))
        found.sort(key=lambda pe: pe.position)
        return found[:limit]

    async def save_snapshot(
        self, session_id: str, sequence: int, state: dict[str, Any], version: int
    ) -> Snapshot:
        stream = self._stream(session_id)
        snapshot = Snapshot(
            session_id=session_id, sequence=sequence, version=version, state=_copy(state)
        )
        stream.snapshots[(sequence, version)] = snapshot
        return snapshot

    async def load_snapshot(
        self,
        session_id: str,
        at_or_before: int | None = None,
        version: int | None = None,
    ) -> Snapshot | None:
        stream = self._streams.get(session_id)
        if stream is None:
            return None
        best: Snapshot | None = None
        for (sequence, snap_version), snapshot in stream.snapshots.items():
            if at_or_before is not None and sequence > at_or_before:
                continue
            if version is not None and snap_version != version:
                continue
            if best is None or (sequence, snap_version) > (best.sequence, best.version):
                best = snapshot
        return None if best is None else best.model_copy(update={"state": _copy(best.state)})

    async def snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        stream = self._streams.get(session_id)
        return [] if stream is None else sorted(stream.snapshots)

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        stream = self._streams.get(session_id)
        if stream is None:
            return 0
        return sum(stream.snapshots.pop(key, None) is not None for key in set(keys))


def _copy(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value))
