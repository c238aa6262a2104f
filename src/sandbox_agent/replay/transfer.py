"""Portable copies of sessions: export to JSON Lines and import back, losslessly.

The format, one JSON object a line::

    {"kind": "session", "session": {...SessionRecord...}}
    {"kind": "event", "event": {...UniversalEvent, raw included...}}
    {"kind": "event", "event": {...}, "schema_version": 2}
    ...

An event line names the schema version of its ``data`` when it is above 1
(``events/versions.py``); an export holds current shapes, and importing a file whose lines are
at older versions upcasts them with the store's upcasters before they are written.

Each session's header line comes before its events, which are its whole stream in order.
Payloads encrypted at rest (docs/persistence.md, "Encryption and compression") are written as
they are stored, ``{"$sealed": "..."}`` envelopes, unless ``decrypt``; importing them needs the
same keys. A plain payload object with a ``$sealed`` key of its own is written escaped,
``{"$sealed": "plain", "value": ...}``, so every payload reads back as it was.
Importing creates the sessions that are missing and appends their events with their own ids
and times; events already in the store are checked (by the store's idempotent append), never
written twice, so re-importing a file adds nothing. A store that holds *other* events for a
session in the file is left unchanged and the import stops with a ``TransferError``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TextIO

from pydantic import BaseModel, Field, ValidationError

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.events.versions import FIRST_VERSION, UpcastError, Upcasters
from sandbox_agent.replay.errors import TransferError
from sandbox_agent.store import (
    EventStore,
    IdempotencyConflict,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    SessionRecord,
)
from sandbox_agent.store.codec import SEALED_OLD
from sandbox_agent.store.event_store import exported_view
from sandbox_agent.store.seal import SEALED_KEY

EXPORT_PAGE = 1000
IMPORT_BATCH = 500

Progress = Callable[[int], None]


class ExportSummary(BaseModel):
    sessions: list[str]
    events: int


class ImportSummary(BaseModel):
    sessions: list[str] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list)
    events_written: int = 0
    events_skipped: int = 0


def _line(kind: str, body: BaseModel) -> str:
    return json.dumps({"kind": kind, kind: body.model_dump(mode="json")}, ensure_ascii=False)


def _event_line(event: UniversalEvent, upcasters: Upcasters) -> str:
    line: dict[str, Any] = {"kind": "event", "event": event.model_dump(mode="json")}
    version = upcasters.current(event.type)
    if version != FIRST_VERSION:
        line["schema_version"] = version
    return json.dumps(line, ensure_ascii=False)


def _current_event(line: dict[str, Any], upcasters: Upcasters) -> UniversalEvent:
    """The event of an event line, its data upcast from the line's schema version."""
    body = line["event"]
    version = line.get("schema_version", FIRST_VERSION)
    if not isinstance(version, int) or version < FIRST_VERSION:
        raise ValueError(f"schema_version must be an integer >= {FIRST_VERSION}, not {version!r}")
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        kind = body.get("type")
        if isinstance(kind, str) and upcasters.is_stale(kind, version):
            if SEALED_KEY in body["data"]:
                raise UpcastError(kind, version, SEALED_OLD)
            body = {**body, "data": upcasters.upcast(kind, version, body["data"])}
    return UniversalEvent.model_validate(body)


async def export_sessions(
    store: EventStore,
    session_ids: Sequence[str],
    out: TextIO,
    *,
    on_progress: Progress | None = None,
    decrypt: bool = False,
) -> ExportSummary:
    """Write the sessions (record, then every event with its raw payload) to ``out``.
    Encrypted payloads stay encrypted (no key needed) unless ``decrypt``.
    Raises ``SessionNotFound`` before writing anything if a session is unknown;
    ``on_progress(n)`` is called after each page of ``n`` events."""
    records: list[SessionRecord] = []
    for session_id in dict.fromkeys(session_ids):
        record = await store.get_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        records.append(record)
    events = 0
    read = _read_decrypted(store) if decrypt else store.read_exported
    for record in records:
        out.write(_line("session", record) + "\n")
        after = 0
        while page := await read(record.id, after=after, limit=EXPORT_PAGE):
            out.write("".join(_event_line(event, store.upcasters) + "\n" for event in page))
            after = page[-1].sequence
            events += len(page)
            if on_progress is not None:
                on_progress(len(page))
    return ExportSummary(sessions=[r.id for r in records], events=events)


def _read_decrypted(
    store: EventStore,
) -> Callable[..., Awaitable[list[UniversalEvent]]]:
    async def read(session_id: str, after: int, limit: int) -> list[UniversalEvent]:
        return [exported_view(e) for e in await store.read(session_id, after, limit)]

    return read


class _Importer:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.summary = ImportSummary()
        self.session: str | None = None
        self.stored = 0  # the store's last sequence of ``session``
        self.seen = 0  # the last sequence of ``session`` read from the file
        self.batch: list[UniversalEvent] = []

    async def start_session(self, record: SessionRecord) -> None:
        await self.flush()
        try:
            await self.store.create_session(record)
            self.summary.created.append(record.id)
        except SessionExists:
            pass
        self.summary.sessions.append(record.id)
        self.session = record.id
        self.stored = await self.store.last_sequence(record.id)
        self.seen = 0

    async def add(self, event: UniversalEvent, where: str) -> None:
        if event.session_id != self.session:
            raise TransferError(
                f"{where}: event of session {event.session_id!r} is not under its session line"
            )
        if event.sequence != self.seen + 1:
            raise TransferError(
                f"{where}: session {self.session!r} jumps from sequence {self.seen} to "
                f"{event.sequence}; an import needs each stream whole, from 1, in order"
            )
        self.seen = event.sequence
        self.batch.append(event)
        if len(self.batch) >= IMPORT_BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch or self.session is None:
            return
        known = [e for e in batch if e.sequence <= self.stored]
        new = [e for e in batch if e.sequence > self.stored]
        if known:  # already in the store: the idempotent append checks they are the same
            await self._append(known)
            self.summary.events_skipped += len(known)
        if new:
            await self._append(new)
            self.stored = new[-1].sequence
            self.summary.events_written += len(new)

    async def _append(self, events: list[UniversalEvent]) -> None:
        session = self.session
        assert session is not None
        first, last = events[0].sequence, events[-1].sequence
        try:
            stored = await self.store.append_exported(
                session, [EventDraft.from_event(e) for e in events], expected_sequence=first - 1
            )
        except (SequenceConflict, IdempotencyConflict) as exc:
            raise TransferError(
                f"session {session!r} already holds other events at sequences {first}..{last}; "
                f"nothing of them was imported ({exc})"
            ) from exc
        if [e.sequence for e in stored] != [e.sequence for e in events]:
            raise TransferError(
                f"session {session!r} holds the events {first}..{last} of the file at other "
                "sequences; the store and the file disagree"
            )


async def import_sessions(store: EventStore, lines: Iterable[str]) -> ImportSummary:
    """Import an export (its lines, e.g. an open file). Idempotent: what the store already
    holds is checked, not written again. Raises ``TransferError`` for a bad line or a
    conflicting stream (what came before it stays imported; importing again resumes)."""
    importer = _Importer(store)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            obj = json.loads(line)
            kind = obj.get("kind") if isinstance(obj, dict) else None
            if kind == "session":
                await importer.start_session(SessionRecord.model_validate(obj["session"]))
            elif kind == "event":
                await importer.add(_current_event(obj, store.upcasters), where)
            else:
                raise TransferError(f"{where}: expected a session or event line, got {kind!r}")
        except (ValueError, KeyError) as exc:  # JSON and pydantic errors are ValueErrors
            if isinstance(exc, ValidationError):
                reason = exc.errors()[0]
                exc_text = f"{'.'.join(map(str, reason['loc']))}: {reason['msg']}"
            else:
                exc_text = str(exc)
            raise TransferError(f"{where}: not a valid export line ({exc_text})") from exc
    await importer.flush()
    return importer.summary
