"""The MySQL/MariaDB storage driver: SQLAlchemy 2 async Core over asyncmy.

Why asyncmy rather than aiomysql: both are maintained and both have a SQLAlchemy dialect, but
asyncmy's protocol, row parsing and escaping are compiled (Cython) where aiomysql runs
PyMySQL's pure-Python ones, and reading and escaping rows is most of what an event store's
driver does; asyncmy also ships type information (``py.typed``).

How it keeps the contract of ``sandbox_agent.store.driver``:

- Connections run in autocommit; a write of several statements opens its own transaction
  (``START TRANSACTION`` ... ``COMMIT``, ``ROLLBACK`` on any error), at ``READ COMMITTED``. So
  returning a connection to the pool costs no reset round trip and no reader holds a snapshot.
- ``insert_events`` is one transaction in two round trips. The first sends three statements:
  ``START TRANSACTION``; ``UPDATE sessions ... WHERE id = ? AND last_sequence = ?``, which
  locks the session row, checks ``expected_sequence`` and applies the ``SessionChange``,
  handing the new last sequence back through ``LAST_INSERT_ID(expr)`` (no ``SELECT``); and
  ``UPDATE positions ... LAST_INSERT_ID(last_position + n)``, which takes the batch's global
  positions from the one-row counter. No session row matched means an unknown session or a
  stale sequence, told apart after the rollback. The counter's row lock is held until commit,
  so positions become visible in commit order (InnoDB's ``AUTO_INCREMENT`` is handed out at
  insert time, not at commit, and would let a ``select_all`` reader pass a position that
  commits later). The second round trip sends the multi-row ``INSERT`` followed by
  ``COMMIT``, which the server skips when the insert fails (a batch over about 1 MB takes an
  ``INSERT`` per MB); a duplicate ``(session_id, event_id)`` is ``DuplicateEventId`` after
  the rollback. Appends to different sessions serialise on the counter row from their first
  round trip to their commit.
- Locks are always taken in the order session row, then counter row; ``delete_session`` deletes
  the session row first, so it waits for an append in flight and stops later ones. A deadlock
  InnoDB still reports (it rolls the transaction back) is retried a few times.
- Other processes' appends are seen by polling (``poll_interval``, default 0.2 s): MySQL has no
  ``LISTEN``.
- The connections allow several statements per query (``CLIENT.MULTI_STATEMENTS``) for the
  packets of appends and deletes. Every value is escaped by asyncmy and no caller's SQL is ever run.

The event paths (insert, reads, snapshots) use the asyncmy connection under SQLAlchemy's pool
directly with hand-written SQL: SQLAlchemy's per-statement work would cost more than the
round trip. Sessions go through SQLAlchemy Core (``tables.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from asyncmy import errors as my
from asyncmy.connection import Connection as MyConnection
from asyncmy.constants import CLIENT
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from sandbox_agent.events.envelope import utc_now
from sandbox_agent.store.checkpoints import (
    CheckpointRow,
    CheckpointTransaction,
    check_consumer_name,
    check_position,
)
from sandbox_agent.store.driver import (
    EventRow,
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
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.records import SessionRecord, SessionStatus
from sandbox_agent_mysql.errors import (
    CLOSES_CONNECTION,
    DEADLOCK,
    DUPLICATE_KEY,
    UNOPENABLE,
    error_code,
    is_disconnect,
    mapped,
    store_error,
)
from sandbox_agent_mysql.migrate import HEAD_REVISION, stored_revision, upgrade
from sandbox_agent_mysql.tables import CHECKPOINTS, TABLES
from sandbox_agent_mysql.url import MysqlOptions, parse

_ZERO = timedelta(0)
_DEADLOCK_RETRIES = 3
# RFC 3339 in UTC, as the store's codec reads it; '%%' because asyncmy formats with '%'.
_TIME = "DATE_FORMAT(time, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ')"
_EVENT_COLUMNS = (
    f"sequence, event_id, {_TIME}, type, source, synthetic, native_session_id, data, raw, "
    "schema_version"
)
_PROJECT = (
    "UPDATE sessions SET last_sequence = LAST_INSERT_ID(last_sequence + %s), "
    "event_count = event_count + %s, updated_at = %s, status = COALESCE(%s, status), "
    "ended_at = IF(%s IS NULL, ended_at, %s), "
    "native_session_id = COALESCE(%s, native_session_id) "
    "WHERE id = %s AND (%s IS NULL OR last_sequence = %s)"
)
_TAKE_POSITIONS = (
    "UPDATE positions SET last_position = LAST_INSERT_ID(last_position + %s) WHERE id = 1"
)
# One packet, three statements (the connections allow several per query).
_BEGIN_AND_TAKE = f"START TRANSACTION; {_PROJECT}; {_TAKE_POSITIONS}"
_INSERT = (
    "INSERT INTO events (session_id, sequence, position, event_id, time, type, source, "
    "synthetic, native_session_id, data, raw, schema_version) VALUES "
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_STATEMENT_CHARS = 1_000_000  # well under max_allowed_packet (16 MB by default)
_DELETE_SESSION = (
    "START TRANSACTION; DELETE FROM sessions WHERE id = %s; "
    "DELETE FROM events WHERE session_id = %s; DELETE FROM snapshots WHERE session_id = %s; "
    "COMMIT"
)
_LAST = "SELECT last_sequence FROM sessions WHERE id = %s"
_READ = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = %s AND sequence > %s ORDER BY sequence"
)
_READ_ALL = (
    f"SELECT position, session_id, {_EVENT_COLUMNS} FROM events WHERE position > %s "
    "ORDER BY position LIMIT %s"
)
# Every new connection: times are not converted, a too long value or a bad date is an error
# rather than a truncated or zeroed value, and transactions read committed rows.
_SETUP = (
    "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
)


def naive_utc(value: datetime) -> datetime:
    """What a ``DATETIME(6)`` column holds: the UTC wall time, without a zone."""
    if value.tzinfo is not None and value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def _insert_statements(values: Sequence[str]) -> Iterator[str]:
    """Multi-row INSERTs of the rows ``values`` (each of at most about ``_STATEMENT_CHARS``
    unless one row is larger), the last one followed by ``COMMIT``."""
    chunk: list[str] = []
    size = 0
    for value in values:
        if chunk and size + len(value) > _STATEMENT_CHARS:
            yield _INSERT + ", ".join(chunk)
            chunk, size = [], 0
        chunk.append(value)
        size += len(value) + 2
    yield _INSERT + ", ".join(chunk) + "; COMMIT"


def _set_up_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for statement in _SETUP:
        cursor.execute(statement)
    cursor.close()


class MysqlDriver(StorageDriver):
    """The primitives on one MySQL or MariaDB database. Open with ``await MysqlDriver.open(url)``
    (``open_mysql_store`` wraps it in an ``EventStore``)."""

    def __init__(self, engine: AsyncEngine, options: MysqlOptions) -> None:
        self._engine = engine
        self.options = options
        self.where = options.where
        self.poll_interval = options.poll_interval

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, **options: Any) -> MysqlDriver:
        """Connect (``StoreUnavailable`` naming host:port when that fails) and run pending
        migrations unless ``migrate=False``. ``StoreConfigError`` for a bad URL or option."""
        parsed = parse(url, options)
        engine = create_async_engine(
            parsed.url,
            pool_size=parsed.pool_size,
            max_overflow=2 * parsed.pool_size,
            pool_recycle=3600,  # below the server's wait_timeout (8 h by default)
            pool_reset_on_return=None,  # autocommit: nothing to roll back
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": parsed.connect_timeout,
                # FOUND_ROWS: an UPDATE counts the rows it matched (as the dialect sets it);
                # MULTI_STATEMENTS: an append sends several statements per round trip.
                "client_flag": CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS,
            },
        )
        sa.event.listen(engine.sync_engine, "connect", _set_up_connection)
        driver = cls(engine, parsed)
        try:
            async with driver._connection() as conn:
                if migrate:
                    await upgrade(conn)
        except Exception as exc:
            await engine.dispose()
            cause = exc.__cause__ or exc
            if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.orig is not None:
                cause = cause.orig
            if isinstance(exc, StoreUnavailable):
                raise StoreUnavailable(
                    f"cannot connect to MySQL at {driver.where}: {cause}"
                ) from exc
            if error_code(cause) in UNOPENABLE:
                raise StoreUnavailable(f"cannot open MySQL at {driver.where}: {cause}") from exc
            if isinstance(exc, StoreError):
                raise
            raise store_error(exc, driver.where) from exc
        return driver

    async def schema_status(self) -> tuple[str | None, str]:
        """(the database's migration revision, the newest this driver has), for
        ``sandbox-agent db current|upgrade``."""
        async with self._connection() as conn:
            return await stored_revision(conn), HEAD_REVISION

    async def close(self) -> None:
        await self._engine.dispose()

    # -- connections ----------------------------------------------------------------------
    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled autocommit connection; a connection that failed is dropped, not reused."""
        with mapped(self.where):
            conn = await self._engine.connect()
            try:
                yield conn
            except BaseException as exc:
                if is_disconnect(exc):
                    # The server went away (a restart?): every pooled connection is suspect.
                    await conn.invalidate()
                    await self._engine.dispose(close=False)
                elif (
                    isinstance(exc, asyncio.CancelledError) or error_code(exc) in CLOSES_CONNECTION
                ):
                    # Cancelled mid-exchange, or closed by the server: the connection cannot
                    # be reused (the server rolls back what it had open when it is closed).
                    await conn.invalidate()
                raise
            finally:
                await conn.close()

    @asynccontextmanager
    async def _raw(self) -> AsyncIterator[MyConnection]:
        """A pooled asyncmy connection, without SQLAlchemy's ``AsyncConnection`` around it
        (a third of the cost of a checkout); dropped after a failure as in ``_connection``."""
        with mapped(self.where):
            pooled = await self._engine.raw_connection()
            try:
                assert isinstance(pooled.driver_connection, MyConnection)
                yield pooled.driver_connection
            except BaseException as exc:
                if is_disconnect(exc):
                    await greenlet_spawn(pooled.invalidate)
                    await self._engine.dispose(close=False)
                elif (
                    isinstance(exc, asyncio.CancelledError) or error_code(exc) in CLOSES_CONNECTION
                ):
                    await greenlet_spawn(pooled.invalidate)
                raise
            finally:
                await greenlet_spawn(pooled.close)  # back to the pool (may close an overflow)

    @asynccontextmanager
    async def _transaction(self, conn: MyConnection) -> AsyncIterator[None]:
        await conn.begin()
        try:
            yield
        except Exception:
            with contextlib.suppress(Exception):  # a broken connection is dropped anyway
                await conn.rollback()
            raise
        await conn.commit()

    # -- sessions -------------------------------------------------------------------------
    async def insert_session(self, record: SessionRecord) -> None:
        try:
            async with self._connection() as conn:
                await conn.execute(TABLES.sessions.insert().values(**record.model_dump()))
        except StoreError as exc:
            if error_code(exc.__cause__ or exc) == DUPLICATE_KEY:
                raise SessionExists(record.id) from exc
            raise

    async def select_session(self, session_id: str) -> SessionRecord | None:
        sessions = TABLES.sessions
        async with self._connection() as conn:
            row = (
                await conn.execute(sa.select(sessions).where(sessions.c.id == session_id))
            ).first()
        return None if row is None else SessionRecord.model_validate(dict(row._mapping))

    async def select_sessions(
        self,
        *,
        limit: int,
        before: tuple[datetime, str] | None,
        status: SessionStatus | None,
        agent: str | None,
    ) -> list[SessionRecord]:
        sessions = TABLES.sessions
        query = sa.select(sessions)
        if before is not None:
            created, last_id = before
            query = query.where(
                sa.or_(
                    sessions.c.created_at < created,
                    sa.and_(sessions.c.created_at == created, sessions.c.id < last_id),
                )
            )
        if status is not None:
            query = query.where(sessions.c.status == status)
        if agent is not None:
            query = query.where(sessions.c.agent == agent)
        query = query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
        async with self._connection() as conn:
            rows = (await conn.execute(query)).all()
        return [SessionRecord.model_validate(dict(row._mapping)) for row in rows]

    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> bool:
        sessions = TABLES.sessions
        async with self._connection() as conn:
            result = await conn.execute(
                sessions.update().where(sessions.c.id == session_id).values(**changes)
            )
        return bool(result.rowcount)  # rows matched: the dialect sets CLIENT.FOUND_ROWS

    async def delete_session(self, session_id: str) -> bool:
        async with self._raw() as conn, conn.cursor() as cur:
            try:
                # One round trip. The session row first: it waits for an append in flight
                # (which holds that row) and stops later ones, so the events deleted next
                # include every committed one. A failed statement skips the rest, COMMIT too.
                await cur.execute(_DELETE_SESSION, (session_id,) * 3)
                await cur.nextset()
                found = cur.rowcount
                while await cur.nextset():
                    pass
            except Exception:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise
        return bool(found)

    # -- consumer checkpoints -------------------------------------------------------------
    @asynccontextmanager
    async def checkpoint_transaction(self, name: str) -> AsyncIterator[CheckpointTransaction]:
        """The handler gets a SQLAlchemy ``AsyncConnection`` inside ``START TRANSACTION``
        (the pool's connections are autocommit, so SQLAlchemy's own ``begin`` would not open
        one on the server); the checkpoint row is locked with ``SELECT ... FOR UPDATE``."""
        check_consumer_name(name)
        table = CHECKPOINTS.checkpoints
        async with self._connection() as conn:
            await conn.exec_driver_sql("START TRANSACTION")
            try:
                # Not INSERT IGNORE: its warning on every existing row would be logged.
                await conn.execute(
                    mysql_insert(table)
                    .values(name=name, position=0, updated_at=utc_now())
                    .on_duplicate_key_update(name=table.c.name)
                )
                locked = sa.select(table.c.position).where(table.c.name == name)
                position = int((await conn.execute(locked.with_for_update())).scalar_one())
                txn = CheckpointTransaction(name, position, conn)
                yield txn
                await conn.execute(
                    table.update()
                    .where(table.c.name == name)
                    .values(position=txn.position, updated_at=utc_now())
                )
                await conn.exec_driver_sql("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection is dropped anyway
                    await conn.exec_driver_sql("ROLLBACK")
                raise
        txn.committed()

    async def select_checkpoints(self) -> list[CheckpointRow]:
        table, events = CHECKPOINTS.checkpoints, TABLES.events
        lag = (
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.position > table.c.position)
            .scalar_subquery()
        )
        query = sa.select(table.c.name, table.c.position, table.c.updated_at, lag)
        async with self._connection() as conn:
            rows = (await conn.execute(query.order_by(table.c.name))).all()
        return [CheckpointRow(str(r[0]), int(r[1]), r[2], int(r[3])) for r in rows]

    async def write_checkpoint(self, name: str, position: int | None) -> bool:
        check_consumer_name(name)
        table = CHECKPOINTS.checkpoints
        where = table.c.name == name
        async with self._connection() as conn:
            if position is None:
                return bool((await conn.execute(table.delete().where(where))).rowcount)
            values = {"position": check_position(position), "updated_at": utc_now()}
            # rowcount counts matched rows (FOUND_ROWS), so an unchanged row counts too.
            if (await conn.execute(table.update().where(where).values(**values))).rowcount:
                return True
            await conn.execute(table.insert().values(name=name, **values))
            return False

    # -- events ---------------------------------------------------------------------------
    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._insert_events(session_id, rows, expected_sequence, change)
            except StoreError as exc:
                if error_code(exc.__cause__ or exc) != DEADLOCK or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        count = len(rows)
        ended_at = None if change.ended_at is None else naive_utc(change.ended_at)
        async with self._raw() as conn, conn.cursor() as cur:
            try:
                # Round trip 1: begin, lock and check the session row (and project the batch
                # onto it), take the positions. Each result carries its LAST_INSERT_ID.
                await cur.execute(
                    _BEGIN_AND_TAKE,
                    (
                        count,
                        count,
                        naive_utc(change.updated_at),
                        change.status,
                        change.status,
                        ended_at,
                        change.native_session_id,
                        session_id,
                        expected_sequence,
                        expected_sequence,
                        count,
                    ),
                )
                await cur.nextset()
                matched, last = cur.rowcount, cur.lastrowid
                await cur.nextset()
                first_position = cur.lastrowid - count + 1
                while await cur.nextset():
                    pass
                if not matched:  # the positions taken go back with the rollback
                    await conn.rollback()
                    await cur.execute(_LAST, (session_id,))
                    found = await cur.fetchone()
                    if found is None:
                        raise SessionNotFound(session_id)
                    raise SequenceConflict(session_id, expected_sequence or 0, int(found[0]))
                base = last - count
                # Round trip 2 (more for a batch of over about 1 MB): the rows, then COMMIT,
                # which the server skips when an INSERT fails.
                values = [
                    cur.mogrify(
                        _ROW,
                        (
                            session_id,
                            base + i,
                            first_position + i - 1,
                            row.event_id,
                            naive_utc(row.time),
                            row.type,
                            row.source,
                            row.synthetic,
                            row.native_session_id,
                            row.data,
                            row.raw,
                            row.schema_version,
                        ),
                    )
                    for i, row in enumerate(rows, start=1)
                ]
                for statement in _insert_statements(values):
                    await cur.execute(statement)
                    while await cur.nextset():
                        pass
            except my.IntegrityError as exc:
                await conn.rollback()
                if error_code(exc) == DUPLICATE_KEY and "uq_events_session_event_id" in str(exc):
                    raise DuplicateEventId(session_id, str(exc)) from exc
                raise store_error(exc, self.where) from exc
            except Exception:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise
        return base

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        async with self._raw() as conn, conn.cursor() as cur:
            if limit is None:
                await cur.execute(_READ, (session_id, after))
            else:
                await cur.execute(f"{_READ} LIMIT %s", (session_id, after, limit))
            rows: Sequence[StoredRow] = list(await cur.fetchall())
            if not rows:
                await cur.execute(_LAST, (session_id,))
                if await cur.fetchone() is None:
                    raise SessionNotFound(session_id)
        return rows

    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        if not event_ids:
            return []
        found: list[StoredRow] = []
        async with self._raw() as conn, conn.cursor() as cur:
            for start in range(0, len(event_ids), 500):
                chunk = list(event_ids[start : start + 500])
                marks = ", ".join(["%s"] * len(chunk))
                await cur.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events "
                    f"WHERE session_id = %s AND event_id IN ({marks})",
                    (session_id, *chunk),
                )
                found.extend(await cur.fetchall())
        return found

    async def rewrite_events(self, session_id: str, rows: Sequence[RewrittenRow]) -> None:
        if not rows:
            return
        wanted = sorted({row.sequence for row in rows})
        async with self._raw() as conn, self._transaction(conn), conn.cursor() as cur:
            await cur.execute(
                "SELECT 1 FROM sessions WHERE id = %s LOCK IN SHARE MODE", (session_id,)
            )
            if await cur.fetchone() is None:
                raise SessionNotFound(session_id)
            # Counted, not taken from the UPDATE: MySQL's affected rows skip unchanged ones.
            found = 0
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join(["%s"] * len(chunk))
                await cur.execute(
                    "SELECT COUNT(*) FROM events WHERE session_id = %s "
                    f"AND sequence IN ({marks}) FOR UPDATE",
                    (session_id, *chunk),
                )
                found += int((await cur.fetchone())[0])
            if found != len(wanted):
                raise StoreError(
                    f"session {session_id!r}: {len(wanted) - found} of the events to rewrite "
                    "are not stored (nothing was written)"
                )
            await cur.executemany(
                "UPDATE events SET data = %s, raw = %s, "
                "schema_version = COALESCE(%s, schema_version) "
                "WHERE session_id = %s AND sequence = %s",
                [(row.data, row.raw, row.schema_version, session_id, row.sequence) for row in rows],
            )

    async def select_last_sequence(self, session_id: str) -> int | None:
        async with self._raw() as conn, conn.cursor() as cur:
            await cur.execute(_LAST, (session_id,))
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        async with self._raw() as conn, conn.cursor() as cur:
            await cur.execute(_READ_ALL, (after_position, limit))
            rows: Sequence[PositionedRow] = list(await cur.fetchall())
        return rows

    # -- snapshots ------------------------------------------------------------------------
    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        async with self._raw() as conn, self._transaction(conn), conn.cursor() as cur:
            # A shared lock on the session row: a delete in flight finishes first.
            await cur.execute(
                "SELECT 1 FROM sessions WHERE id = %s LOCK IN SHARE MODE", (session_id,)
            )
            if await cur.fetchone() is None:
                raise SessionNotFound(session_id)
            await cur.execute(
                "INSERT INTO snapshots (session_id, sequence, version, state, created_at) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE state = VALUES(state), created_at = VALUES(created_at)",
                (session_id, sequence, version, state, naive_utc(created_at)),
            )

    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        query = "SELECT sequence, version, state, created_at FROM snapshots WHERE session_id = %s"
        args: list[Any] = [session_id]
        if at_or_before is not None:
            query += " AND sequence <= %s"
            args.append(at_or_before)
        if version is not None:
            query += " AND version = %s"
            args.append(version)
        query += " ORDER BY sequence DESC, version DESC LIMIT 1"
        async with self._raw() as conn, conn.cursor() as cur:
            await cur.execute(query, args)
            row = await cur.fetchone()
        if row is None:
            return None
        return SnapshotRow(int(row[0]), int(row[1]), row[2], row[3].replace(tzinfo=UTC))

    async def select_snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        async with self._raw() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT sequence, version FROM snapshots WHERE session_id = %s "
                "ORDER BY sequence, version",
                (session_id,),
            )
            rows = await cur.fetchall()
        return [(int(row[0]), int(row[1])) for row in rows]

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        unique = sorted(set(keys))
        deleted = 0
        if not unique:
            return 0
        async with self._raw() as conn, self._transaction(conn), conn.cursor() as cur:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ", ".join(["(%s, %s)"] * len(chunk))
                deleted += await cur.execute(
                    "DELETE FROM snapshots WHERE session_id = %s "
                    f"AND (sequence, version) IN ({marks})",
                    (session_id, *(n for key in chunk for n in key)),
                )
        return deleted
