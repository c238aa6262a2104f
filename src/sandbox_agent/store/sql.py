"""What the SQLite and Postgres drivers share: SQLAlchemy Core over an async engine for the
session rows, snapshots and migrations. Each driver adds its own event primitives (the hot
paths)."""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sandbox_agent.events.envelope import utc_now
from sandbox_agent.store.checkpoints import (
    CheckpointRow,
    CheckpointTransaction,
    check_consumer_name,
    check_position,
)
from sandbox_agent.store.driver import SnapshotRow, StorageDriver
from sandbox_agent.store.errors import (
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.migrate import HEAD_REVISION, run_upgrade, stored_revision
from sandbox_agent.store.records import SessionRecord, SessionStatus
from sandbox_agent.store.tables import Tables, tables_for

#: The newest revision in ``migrations/versions`` (a test keeps the two equal).

#: Execution option that makes the SQLite driver open a write (IMMEDIATE) transaction.
WRITE = "sandbox_agent_write"


class SqlDriver(StorageDriver, abc.ABC):
    """Base of the SQL drivers: ``_engine`` is a SQLAlchemy ``AsyncEngine``."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self.url = url
        self._tables: Tables = tables_for(engine.dialect.name)

    def _unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database cannot be reached or written (``unreachable``);
        a driver adds its own library's connection errors."""
        return unreachable(exc)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        with database_errors(self.url, self._unreachable):
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(**{WRITE: True})
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        with database_errors(self.url, self._unreachable):
            async with self._engine.connect() as conn:
                yield conn

    async def close(self) -> None:
        await self._engine.dispose()

    async def schema_revision(self) -> str | None:
        """The Alembic revision of the database (None if it was never migrated)."""
        async with self._reading() as conn:
            return await stored_revision(conn)

    async def schema_status(self) -> tuple[str | None, str]:
        return await self.schema_revision(), HEAD_REVISION

    async def _upgrade(self) -> None:
        """Run pending migrations. Alembic is imported only when the database is behind: it
        costs about 10 MB of memory in a process that never needs it."""
        async with self._writing() as conn:
            await self._lock_migrations(conn)
            if await stored_revision(conn) != HEAD_REVISION:
                await conn.run_sync(run_upgrade)

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        """Keep concurrent openers from migrating at once (SQLite's write lock already does)."""

    # -- sessions -------------------------------------------------------------------------
    async def insert_session(self, record: SessionRecord) -> None:
        try:
            async with self._writing() as conn:
                await conn.execute(self._tables.sessions.insert().values(**record.model_dump()))
        except IntegrityError as exc:
            raise SessionExists(record.id) from exc

    async def select_session(self, session_id: str) -> SessionRecord | None:
        sessions = self._tables.sessions
        async with self._reading() as conn:
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
        sessions = self._tables.sessions
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
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [SessionRecord.model_validate(dict(r._mapping)) for r in rows]

    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> bool:
        sessions = self._tables.sessions
        async with self._writing() as conn:
            result = await conn.execute(
                sessions.update().where(sessions.c.id == session_id).values(**changes)
            )
        return bool(result.rowcount)

    async def delete_session(self, session_id: str) -> bool:
        tables = self._tables
        async with self._writing() as conn:
            # The session row first: it waits for an append in flight (which holds that row)
            # and stops later ones, so the events deleted next include every committed one.
            result = await conn.execute(
                tables.sessions.delete().where(tables.sessions.c.id == session_id)
            )
            await conn.execute(
                tables.events.delete().where(tables.events.c.session_id == session_id)
            )
            await conn.execute(
                tables.snapshots.delete().where(tables.snapshots.c.session_id == session_id)
            )
        return bool(result.rowcount)

    # -- consumer checkpoints -------------------------------------------------------------
    @asynccontextmanager
    async def checkpoint_transaction(self, name: str) -> AsyncIterator[CheckpointTransaction]:
        check_consumer_name(name)
        async with self._writing() as conn:
            txn = CheckpointTransaction(name, await lock_checkpoint(conn, self._tables, name), conn)
            yield txn
            await conn.execute(checkpoint_update(self._tables, name, txn.position))
        txn.committed()  # after the commit: _writing's transaction has ended here

    async def select_checkpoints(self) -> list[CheckpointRow]:
        async with self._reading() as conn:
            return await select_checkpoints(conn, self._tables.checkpoints, self._tables.events)

    async def write_checkpoint(self, name: str, position: int | None) -> bool:
        check_consumer_name(name)
        async with self._writing() as conn:
            return await write_checkpoint(conn, self._tables.checkpoints, name, position)

    # -- snapshots ------------------------------------------------------------------------
    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        tables = self._tables
        snapshots = tables.snapshots
        async with self._writing() as conn:
            exists = (
                await conn.execute(
                    sa.select(tables.sessions.c.id).where(tables.sessions.c.id == session_id)
                )
            ).first()
            if exists is None:
                raise SessionNotFound(session_id)
            await conn.execute(
                snapshots.delete().where(
                    snapshots.c.session_id == session_id,
                    snapshots.c.sequence == sequence,
                    snapshots.c.version == version,
                )
            )
            # The text as it is: a literal JSON value, not a dict to encode again.
            await conn.execute(
                snapshots.insert().values(
                    session_id=session_id,
                    sequence=sequence,
                    version=version,
                    state=sa.cast(sa.literal(state, sa.Text), snapshots.c.state.type),
                    created_at=created_at,
                )
            )

    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        snapshots = self._tables.snapshots
        query = sa.select(
            snapshots.c.sequence,
            snapshots.c.version,
            sa.cast(snapshots.c.state, sa.Text),
            snapshots.c.created_at,
        ).where(snapshots.c.session_id == session_id)
        if at_or_before is not None:
            query = query.where(snapshots.c.sequence <= at_or_before)
        if version is not None:
            query = query.where(snapshots.c.version == version)
        # Primary-key columns only: the index orders them without reading any state.
        query = query.order_by(snapshots.c.sequence.desc(), snapshots.c.version.desc()).limit(1)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else SnapshotRow(int(row[0]), int(row[1]), str(row[2]), row[3])

    async def select_snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        snapshots = self._tables.snapshots
        query = (
            sa.select(snapshots.c.sequence, snapshots.c.version)
            .where(snapshots.c.session_id == session_id)
            .order_by(snapshots.c.sequence, snapshots.c.version)
        )
        async with self._reading() as conn:
            return [(int(row[0]), int(row[1])) for row in await conn.execute(query)]

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        snapshots = self._tables.snapshots
        deleted = 0
        unique = sorted(set(keys))
        async with self._writing() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                result = await conn.execute(
                    snapshots.delete().where(
                        snapshots.c.session_id == session_id,
                        sa.tuple_(snapshots.c.sequence, snapshots.c.version).in_(chunk),
                    )
                )
                deleted += result.rowcount
        return deleted


async def lock_checkpoint(conn: AsyncConnection, tables: Tables, name: str) -> int:
    """Consumer ``name``'s checkpoint in ``conn``'s transaction, its row made (at 0) when
    missing and locked to the end of the transaction (SQLite: the write lock does)."""
    table = tables.checkpoints
    insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    await conn.execute(
        insert(table)
        .values(name=name, position=0, updated_at=utc_now())
        .on_conflict_do_nothing(index_elements=[table.c.name])
    )
    query = sa.select(table.c.position).where(table.c.name == name).with_for_update()
    return int((await conn.execute(query)).scalar_one())


def checkpoint_update(tables: Tables, name: str, position: int) -> sa.Update:
    table = tables.checkpoints
    return (
        table.update().where(table.c.name == name).values(position=position, updated_at=utc_now())
    )


async def select_checkpoints(
    conn: AsyncConnection, table: sa.Table, events: sa.Table
) -> list[CheckpointRow]:
    """Every checkpoint by name, with its lag: the stored events after it (``events`` has an
    index on ``position``, so each count is a range scan)."""
    lag = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(events.c.position > table.c.position)
        .scalar_subquery()
    )
    query = sa.select(table.c.name, table.c.position, table.c.updated_at, lag).order_by(
        table.c.name
    )
    return [
        CheckpointRow(str(row[0]), int(row[1]), row[2], int(row[3]))
        for row in await conn.execute(query)
    ]


async def write_checkpoint(
    conn: AsyncConnection, table: sa.Table, name: str, position: int | None
) -> bool:
    """Set (or with None delete) a checkpoint in ``conn``'s transaction; whether it existed."""
    where = table.c.name == name
    if position is None:
        return bool((await conn.execute(table.delete().where(where))).rowcount)
    check_position(position)
    values = {"position": position, "updated_at": utc_now()}
    if (await conn.execute(table.update().where(where).values(**values))).rowcount:
        return True
    await conn.execute(table.insert().values(name=name, **values))
    return False


NOT_MIGRATED_HINT = " (is the database migrated? run `sandbox-agent db upgrade URL`)"


#: SQLite's primary result codes (the low byte) of a file or disk that failed, not of the data:
#: "disk I/O error", "database or disk is full", "unable to open database file".
SQLITE_UNREACHABLE = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN})


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, or an error that caused it, says the database cannot be reached or
    written (a connection, the network or the disk failed), rather than that the request or the
    data is wrong: ``OSError`` (timeouts included), SQLite's I/O, disk-full and cannot-open
    codes, and what SQLAlchemy found to be a lost connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return True
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in SQLITE_UNREACHABLE:
                return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            if current.orig is not None and current.orig is not current:
                current = current.orig
                continue
        current = current.__cause__
    return False


@contextmanager
def database_errors(
    where: str, is_unreachable: Callable[[BaseException], bool] = unreachable
) -> Iterator[None]:
    """Turn the driver's errors (other than constraint violations, which callers map to
    ``SessionExists`` and the like) into ``StoreError``s that say where and why:
    ``StoreUnavailable`` when the database cannot be reached or written (``is_unreachable``)."""
    try:
        yield
    except IntegrityError:
        raise
    except (DBAPIError, OSError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        if is_unreachable(exc):
            raise StoreUnavailable(f"{where}: {cause}") from exc
        hint = (
            NOT_MIGRATED_HINT
            if "no such table" in str(cause) or "does not exist" in str(cause)
            else ""
        )
        raise StoreError(f"{where}: {cause}{hint}") from exc
