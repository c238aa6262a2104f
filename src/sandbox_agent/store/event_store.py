"""``EventStore``: the one store every part of sandbox-agent uses, over a ``StorageDriver``.

An ``EventStore`` keeps one append-only stream of ``UniversalEvent`` per session, numbered
1..N with no gaps, plus a ``sessions`` projection kept in step with each append, and snapshots
of reducer state. Everything that is the same for every backend lives here: validating drafts
and encoding them, idempotent retries, the session projection of a batch, decoding rows into
validated events, snapshot decoding and retention, subscribe with its in-memory tail, fork and
prune. Backends implement only the primitives of ``store/driver.py``: ``memory.py``,
``sqlite.py``, ``postgres.py`` here, others in their own distributions
(``store/registry.py``).

Example::

    async with await open_store("sqlite:///events.db") as store:
        await store.create_session(SessionRecord(id="s1", agent="mock"))
        stored = await store.append("s1", [EventDraft(type="session.started")], expected_sequence=0)
        async for event in store.subscribe("s1"):
            print(event.sequence, event.type)
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from pydantic_core import PydanticSerializationError, from_json

from sandbox_agent.events import EventDraft, UniversalEvent, format_time, new_event_id, utc_now
from sandbox_agent.events.envelope import TIME_FORMAT
from sandbox_agent.events.versions import UPCASTERS, UpcastError, Upcasters
from sandbox_agent.store.codec import (
    decode_positioned_rows,
    decode_rows,
    dump_json,
    paused_gc,
    upcast_rows,
)
from sandbox_agent.store.driver import (
    EventRow,
    IntegrityReport,
    SessionChange,
    StorageDriver,
    StoredRow,
)
from sandbox_agent.store.errors import (
    NUL,
    SURROGATE,
    DuplicateEventId,
    IdempotencyConflict,
    InvalidCursor,
    InvalidText,
    SchemaVersionError,
    SequenceConflict,
    SessionNotFound,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreKeyError,
)
from sandbox_agent.store.leases import SessionLeases
from sandbox_agent.store.notify import ChangeNotifier, wait_for
from sandbox_agent.store.ownership import Owner, OwnershipLock, StoreOwned
from sandbox_agent.store.records import (
    Page,
    PositionedEvent,
    PruneResult,
    SessionRecord,
    SessionStatus,
    Snapshot,
)
from sandbox_agent.store.seal import (
    PREFIX,
    SEALED_KEY,
    Sealer,
    Where,
    envelope_of,
    escaped,
    is_envelope,
    needs_escape,
    plain_text,
)
from sandbox_agent.store.tail import StreamTails, fitting, stored_bytes

DEFAULT_PAGE = 1000
#: The first read of a subscriber bounded in bytes, in events (later reads size themselves).
FIRST_BOUNDED_PAGE = 16


class EventStore:
    """An append-only, per-session event log over a ``StorageDriver``. Every method is a
    coroutine; errors are ``StoreError`` subclasses. Open one with ``open_store(url)``, or
    wrap a driver of your own: ``EventStore(MyDriver())``."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        sealer: Sealer | None = None,
        upcasters: Upcasters | None = None,
    ) -> None:
        self.driver = driver
        self.sealer = sealer
        #: The upcasters reads apply to events stored at an old schema version, and whose
        #: current versions appends write (events/versions.py); the process-wide registry
        #: unless given.
        self.upcasters = UPCASTERS if upcasters is None else upcasters
        self._notifier = ChangeNotifier()
        self._tails = StreamTails()
        self._closed = False
        self._ownership: OwnershipLock | None = None
        driver.attach(self._notifier.notify)

    @property
    def sealer(self) -> Sealer | None:
        """How new payloads and snapshot states are sealed (compressed, encrypted): None for
        plain. ``open_store`` sets it from its ``compress`` and ``keys`` options
        (``store/seal.py``). Reads open envelopes whatever it is, as far as its keys allow."""
        return self._sealer

    @sealer.setter
    def sealer(self, sealer: Sealer | None) -> None:
        self._sealer = sealer if sealer is not None and sealer.active else None
        self._opener = sealer or Sealer()

    def _payload(self, session_id: str, event_id: str, field: str, value: Any) -> str:
        """The stored text of an event's ``data`` or ``raw`` (not None)."""
        text = encode_json(session_id, field, value)
        if self._sealer is not None:
            return self._sealer.seal(text, Where(session_id, 0, event_id, field))
        return escaped(text) if needs_escape(value) else text

    def _state_text(self, session_id: str, sequence: int, version: int, text: str) -> str:
        where = Where(session_id, sequence, f"snapshot {sequence}/{version}", "state")
        return plain_text(text) if self._sealer is None else self._sealer.seal(text, where)

    def _open_state(self, session_id: str, sequence: int, version: int, state: str) -> str:
        if not is_envelope(state):
            return state
        where = Where(session_id, sequence, f"snapshot {sequence}/{version}", "state")
        return self._opener.open(state, where)

    def _open_rows(
        self,
        session_id: str | None,
        rows: Sequence[Any],
        *,
        keep_encrypted: bool = False,
        found: list[StoreCorrupt] | None = None,
    ) -> Sequence[Any]:
        """``rows`` with their envelopes opened (the rest untouched, the list itself when
        nothing is sealed). ``session_id`` None: rows of the global log, which start with
        ``(position, session_id)``. With ``found`` (``verify``), a payload that does not open
        is a finding there and stays as stored, and one whose key is missing stays unchecked."""
        at = 0 if session_id is not None else 2
        prefix = PREFIX
        first = -1
        for index, row in enumerate(rows):
            data, raw = row[at + 7], row[at + 8]
            # The common case in two string tests: neither payload is an envelope.
            if (type(data) is str and not data.startswith(prefix)) and (
                raw is None or (type(raw) is str and not raw.startswith(prefix))
            ):
                continue
            if is_envelope(data) or (raw is not None and is_envelope(raw)):
                first = index
                break
        if first < 0:
            return rows
        opened = list(rows)
        opener = self._opener
        fields = ((at + 7, "data"), (at + 8, "raw"))
        with paused_gc():  # many short-lived objects: collections would cost more than opening
            for index in range(first, len(opened)):
                row = opened[index]
                values: list[Any] | None = None
                for column, name in fields:
                    stored = row[column]
                    if stored is None:
                        continue
                    if type(stored) is str:
                        if not stored.startswith(prefix):
                            continue
                    elif not is_envelope(stored):
                        continue
                    if values is None:
                        values = list(row)
                    sid = session_id if session_id is not None else row[1]
                    sequence = row[at] if type(row[at]) is int else 0
                    where = Where(sid, sequence, str(row[at + 1]), name)
                    try:
                        text = opener.open(stored, where, keep_encrypted=keep_encrypted)
                        if keep_encrypted and text is not stored:
                            text = plain_text(text)  # as an export shows it: escaped again
                        values[column] = text
                    except StoreKeyError:
                        if found is None:
                            raise
                    except StoreCorrupt as exc:
                        if found is None:
                            raise
                        found.append(exc)
                if values is not None:
                    opened[index] = values
        return opened

    def _appended(
        self, session_id: str, stored: Sequence[UniversalEvent], sizes: Sequence[int]
    ) -> None:
        """After a committed append: its events (and their sizes) go to the session's
        subscribers."""
        self._tails.add(session_id, stored, sizes)
        self._notifier.notify(session_id)

    def _deleted(self, session_id: str) -> None:
        """After a delete: subscribers wake and find the session gone."""
        self._tails.drop(session_id)
        self._notifier.notify(session_id)

    # -- sessions -------------------------------------------------------------------------
    async def create_session(self, record: SessionRecord) -> SessionRecord:
        """Store a new session with an empty stream. Raises ``SessionExists`` for a taken id.
        The projection fields of ``record`` are ignored (the store keeps them). ``InvalidText``
        for a text it cannot keep (a NUL in a text column, a lone surrogate anywhere)."""
        refuse_unstorable(
            record.id, ((name, getattr(record, name)) for name in SESSION_TEXT_FIELDS)
        )
        encode_json(record.id, "init", record.init)
        encode_json(record.id, "metadata", record.metadata)
        stored = record.model_copy(
            update={
                "updated_at": utc_now(),
                "status": "active",
                "ended_at": None,
                "native_session_id": None,
                "last_sequence": 0,
                "event_count": 0,
            }
        )
        await self.driver.insert_session(stored)
        return stored

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None."""
        return await self.driver.select_session(session_id)

    async def list_sessions(
        self,
        limit: int = 100,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        agent: str | None = None,
    ) -> Page[SessionRecord]:
        """Sessions newest first (by creation), keyset-paginated with an opaque cursor that stays
        valid while sessions are added."""
        before = None if cursor is None else decode_session_cursor(cursor)
        rows = await self.driver.select_sessions(
            limit=limit + 1, before=before, status=status, agent=agent
        )
        items = rows[:limit]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_session_cursor(items[-1]) if more else None)

    async def all_sessions(self, status: SessionStatus | None = None) -> list[SessionRecord]:
        """Every session (with ``status``, any when None), newest first: all pages of
        ``list_sessions``."""
        records: list[SessionRecord] = []
        cursor: str | None = None
        while True:
            page = await self.list_sessions(limit=500, cursor=cursor, status=status)
            records.extend(page.items)
            if page.next_cursor is None:
                return records
            cursor = page.next_cursor

    async def update_session(
        self,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionRecord:
        """Set the user annotations (``title``; ``metadata`` replaces the old one). Raises
        ``SessionNotFound``; ``InvalidText`` for a NUL character in ``title``, whether the
        session exists or not."""
        refuse_unstorable(session_id, [("title", title)])
        if metadata is not None:
            encode_json(session_id, "metadata", metadata)
        changes: dict[str, Any] = {"updated_at": utc_now()}
        if title is not None:
            changes["title"] = title
        if metadata is not None:
            changes["metadata"] = metadata
        if not await self.driver.update_session(session_id, changes):
            raise SessionNotFound(session_id)
        record = await self.driver.select_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session with its events and snapshots. False when there was none."""
        deleted = await self.driver.delete_session(session_id)
        self._deleted(session_id)
        return deleted

    # -- events ---------------------------------------------------------------------------
    async def append(
        self,
        session_id: str,
        drafts: Sequence[EventDraft],
        expected_sequence: int | None = None,
    ) -> list[UniversalEvent]:
        """Append a batch atomically; return the stored events.

        ``expected_sequence`` is the last sequence the writer has seen (0 for an empty stream);
        if the stream has moved on, nothing is written and ``SequenceConflict`` is raised.
        Idempotent by ``event_id``: if every event of the batch is already stored with equal
        content, the stored events are returned and nothing is written (even when
        ``expected_sequence`` is stale); an ``event_id`` stored with other content, or a batch
        only partly stored, raises ``IdempotencyConflict``. ``SessionNotFound`` for an unknown
        session. An empty batch writes nothing and returns []. ``InvalidText`` for a NUL
        character in an ``event_id``, ``type`` or ``native_session_id``.
        """
        if not drafts:
            await self.last_sequence(session_id)  # SessionNotFound for an unknown session
            return []
        filled = fill_drafts(drafts)
        check_batch_ids(session_id, filled)
        check_batch_text(session_id, filled)
        payload = self._payload
        rows = [
            self._row(
                draft,
                event_id,
                time,
                payload(session_id, event_id, "data", draft.data),
                None if draft.raw is None else payload(session_id, event_id, "raw", draft.raw),
            )
            for draft, event_id, time in filled
        ]
        return await self._insert(session_id, filled, rows, expected_sequence)

    async def append_exported(
        self,
        session_id: str,
        drafts: Sequence[EventDraft],
        expected_sequence: int | None = None,
    ) -> list[UniversalEvent]:
        """``append`` for events as ``export`` wrote them (``import`` uses it): a payload that
        is an envelope (an object with a ``$sealed`` key) is opened here, so it must carry its
        event id and open with this store's keys; an encrypted one is stored as it came (not
        sealed again), any other as ``append`` stores it. The returned events hold plain
        payloads."""
        if not drafts:
            return await self.append(session_id, drafts, expected_sequence)
        filled = fill_drafts(drafts)
        check_batch_ids(session_id, filled)
        check_batch_text(session_id, filled)
        plain: list[tuple[EventDraft, str, datetime]] = []
        rows: list[EventRow] = []
        for draft, event_id, time in filled:
            texts: dict[str, str | None] = {"data": None, "raw": None}
            values: dict[str, Any] = {"data": draft.data, "raw": draft.raw}
            for name, value in list(values.items()):
                if value is None:
                    continue
                if needs_escape(value):
                    text = encode_json(session_id, name, value)
                    where = Where(session_id, 0, event_id, name)
                    opened = self._opener.open(text, where)
                    values[name] = from_json(opened)
                    encrypted = (
                        isinstance(value[SEALED_KEY], str)
                        and value[SEALED_KEY] != "plain"
                        and self._opener.open(text, where, keep_encrypted=True) == text
                    )
                    # Encrypted: kept as it came; anything else stored as ``append`` would.
                    texts[name] = (
                        text
                        if encrypted
                        else self._payload(session_id, event_id, name, values[name])
                    )
                else:
                    texts[name] = self._payload(session_id, event_id, name, value)
            if not isinstance(values["data"], dict):
                raise StoreError(
                    f"session {session_id!r}, event {event_id!r}: data must open to an object"
                )
            opened_draft = draft.model_copy(update={"data": values["data"], "raw": values["raw"]})
            plain.append((opened_draft, event_id, time))
            data_text = texts["data"]
            assert data_text is not None
            rows.append(self._row(draft, event_id, time, data_text, texts["raw"]))
        return await self._insert(session_id, plain, rows, expected_sequence)

    def _row(
        self, draft: EventDraft, event_id: str, time: datetime, data: str, raw: str | None
    ) -> EventRow:
        """A draft's row, its payloads stored as ``data`` and ``raw``, at its type's current
        schema version."""
        return EventRow(
            event_id,
            time,
            draft.type,
            draft.source,
            draft.synthetic,
            draft.native_session_id,
            data,
            raw,
            self.upcasters.current(draft.type),
        )

    async def _insert(
        self,
        session_id: str,
        filled: Sequence[tuple[EventDraft, str, datetime]],
        rows: Sequence[EventRow],
        expected_sequence: int | None,
    ) -> list[UniversalEvent]:
        try:
            last = await self.driver.insert_events(
                session_id, rows, expected_sequence, session_change(filled)
            )
        except (SequenceConflict, DuplicateEventId) as exc:
            # A retry of a batch stored before, or a real conflict.
            found = await self.driver.select_events_by_id(session_id, [row[0] for row in rows])
            opened = self._current(session_id, self._open_rows(session_id, found))
            retried = resolve_retry(
                session_id, filled, {e.event_id: e for e in decode_rows(session_id, opened)}
            )
            if retried is not None:
                return retried
            if isinstance(exc, SequenceConflict):
                raise
            raise StoreError(
                f"session {session_id!r}: append failed, nothing was written: {exc}"
            ) from exc
        stored = [
            draft.to_event(session_id=session_id, sequence=last + i, event_id=event_id, time=time)
            for i, (draft, event_id, time) in enumerate(filled, start=1)
        ]
        # Sized only when a subscriber here keeps them (most appends have none).
        watched = self._tails.watched(session_id)
        sizes = [stored_bytes(row.data, row.raw) for row in rows] if watched else []
        self._appended(session_id, stored, sizes)
        return stored

    async def read(
        self, session_id: str, after: int = 0, limit: int | None = None
    ) -> list[UniversalEvent]:
        """Events with ``sequence > after`` in order, at most ``limit``. ``SessionNotFound`` for
        an unknown session. ``StoreCorrupt`` when what is stored breaks the numbering (a gap,
        a page shorter than the session's row promises) or a row does not decode: a damaged
        stream is never served as a shorter one."""
        events, _, _ = await self._read_page(session_id, after, limit)
        return events

    async def read_exported(
        self, session_id: str, after: int = 0, limit: int | None = None
    ) -> list[UniversalEvent]:
        """``read`` for ``export``: encrypted payloads stay the envelopes they are stored as
        (no key needed), other payloads are plain, and a plain object with a ``$sealed`` key
        of its own is shown escaped (``{"$sealed": "plain", "value": ...}``), so that
        ``append_exported`` reads every payload back as it was."""
        events, _, _ = await self._read_page(session_id, after, limit, keep_encrypted=True)
        return events

    async def _read_page(
        self,
        session_id: str,
        after: int,
        limit: int | None,
        max_bytes: int | None = None,
        *,
        keep_encrypted: bool = False,
    ) -> tuple[list[UniversalEvent], bool, int]:
        """``read``, cut to ``max_bytes`` (``fitting``); whether more may follow (the page was
        full or cut), and the mean ``stored_bytes`` of the rows read (0 without ``max_bytes``)."""
        rows = await self.driver.select_events(session_id, after, limit)
        full = limit is not None and len(rows) >= limit
        mean = 0
        if max_bytes is not None and rows:
            sizes = [stored_bytes(row[7], row[8]) for row in rows]
            mean = sum(sizes) // len(sizes)
            keep = fitting(sizes, max_bytes)
            if keep < len(rows):
                rows, full = rows[:keep], True
        rows = self._open_rows(session_id, rows, keep_encrypted=keep_encrypted)
        events = decode_checked(session_id, self._current(session_id, rows))
        last = check_numbering(session_id, after, events, self.driver.drops_oldest_events)
        if not full:
            await self._check_end(session_id, last)
        return events, full, mean

    def _current(self, session_id: str, rows: Sequence[StoredRow]) -> Sequence[StoredRow]:
        """``rows`` with the data of old schema versions upcast; ``SchemaVersionError`` when
        one cannot be (an upcaster missing or failing)."""
        try:
            return upcast_rows(rows, self.upcasters)
        except UpcastError as exc:
            raise SchemaVersionError(f"session {session_id!r}: {exc}") from exc

    async def _check_end(self, session_id: str, last: int) -> None:
        """A short page ends at ``last``: so must the stream, unless an append committed after
        the rows were read, in which case its first event follows ``last``. One key lookup per
        short page (the row), two when the row is ahead."""
        promised = await self.driver.select_last_sequence(session_id)
        if promised is None or promised <= last:
            return
        after = await self.driver.select_events(session_id, last, 1)
        if after and int(after[0][0]) == last + 1:
            return  # a concurrent append, not a gap
        raise StoreCorrupt(
            session_id,
            f"events {_span(last + 1, promised)} missing: the session's row says its last "
            f"sequence is {promised}, the stored events end at {last}",
            sequence=last + 1,
        )

    async def verify(self, session_id: str) -> list[StoreCorrupt]:
        """Compare the session's row with every stored event: gaps in the numbering, rows that
        do not decode, an event count or a last sequence other than the row's. Each finding is
        a ``StoreCorrupt`` (not raised); [] when row and events agree. ``SessionNotFound`` for
        an unknown session. Reads the whole stream (``replay --check``)."""
        record = await self.driver.select_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        promised = record.last_sequence
        found: list[StoreCorrupt] = []
        count = last = 0
        while True:
            try:
                rows = await self.driver.select_events(session_id, last, DEFAULT_PAGE)
            except StoreCorrupt as exc:  # the database's own report (SQLite: malformed)
                found.append(exc)
                break
            if not rows:
                break
            moved = False
            rows = self._open_rows(session_id, rows, found=found)
            try:
                decode_rows(session_id, upcast_rows(rows, self.upcasters))
                page_decodes = True
            except ValueError:  # row by row below, to name the bad ones
                page_decodes = False
            for row in rows:
                try:
                    sequence = int(row[0])
                except (TypeError, ValueError):
                    found.append(_undecodable(session_id, last + 1, "its sequence is not a number"))
                    continue
                if sequence <= last:
                    found.append(
                        StoreCorrupt(
                            session_id,
                            f"sequence {sequence} after {last}: out of order or repeated",
                            sequence=sequence,
                            kind="row_mismatch",
                        )
                    )
                    continue
                if sequence > last + 1 and not (count == 0 and self.driver.drops_oldest_events):
                    found.append(_gap(session_id, last + 1, sequence - 1, promised))
                if not page_decodes:
                    try:
                        decode_rows(session_id, upcast_rows([row], self.upcasters))
                    except ValueError as exc:  # pydantic's ValidationError, bad JSON alike
                        found.append(_undecodable(session_id, sequence, _first_line(exc)))
                last, moved = sequence, True
                count += sequence <= promised
            if not moved or len(rows) < DEFAULT_PAGE:
                break
        if last < promised and not any(f.kind == "database" for f in found):
            found.append(_gap(session_id, last + 1, promised, promised))
        if last > promised:
            # Appended since the row was read, or a row behind its events: read it again.
            promised = await self.last_sequence(session_id)
            if last > promised:
                found.append(
                    StoreCorrupt(
                        session_id,
                        f"events up to sequence {last} are stored, the session's row says its "
                        f"last sequence is {promised}",
                        sequence=promised + 1,
                        kind="row_mismatch",
                    )
                )
        if not self.driver.drops_oldest_events and (
            record.event_count != record.last_sequence
            or (count != record.event_count and not found)
        ):
            found.append(
                StoreCorrupt(
                    session_id,
                    f"the session's row says {record.event_count} events and last sequence "
                    f"{record.last_sequence}; {count} events are stored up to it",
                    kind="row_mismatch",
                )
            )
        return found

    async def check_integrity(self) -> IntegrityReport:
        """The database's own integrity check (``replay --check --deep``), through the driver:
        SQLite ``PRAGMA integrity_check``, Postgres ``amcheck`` when installed; a driver without
        one answers "not supported"."""
        return await self.driver.check_integrity()

    async def last_sequence(self, session_id: str) -> int:
        """The sequence of the newest event (0 when empty). ``SessionNotFound`` if unknown."""
        last = await self.driver.select_last_sequence(session_id)
        if last is None:
            raise SessionNotFound(session_id)
        return last

    async def read_all(
        self, after_position: int = 0, limit: int = DEFAULT_PAGE
    ) -> list[PositionedEvent]:
        """Every event of every session with ``position > after_position``, by position.

        Positions increase with commit order, so a reader that resumes after the last position
        it saw never skips an event that commits later."""
        rows = await self.driver.select_all(after_position, limit)
        opened = self._open_rows(None, rows)
        try:
            return decode_positioned_rows(upcast_rows(opened, self.upcasters, first=2))
        except UpcastError as exc:
            raise SchemaVersionError(str(exc)) from exc

    # -- snapshots ------------------------------------------------------------------------
    async def save_snapshot(
        self, session_id: str, sequence: int, state: dict[str, Any], version: int
    ) -> Snapshot:
        """Save (or replace) the reducer state after ``sequence``. ``SessionNotFound`` if
        unknown."""
        snapshot = Snapshot(session_id=session_id, sequence=sequence, version=version, state=state)
        text = dump_json(state)
        if self._sealer is not None or SEALED_KEY in state:
            text = self._state_text(session_id, sequence, version, text)
        await self.driver.insert_snapshot(session_id, sequence, version, text, snapshot.created_at)
        return snapshot

    async def save_snapshot_json(
        self, session_id: str, sequence: int, state_json: str, version: int
    ) -> None:
        """``save_snapshot`` with the state given as JSON text of an object, stored as it is
        (writers of large states use it: no dict in between)."""
        if not state_json.lstrip().startswith("{"):
            raise ValueError("a snapshot's state must be a JSON object")
        text = self._state_text(session_id, sequence, version, state_json)
        await self.driver.insert_snapshot(session_id, sequence, version, text, utc_now())

    async def load_snapshot(
        self,
        session_id: str,
        at_or_before: int | None = None,
        version: int | None = None,
    ) -> Snapshot | None:
        """The snapshot with the highest ``sequence <= at_or_before`` (any when None), of
        ``version`` when given; between versions at one sequence, the highest version."""
        row = await self.driver.select_snapshot(session_id, at_or_before, version)
        if row is None:
            return None
        with paused_gc():
            return Snapshot(
                session_id=session_id,
                sequence=row.sequence,
                version=row.version,
                state=from_json(self._open_state(session_id, row.sequence, row.version, row.state)),
                created_at=row.created_at,
            )

    async def load_snapshot_json(
        self,
        session_id: str,
        at_or_before: int | None = None,
        version: int | None = None,
    ) -> tuple[int, str] | None:
        """The snapshot ``load_snapshot`` would give, as its sequence and its state as JSON
        text: the reader validates it in one pass (``state_at``'s fast path)."""
        row = await self.driver.select_snapshot(session_id, at_or_before, version)
        if row is None:
            return None
        return row.sequence, self._open_state(session_id, row.sequence, row.version, row.state)

    async def snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        """``(sequence, version)`` of each of the session's snapshots, in that order; [] for an
        unknown session."""
        return await self.driver.select_snapshot_keys(session_id)

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        """Delete the session's snapshots with these ``(sequence, version)`` keys; how many
        there were."""
        return await self.driver.delete_snapshots(session_id, keys) if keys else 0

    async def prune_snapshots(
        self,
        session_id: str,
        *,
        keep_latest: int,
        keep_every: int | None = None,
        version: int | None = None,
    ) -> int:
        """Delete the session's snapshots but the newest ``keep_latest`` and, with
        ``keep_every``, the newest in each span of that many sequences (``[0, keep_every)``,
        ``[keep_every, 2 * keep_every)``, ...), so that any point of the stream has a snapshot
        less than two spans before it. With ``version``, snapshots of any other version go as
        well (no reader of this version uses them). Returns how many were deleted."""
        if keep_latest < 0 or (keep_every is not None and keep_every <= 0):
            raise ValueError("keep_latest must be >= 0 and keep_every > 0")
        # One listing: a snapshot saved after it (by another writer) is never deleted here.
        listed = await self.snapshot_keys(session_id)
        keys = listed if version is None else [key for key in listed if key[1] == version]
        kept = set(keys[-keep_latest:] if keep_latest else [])
        if keep_every is not None:
            newest: dict[int, tuple[int, int]] = {}
            for key in keys:  # ascending: the last of a span is its newest
                newest[key[0] // keep_every] = key
            kept.update(newest.values())
        doomed = [key for key in listed if key not in kept]
        return await self.delete_snapshots(session_id, doomed) if doomed else 0

    # -- lifecycle ------------------------------------------------------------------------
    async def claim(self, where: str = "") -> None:
        """Own the store for this process until ``close`` (a server does, before it recovers
        its sessions). ``StoreOwned``, naming the holder, while another process owns it."""
        lock = self.driver.ownership_lock()
        if lock is None or self._ownership is not None:
            return
        holder = await lock.acquire(Owner.this_process())
        if holder is not None:
            raise StoreOwned(where or type(self.driver).__name__, holder)
        self._ownership = lock

    async def share(self, lease_seconds: float, where: str = "") -> SessionLeases:
        """Run as one of several servers sharing the store, each holding the leases of the
        sessions it runs (``store/leases.py``), instead of owning it alone (``claim``).
        ``StoreConfigError`` for a driver that cannot lease sessions; ``StoreOwned`` while a
        server owns the store alone. The shared claim is held until ``close``."""
        where = where or type(self.driver).__name__
        driver = self.driver.session_leases()
        if driver is None:
            raise StoreConfigError(
                f"the store {where} cannot be shared by several servers (no session leases: "
                "Postgres has them); run one server on it"
            )
        leases = SessionLeases(driver, lease_seconds)  # ValueError for a length out of bounds
        if self._ownership is None:
            lock = driver.ownership_lock()
            holder = await lock.acquire(Owner.this_process())
            if holder is not None:
                raise StoreOwned(where, holder, "a server that owns it alone excludes sharing")
            self._ownership = lock
        return leases

    async def close(self) -> None:
        """Release connections (and the ownership of ``claim``); wakes every subscriber,
        which then ends."""
        if self._closed:
            return
        lock, self._ownership = self._ownership, None
        if lock is not None:
            await lock.release()
        # Subscribers first: once woken they see the store closed and end, instead of
        # reading through connections that are going away.
        self._closed = True
        self._notifier.notify_all()
        await self.driver.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- built on the primitives ----------------------------------------------------------
    async def subscribe(
        self, session_id: str, after: int = 0, *, page_size: int = DEFAULT_PAGE
    ) -> AsyncIterator[UniversalEvent]:
        """Yield the stored events after ``after``, then every new one as it commits, by this
        process or another using the same database. Never skips or repeats an event, however
        slow the consumer: it reads from the store, it is not fed from a buffer. Ends when the
        store closes; raises ``SessionNotFound`` if the session is (or becomes) unknown."""
        async with contextlib.aclosing(
            self.subscribe_batches(session_id, after, page_size=page_size)
        ) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def subscribe_batches(
        self,
        session_id: str,
        after: int = 0,
        *,
        page_size: int = DEFAULT_PAGE,
        max_bytes: int | None = None,
    ) -> AsyncGenerator[list[UniversalEvent], None]:
        """``subscribe`` a batch at a time: each batch (never empty, at most ``page_size``
        events) is what one read found, or what appends in this process committed since the
        last batch, which is served from memory (``store/tail.py``) instead of read back.

        With ``max_bytes``, a batch also holds at most that many bytes (``stored_bytes``: the
        stored JSON and an envelope each), but at least one event whatever its size: each read
        asks for as many events as fit at the mean size of the previous read (the first for
        ``FIRST_BOUNDED_PAGE``) and keeps those that fit, so a consumer that stops holds one
        such batch, not ``page_size`` events of any size."""
        last = after
        limit = page_size if max_bytes is None else min(page_size, FIRST_BOUNDED_PAGE)
        self._tails.subscribe(session_id)
        try:
            while not self._closed:
                # Take the waiter before reading so that a commit after the read still wakes us.
                waiter = self._notifier.waiter(session_id)
                events = self._tails.after(session_id, last, limit, max_bytes)
                more = len(events) == limit or (
                    bool(events) and events[-1].sequence < self._tails.newest(session_id)
                )
                if not events:
                    try:
                        events, more, mean = await self._read_page(
                            session_id, last, limit, max_bytes
                        )
                    except StoreError:
                        if self._closed:
                            return  # closed while reading: end quietly, as promised
                        raise
                    if max_bytes is not None and mean:
                        limit = max(1, min(page_size, max_bytes // mean))
                if events:
                    last = events[-1].sequence
                    yield events
                if not more:
                    await wait_for(waiter, self.driver.poll_interval)
        finally:
            self._tails.unsubscribe(session_id)

    async def fork_session(
        self, source_id: str, new_id: str, at: int | None = None
    ) -> SessionRecord:
        """A new session whose stream is a copy of ``source_id``'s events 1..``at`` (all when
        None), with new event ids and ``metadata.forked_from``. If copying fails, the new
        session is removed again."""
        source = await self.get_session(source_id)
        if source is None:
            raise SessionNotFound(source_id)
        upto = source.last_sequence if at is None else min(at, source.last_sequence)
        record = source.model_copy(
            update={
                "id": new_id,
                "created_at": utc_now(),
                "updated_at": utc_now(),
                "metadata": {
                    **source.metadata,
                    "forked_from": {"session_id": source_id, "sequence": upto},
                },
            }
        )
        created = await self.create_session(record)
        try:
            after = 0
            while after < upto:
                page = await self.read(
                    source_id, after=after, limit=min(DEFAULT_PAGE, upto - after)
                )
                if not page:
                    break
                drafts = [
                    EventDraft.model_construct(**_draft_fields(event), event_id=new_event_id())
                    for event in page
                ]
                await self.append(new_id, drafts, expected_sequence=after)
                after = page[-1].sequence
        except BaseException:
            await self.delete_session(new_id)
            raise
        return await self.get_session(new_id) or created

    async def prune(
        self,
        older_than: datetime | None = None,
        keep_latest: int | None = None,
        status: SessionStatus | None = "ended",
    ) -> PruneResult:
        """Delete sessions (with ``status``, any when None) last updated before ``older_than``,
        sparing the ``keep_latest`` newest of them. With neither bound, every session with
        ``status`` goes. Returns the ids removed and how many events went with them."""
        candidates = await self.all_sessions(status)
        if keep_latest:
            candidates = candidates[keep_latest:]
        if older_than is not None:
            candidates = [s for s in candidates if s.updated_at < older_than]
        removed: list[str] = []
        events = 0
        for record in candidates:
            if await self.delete_session(record.id):
                removed.append(record.id)
                events += record.event_count
        return PruneResult(sessions=removed, events=events)


def exported_view(event: UniversalEvent) -> UniversalEvent:
    """``event`` with a plain payload that has a ``$sealed`` key of its own escaped."""
    if not needs_escape(event.data) and not needs_escape(event.raw):
        return event
    return event.model_copy(update={"data": envelope_of(event.data), "raw": envelope_of(event.raw)})


def decode_checked(session_id: str, rows: Sequence[StoredRow]) -> list[UniversalEvent]:
    """``decode_rows``, with a row that does not decode reported as ``StoreCorrupt`` naming its
    sequence (found row by row, only once the page failed)."""
    try:
        return decode_rows(session_id, rows)
    except ValueError:  # pydantic's ValidationError, bad JSON, bad UTF-8
        pass
    for row in rows:
        try:
            decode_rows(session_id, [row])
        except ValueError as exc:
            sequence = row[0] if isinstance(row[0], int) else 0
            raise _undecodable(session_id, sequence, _first_line(exc)) from exc
    raise AssertionError("a page that fails to decode has a row that fails")  # pragma: no cover


def check_numbering(
    session_id: str, after: int, events: Sequence[UniversalEvent], truncated_ok: bool = False
) -> int:
    """The last sequence of a page read after ``after``; ``StoreCorrupt`` unless the page
    numbers ``after + 1, after + 2, ...`` without a hole (streams are numbered 1..N). With
    ``truncated_ok`` (a driver that drops the oldest events), the page may start later."""
    last = after
    if truncated_ok and events and events[0].sequence > after:
        last = events[0].sequence - 1
    for event in events:
        if event.sequence != last + 1:
            if event.sequence > last + 1:
                raise _gap(session_id, last + 1, event.sequence - 1, None)
            raise StoreCorrupt(
                session_id,
                f"sequence {event.sequence} after {last}: out of order or repeated",
                sequence=event.sequence,
                kind="row_mismatch",
            )
        last = event.sequence
    return last


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def _gap(session_id: str, first: int, last: int, promised: int | None) -> StoreCorrupt:
    said = "" if promised is None else f" (the session's row says its last sequence is {promised})"
    return StoreCorrupt(
        session_id, f"events {_span(first, last)} missing{said}", sequence=first, kind="gap"
    )


def _undecodable(session_id: str, sequence: int, why: str) -> StoreCorrupt:
    return StoreCorrupt(
        session_id,
        f"event {sequence} does not decode: {why}",
        sequence=sequence,
        kind="undecodable",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _draft_fields(event: UniversalEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "data": event.data,
        "source": event.source,
        "synthetic": event.synthetic,
        "time": event.time,
        "native_session_id": event.native_session_id,
        "raw": event.raw,
    }


def fill_drafts(drafts: Sequence[EventDraft]) -> list[tuple[EventDraft, str, datetime]]:
    """Give each draft its event id and time (those it carries are kept)."""
    now = utc_now()
    return [(d, d.event_id or new_event_id(), d.time or now) for d in drafts]


def check_batch_ids(session_id: str, filled: Sequence[tuple[EventDraft, str, datetime]]) -> None:
    seen: set[str] = set()
    for _, event_id, _ in filled:
        if event_id in seen:
            raise IdempotencyConflict(session_id, event_id, "event_id appears twice in the batch")
        seen.add(event_id)


#: The text columns of a session's row that a caller fills (``native_session_id`` comes from the
#: events); a NUL character or a lone surrogate in them is refused.
SESSION_TEXT_FIELDS = (
    "id",
    "agent",
    "agent_mode",
    "permission_mode",
    "model",
    "variant",
    "title",
    "directory",
)


def unstorable(value: str) -> str | None:
    """What in ``value`` the store cannot keep in a text column (``InvalidText``'s words), or
    None."""
    if "\x00" in value:
        return NUL
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return SURROGATE
    return None


def refuse_unstorable(session_id: str, fields: Iterable[tuple[str, str | None]]) -> None:
    """``InvalidText`` for the first text field the store cannot keep. Every driver answers
    alike, before any I/O."""
    for name, value in fields:
        what = None if value is None else unstorable(value)
        if what is not None:
            raise InvalidText(session_id, name, what)


def encode_json(session_id: str, field: str, value: Any) -> str:
    """``value`` as JSON text; ``InvalidText`` for a lone surrogate in it."""
    try:
        return dump_json(value)
    except PydanticSerializationError as exc:
        if "surrogates not allowed" in str(exc):
            raise InvalidText(session_id, field, SURROGATE) from None
        raise


def check_batch_text(session_id: str, filled: Sequence[tuple[EventDraft, str, datetime]]) -> None:
    """``refuse_unstorable`` over the text columns of a batch: event ids, types, native session
    ids (the last one given also lands in the session's row)."""
    for draft, event_id, _ in filled:
        native = draft.native_session_id or ""
        text = event_id + draft.type + native
        if "\x00" in text or not text.isascii():  # the append path: one check per event
            fields = (("event_id", event_id), ("type", draft.type), ("native_session_id", native))
            refuse_unstorable(session_id, fields)


def same_content(draft: EventDraft, stored: UniversalEvent) -> bool:
    """Whether re-appending ``draft`` would store what ``stored`` already holds."""
    return (
        draft.type == stored.type
        and draft.data == stored.data
        and draft.source == stored.source
        and draft.synthetic == stored.synthetic
        and draft.native_session_id == stored.native_session_id
        and draft.raw == stored.raw
        and (draft.time is None or draft.time == stored.time)
    )


def resolve_retry(
    session_id: str,
    filled: Sequence[tuple[EventDraft, str, datetime]],
    stored_by_id: dict[str, UniversalEvent],
) -> list[UniversalEvent] | None:
    """Decide a batch some of whose ids are already stored.

    Returns the stored events when the whole batch is stored with equal content (a retry);
    None when none of it is stored; raises ``IdempotencyConflict`` otherwise.
    """
    if not stored_by_id:
        return None
    for draft, event_id, _ in filled:
        stored = stored_by_id.get(event_id)
        if stored is None:
            raise IdempotencyConflict(
                session_id, event_id, "the batch is partly stored already; retry it whole"
            )
        if not same_content(draft, stored):
            raise IdempotencyConflict(
                session_id, event_id, "event_id is already stored with different content"
            )
    return sorted(stored_by_id.values(), key=lambda e: e.sequence)


SESSION_STATUS_BY_TYPE: dict[str, Literal["active", "ended"]] = {
    "session.ended": "ended",
    "session.resumed": "active",
}


def session_change(filled: Sequence[tuple[EventDraft, str, datetime]]) -> SessionChange:
    """The one projection of a batch onto its session's row: ``session.ended`` ends the
    session (``ended_at`` = its time), ``session.resumed`` makes it active again, the last
    native session id given wins."""
    status: SessionStatus | None = None
    ended_at: datetime | None = None
    native: str | None = None
    for draft, _, time in filled:
        if draft.native_session_id is not None:
            native = draft.native_session_id
        new_status = SESSION_STATUS_BY_TYPE.get(draft.type)
        if new_status is not None:
            status = new_status
            ended_at = time if new_status == "ended" else None
    return SessionChange(
        count=len(filled),
        updated_at=utc_now(),
        status=status,
        ended_at=ended_at,
        native_session_id=native,
    )


def encode_session_cursor(record: SessionRecord) -> str:
    """The opaque ``list_sessions`` cursor after ``record``: its (created_at, id) key."""
    raw = f"s:{format_time(record.created_at)}|{record.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_session_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        kind, _, rest = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        created, sep, session_id = rest.partition("|")
        if kind != "s" or not sep:
            raise ValueError(cursor)
        return datetime.strptime(created, TIME_FORMAT).replace(tzinfo=UTC), session_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor(cursor) from exc
