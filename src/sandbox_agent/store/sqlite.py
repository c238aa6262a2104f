"""The SQLite driver (``sqlite:///path.db``): SQLAlchemy async Core over aiosqlite, in WAL mode.

Durability: ``synchronous=normal`` (default) survives a crash of the process; ``full`` also
survives a power loss. Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``), which also
makes the global ``position`` follow commit order. ``subscribe`` wakes in-process subscribers at
once and polls every ``poll_interval`` seconds for appends made by other processes.

The event primitives (insert, selects) and the snapshots run as one function in aiosqlite's
connection threads (a writer and a reader) instead of one thread hop per statement: a
single-event insert costs one hop rather than six. Session rows go through SQLAlchemy Core
(``sql.py``).

Small appends (at most ``inline_append_max`` events, default 64) skip even that hop when commits
do not wait for the disk (``synchronous`` ``normal`` or ``off``): they run on the caller's
thread, on a connection of their own that never waits. It takes the write lock with
``busy_timeout=0`` and, if another writer holds it, the append goes to the writer thread, which
waits as usual. It never checkpoints the WAL itself (a checkpoint copies pages and syncs, about
5 ms here): after ``_CHECKPOINT_COMMITS`` inline commits or ``_CHECKPOINT_EVENTS`` events the
writer thread does, while inline appends go on. The WAL starts again from its beginning only
after a checkpoint that no commit overlapped; when commits keep overlapping them and the WAL
passes ``_WAL_PAGES_MAX``, the next checkpoint runs with appends queued behind it in the writer
thread. The hop costs more than a small commit: a one-event append takes about 210 us through
the writer thread, 75 us inline.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from pydantic_core import from_json
from sqlalchemy import event
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.ext.asyncio import create_async_engine

from sandbox_agent.store.codec import dump_json
from sandbox_agent.store.driver import (
    EventRow,
    IntegrityReport,
    PositionedRow,
    RewrittenRow,
    SessionChange,
    SnapshotRow,
    StoredRow,
)
from sandbox_agent.store.errors import (
    DuplicateEventId,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.event_store import EventStore
from sandbox_agent.store.ownership import FileOwnership
from sandbox_agent.store.paths import database_path
from sandbox_agent.store.records import SessionRecord
from sandbox_agent.store.sql import NOT_MIGRATED_HINT, WRITE, SqlDriver, unreachable
from sandbox_agent.store.tables import decode_sqlite_time, encode_sqlite_time
from sandbox_agent.store.url import float_option, int_option, no_more_options, split_url

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Findings ``PRAGMA integrity_check`` lists at most (its own default is 100).
INTEGRITY_MAX_ERRORS = 100

#: Inline commits, or events, between two WAL checkpoints in the writer thread: about the 1000
#: pages after which SQLite's autocheckpoint would run (a commit writes 3-4 pages or more).
_CHECKPOINT_COMMITS = 200
_CHECKPOINT_EVENTS = 500
#: WAL pages (4 KB each) past which a checkpoint holds the inline appends back until it is done.
_WAL_PAGES_MAX = 4000

SYNCHRONOUS = ("off", "normal", "full", "extra")

_EVENT_COLUMNS = (
    "sequence, event_id, time, type, source, synthetic, native_session_id, data, raw, "
    "schema_version"
)
# position is the rowid (INTEGER PRIMARY KEY AUTOINCREMENT): SQLite assigns it.
_INSERT = (
    "INSERT INTO events (session_id, sequence, event_id, time, type, source, "
    "synthetic, native_session_id, data, raw, schema_version) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Takes the batch's sequences and updates the projection in one statement; the caller rolls
# back when the returned last_sequence shows that expected_sequence was stale.
_PROJECT = (
    "UPDATE sessions SET last_sequence = last_sequence + ?1, event_count = event_count + ?1, "
    "updated_at = ?2, status = COALESCE(?3, status), "
    "ended_at = CASE WHEN ?3 IS NULL THEN ended_at WHEN ?3 = 'ended' THEN ?4 ELSE NULL END, "
    "native_session_id = COALESCE(?5, native_session_id) WHERE id = ?6 RETURNING last_sequence"
)
_READ = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = ? AND sequence > ? "
    "ORDER BY sequence LIMIT ?"
)
_READ_ALL = (
    f"SELECT position, session_id, {_EVENT_COLUMNS} FROM events WHERE position > ? "
    "ORDER BY position LIMIT ?"
)
_EXISTS = "SELECT last_sequence FROM sessions WHERE id = ?"
# The sessions table's columns, as SessionRecord names them.
_SESSION_COLUMNS = tuple(SessionRecord.model_fields)
_SESSION_TIMES = frozenset({"created_at", "updated_at", "ended_at"})
_SESSION_JSON = frozenset({"metadata", "init"})
_SELECT_SESSION = f"SELECT {', '.join(_SESSION_COLUMNS)} FROM sessions WHERE id = ?"
_INSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(_SESSION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_SESSION_COLUMNS))})"
)
# One snapshot per (session, sequence, version): a second save replaces the first.
_SAVE_SNAPSHOT = (
    "INSERT OR REPLACE INTO snapshots (session_id, sequence, version, state, created_at) "
    "VALUES (?, ?, ?, ?, ?)"
)


class SqliteDriver(SqlDriver):
    """The embedded default store's driver. Open it with ``open_store("sqlite:///path.db")``."""

    def __init__(self, engine: Any, url: str, path: Path, poll_interval: float) -> None:
        super().__init__(engine, url)
        self.path = path
        self.poll_interval = poll_interval
        self._closed = False
        # The hot paths use two long-lived connections of their own: each call runs whole in
        # the connection's thread, so calls never interleave and need no pool checkout.
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pragmas: list[str] = []
        # Small appends on the caller's thread (see the module's docstring); None: never.
        self._inline: sqlite3.Connection | None = None
        self._inline_max = 0
        self._inline_lock = threading.Lock()  # a store used from two threads at once
        self._inline_commits = 0
        self._inline_events = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpoint_holds = False  # the running checkpoint holds inline appends back

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, **options: Any) -> SqliteDriver:
        path = database_path(url)
        synchronous = str(options.pop("synchronous", "normal")).lower()
        if synchronous not in SYNCHRONOUS:
            raise StoreConfigError(
                f"SQLite option synchronous must be one of {', '.join(SYNCHRONOUS)}, "
                f"got {synchronous!r}"
            )
        busy_timeout = int_option(options, "busy_timeout") or 30_000
        poll_interval = float_option(options, "poll_interval", 0.05)
        pool_size = int_option(options, "pool_size") or 5
        # Off by default: the mapped pages count in the server's resident set (up to the whole
        # file) and buy no measurable speed now (docs/performance.md, "Session 10").
        mmap_size = int_option(options, "mmap_size") or 0
        if mmap_size < 0:
            raise StoreConfigError(f"SQLite option mmap_size must be >= 0, got {mmap_size}")
        inline_max = int_option(options, "inline_append_max")
        inline_max = 64 if inline_max is None else inline_max
        if inline_max < 0:
            raise StoreConfigError(
                f"SQLite option inline_append_max must be >= 0, got {inline_max}"
            )
        no_more_options(options, url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the directory of {path}: {exc}") from exc

        engine = create_async_engine(
            f"sqlite+aiosqlite:///{path}",
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            json_serializer=dump_json,
            json_deserializer=from_json,
        )

        pragmas = [
            f"PRAGMA busy_timeout = {busy_timeout}",
            "PRAGMA journal_mode = WAL",
            f"PRAGMA synchronous = {synchronous}",
        ]

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); pysqlite's implicit transactions would not
            # take the write lock up front.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: SyncConnection) -> None:
            # A write transaction takes the lock at BEGIN; upgrading a read lock later could
            # fail at once with SQLITE_BUSY instead of waiting.
            immediate = conn.get_execution_options().get(WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        store = cls(engine, url, path, poll_interval)
        store._pragmas = pragmas
        try:
            if migrate:
                await store._upgrade()
            else:
                async with store._reading() as conn:
                    await conn.exec_driver_sql("SELECT 1")
            store._writer = await store._connect()
            store._reader = await store._connect()
            # Reads of large values (snapshots of tens of MB) through memory-mapped pages: half
            # the time of one read call per 4 KB page.
            await store._reader.execute(f"PRAGMA mmap_size = {mmap_size}")
            if inline_max > 0 and synchronous in ("off", "normal"):
                store._inline = _inline_connection(path, synchronous)
                store._inline_max = inline_max
        except Exception as exc:
            await store.close()
            if isinstance(exc, StoreError):
                raise
            cause = exc if isinstance(exc, sqlite3.Error) else (exc.__cause__ or exc)
            raise StoreUnavailable(f"cannot open SQLite database {path}: {cause}") from exc
        return store

    async def _connect(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in self._pragmas:
            await connection.execute(pragma)
        return connection

    async def check_integrity(self) -> IntegrityReport:
        problems = await self._in_thread(self._reader, _integrity_check)
        return IntegrityReport(
            supported=True, method="SQLite PRAGMA integrity_check", problems=problems
        )

    def ownership_lock(self) -> FileOwnership:
        return FileOwnership(self.path.with_name(self.path.name + ".owner"))

    async def close(self) -> None:
        self._closed = True
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if self._inline is not None:
            with self._inline_lock:
                self._inline.close()
                self._inline = None
        for connection in (self._writer, self._reader):
            if connection is not None:
                await connection.close()
        self._writer = self._reader = None
        await super().close()

    async def _in_thread(
        self, connection: aiosqlite.Connection | None, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Run ``fn`` with the raw sqlite3 connection in aiosqlite's thread: one hop."""
        if connection is None:
            raise StoreError(f"SQLite store {self.path} is closed")
        try:
            # aiosqlite has no public "run this in your thread"; its own methods use _execute.
            # One hop instead of one per statement: appends through the writer thread 1.2x (100
            # events) to 2x (1 event) faster (docs/performance.md, "Session 7: reads").
            return await connection._execute(lambda: fn(connection._conn))  # type: ignore[no-untyped-call,no-any-return]
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc
        except ValueError as exc:
            # aiosqlite's answer to a call that reached the connection as it closed (a read of
            # a subscriber racing ``close``): a store error, which a closing store's readers
            # end on quietly.
            if connection._connection is None:
                raise StoreError(f"SQLite store {self.path} is closed") from exc
            raise

    async def _inline_or_in_thread(
        self, connection: aiosqlite.Connection | None, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        """``fn`` (one short statement) on the inline appends' connection when it is free,
        else in ``connection``'s thread, as ``_insert_inline`` does for small appends."""
        db = self._inline
        if db is not None and not self._checkpoint_holds and self._inline_lock.acquire(False):
            try:
                if self._inline is not None:
                    return fn(db)
            except sqlite3.Error as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code is None or code & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise _store_error(self.path, exc) from exc
            finally:
                self._inline_lock.release()
        return await self._in_thread(connection, fn)

    # -- sessions -------------------------------------------------------------------------
    # Not through SQLAlchemy's pool: a session's creation (a select and an insert) cost several
    # milliseconds there, and concurrent ones opened connections of their own.
    async def insert_session(self, record: SessionRecord) -> None:
        values = tuple(_session_value(name, value) for name, value in record)
        await self._inline_or_in_thread(
            self._writer, lambda db: _insert_session(db, record.id, values)
        )

    async def select_session(self, session_id: str) -> SessionRecord | None:
        row = await self._inline_or_in_thread(
            self._reader, lambda db: db.execute(_SELECT_SESSION, (session_id,)).fetchone()
        )
        if row is None:
            return None
        fields = zip(_SESSION_COLUMNS, row, strict=True)
        return SessionRecord.model_validate({name: _session_field(name, v) for name, v in fields})

    # -- events ---------------------------------------------------------------------------
    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        last = self._insert_inline(session_id, rows, expected_sequence, change)
        if last is None:
            last = await self._in_thread(
                self._writer, lambda db: _insert(db, session_id, rows, expected_sequence, change)
            )
        return last

    def _insert_inline(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int | None:
        """The insert on this thread (the last sequence before it), or None when it must go to
        the writer thread (a large batch, another writer holding the lock, a checkpoint
        running, the connection in use by another thread)."""
        db = self._inline
        if db is None or len(rows) > self._inline_max or self._checkpoint_holds:
            return None
        if not self._inline_lock.acquire(blocking=False):
            return None
        try:
            if self._inline is None:  # closed meanwhile
                return None
            last = _insert(db, session_id, rows, expected_sequence, change)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)  # absent on Python-level errors
            if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None  # nothing was written; the writer thread waits for the lock
            raise _store_error(self.path, exc) from exc
        finally:
            self._inline_lock.release()
        self._inline_commits += 1
        self._inline_events += len(rows)
        due = (
            self._inline_commits >= _CHECKPOINT_COMMITS or self._inline_events >= _CHECKPOINT_EVENTS
        )
        if due and self._checkpoint is None:
            self._inline_commits = self._inline_events = 0
            self._checkpoint = asyncio.ensure_future(self._checkpoint_wal(hold=False))
        return last

    async def _checkpoint_wal(self, hold: bool) -> None:
        """What autocheckpoint would do after the inline appends, in the writer thread; with
        ``hold``, inline appends wait behind it there, so that it completes and the WAL can
        start again from its beginning."""
        self._checkpoint_holds = hold
        again = False
        try:
            _, pages, _ = await self._in_thread(
                self._writer,
                lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone(),
            )
            # A WAL this long has not started again for many checkpoints: commits kept
            # overlapping them.
            again = not hold and pages > _WAL_PAGES_MAX
        except StoreError:
            logger.warning("SQLite %s: WAL checkpoint failed", self.path, exc_info=True)
        finally:
            self._checkpoint_holds = False
            self._checkpoint = None
        if again and not self._closed:
            self._checkpoint = asyncio.ensure_future(self._checkpoint_wal(hold=True))

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        return await self._in_thread(self._reader, lambda db: _select(db, session_id, after, limit))

    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        return await self._in_thread(
            self._reader, lambda db: _select_by_id(db, session_id, event_ids)
        )

    async def rewrite_events(self, session_id: str, rows: Sequence[RewrittenRow]) -> None:
        await self._in_thread(self._writer, lambda db: _rewrite(db, session_id, rows))

    async def select_last_sequence(self, session_id: str) -> int | None:
        row = await self._in_thread(
            self._reader, lambda db: db.execute(_EXISTS, (session_id,)).fetchone()
        )
        return None if row is None else int(row[0])

    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        return await self._in_thread(
            self._reader, lambda db: db.execute(_READ_ALL, (after_position, limit)).fetchall()
        )

    # -- snapshots ------------------------------------------------------------------------
    # In the connection threads, like the events: a snapshot can be tens of MB, and the pooled
    # SQLAlchemy path costs several thread hops on top of moving it.
    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        created = encode_sqlite_time(created_at)
        await self._in_thread(
            self._writer,
            lambda db: _save_snapshot(db, session_id, sequence, version, state, created),
        )

    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        row = await self._in_thread(
            self._reader, lambda db: _snapshot_row(db, session_id, at_or_before, version)
        )
        if row is None:
            return None
        sequence, snapshot_version, state, created_at = row
        return SnapshotRow(sequence, snapshot_version, state, decode_sqlite_time(created_at))


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """``StoreUnavailable`` when the file or the disk failed (``unreachable``: I/O error, disk
    full, cannot open), else ``StoreError``."""
    if unreachable(exc):
        return StoreUnavailable(f"SQLite {path}: {exc}")
    hint = NOT_MIGRATED_HINT if "no such table" in str(exc) else ""
    return StoreError(f"SQLite {path}: {exc}{hint}")


# -- the functions that run in the connection thread -----------------------------------------


def _insert(
    db: sqlite3.Connection,
    session_id: str,
    rows: Sequence[EventRow],
    expected: int | None,
    change: SessionChange,
) -> int:
    count = len(rows)
    db.execute("BEGIN IMMEDIATE")
    try:
        head = db.execute(
            _PROJECT,
            (
                count,
                encode_sqlite_time(change.updated_at),
                change.status,
                None if change.ended_at is None else encode_sqlite_time(change.ended_at),
                change.native_session_id,
                session_id,
            ),
        ).fetchone()
        if head is None:
            raise SessionNotFound(session_id)
        last = int(head[0]) - count
        if expected is not None and expected != last:
            raise SequenceConflict(session_id, expected, last)
        time_text: dict[datetime, str] = {}
        values = []
        for offset, row in enumerate(rows, start=1):
            time = row.time
            text = time_text.get(time)
            if text is None:
                text = time_text[time] = encode_sqlite_time(time)
            values.append(
                (
                    session_id,
                    last + offset,
                    row.event_id,
                    text,
                    row.type,
                    row.source,
                    row.synthetic,
                    row.native_session_id,
                    row.data,
                    row.raw,
                    row.schema_version,
                )
            )
        try:
            db.executemany(_INSERT, values)
        except sqlite3.IntegrityError as exc:
            raise DuplicateEventId(session_id, str(exc)) from exc
        db.execute("COMMIT")
        return last
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _session_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _SESSION_TIMES:
        return encode_sqlite_time(value)
    return dump_json(value) if name in _SESSION_JSON else value


def _session_field(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _SESSION_TIMES:
        return decode_sqlite_time(value)
    return from_json(value) if name in _SESSION_JSON else value


def _insert_session(db: sqlite3.Connection, session_id: str, values: tuple[Any, ...]) -> None:
    try:
        db.execute(_INSERT_SESSION, values)
    except sqlite3.IntegrityError as exc:
        raise SessionExists(session_id) from exc


def _select(db: sqlite3.Connection, session_id: str, after: int, limit: int | None) -> list[Any]:
    try:
        rows = db.execute(_READ, (session_id, after, -1 if limit is None else limit)).fetchall()
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise
        raise StoreCorrupt(
            session_id, f"SQLite: {exc}", sequence=after + 1, kind="database"
        ) from exc
    if not rows and db.execute(_EXISTS, (session_id,)).fetchone() is None:
        raise SessionNotFound(session_id)
    return rows


def _corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is damaged ("database disk image is malformed", "file is
    not a database"), or a text column holds bytes that are not UTF-8."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "Could not decode to UTF-8" in str(exc)


def _integrity_check(db: sqlite3.Connection) -> tuple[str, ...]:
    """``PRAGMA integrity_check``'s findings (none when it answers ``ok``); a check that
    SQLite cannot finish on a damaged file is itself a finding."""
    try:
        rows = db.execute(f"PRAGMA integrity_check({INTEGRITY_MAX_ERRORS})").fetchall()
    except sqlite3.DatabaseError as exc:
        return (f"the check stopped: {exc}",)
    found = tuple(str(row[0]) for row in rows)
    return () if found == ("ok",) else found


def _rewrite(db: sqlite3.Connection, session_id: str, rows: Sequence[RewrittenRow]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute(_EXISTS, (session_id,)).fetchone() is None:
            raise SessionNotFound(session_id)
        for row in rows:
            changed = db.execute(
                "UPDATE events SET data = ?, raw = ?, "
                "schema_version = COALESCE(?, schema_version) "
                "WHERE session_id = ? AND sequence = ?",
                (row.data, row.raw, row.schema_version, session_id, row.sequence),
            ).rowcount
            if changed != 1:
                raise StoreError(
                    f"session {session_id!r}: no stored event {row.sequence} to rewrite "
                    "(nothing was written)"
                )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _select_by_id(db: sqlite3.Connection, session_id: str, ids: Sequence[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        found += db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = ? AND event_id IN ({marks})",
            (session_id, *chunk),
        ).fetchall()
    return found


def _save_snapshot(
    db: sqlite3.Connection, session_id: str, sequence: int, version: int, state: str, created: str
) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute(_EXISTS, (session_id,)).fetchone() is None:
            raise SessionNotFound(session_id)
        db.execute(_SAVE_SNAPSHOT, (session_id, sequence, version, state, created))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _snapshot_row(
    db: sqlite3.Connection, session_id: str, at_or_before: int | None, version: int | None
) -> Any:
    query = "SELECT sequence, version, state, created_at FROM snapshots WHERE session_id = ?"
    params: list[Any] = [session_id]
    if at_or_before is not None:
        query += " AND sequence <= ?"
        params.append(at_or_before)
    if version is not None:
        query += " AND version = ?"
        params.append(version)
    return db.execute(query + " ORDER BY sequence DESC, version DESC LIMIT 1", params).fetchone()


def _inline_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    """The connection of inline appends: never waits for the lock, never checkpoints."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "PRAGMA busy_timeout = 0",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {synchronous}",
        "PRAGMA wal_autocheckpoint = 0",
    ):
        db.execute(pragma)
    return db


async def open_sqlite_store(url: str, **options: Any) -> EventStore:
    """``sqlite:///path.db?synchronous=full&busy_timeout=5000`` (see the module's docstring)."""
    base, query = split_url(url)
    return EventStore(await SqliteDriver.open(base, **{**query, **options}))
