"""What the SQLite and Postgres drivers share: SQLAlchemy Core over an async engine for the
sessions, snapshots and listings. Each driver adds its own append and read paths."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sandbox_agent.events import utc_now
from sandbox_agent.store.base import EventStore, decode_session_cursor, encode_session_cursor
from sandbox_agent.store.errors import (
    SessionExists,
    SessionNotFound,
    StoreError,
)
from sandbox_agent.store.records import Page, SessionRecord, SessionStatus, Snapshot
from sandbox_agent.store.tables import Tables, tables_for

#: The newest revision in ``migrations/versions`` (a test keeps the two equal).
HEAD_REVISION = "0001"

#: Execution option that makes the SQLite driver open a write (IMMEDIATE) transaction.
WRITE = "sandbox_agent_write"


class SqlEventStore(EventStore, abc.ABC):
    """Base of the SQL drivers: ``_engine`` is a SQLAlchemy ``AsyncEngine``."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        super().__init__()
        self._engine = engine
        self.url = url
        self._tables: Tables = tables_for(engine.dialect.name)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        with database_errors(self.url):
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(**{WRITE: True})
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        with database_errors(self.url):
            async with self._engine.connect() as conn:
                yield conn

    async def close(self) -> None:
        await super().close()
        await self._engine.dispose()

    async def schema_revision(self) -> str | None:
        """The Alembic revision of the database (None if it was never migrated)."""
        async with self._reading() as conn:
            return await stored_revision(conn)

    async def _upgrade(self) -> None:
        """Run pending migrations. Alembic is imported only when the database is behind: it
        costs about 10 MB of memory in a process that never needs it."""
        async with self._writing() as conn:
            await self._lock_migrations(conn)
            if await stored_revision(conn) != HEAD_REVISION:
                from sandbox_agent.store.migrate import run_upgrade

                await conn.run_sync(run_upgrade)

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        """Keep concurrent openers from migrating at once (SQLite's write lock already does)."""

    # -- sessions -------------------------------------------------------------------------
    async def create_session(self, record: SessionRecord) -> SessionRecord:
        now = utc_now()
        stored = record.model_copy(
            update={
                "updated_at": now,
                "status": "active",
                "ended_at": None,
                "native_session_id": None,
                "last_sequence": 0,
                "event_count": 0,
            }
        )
        try:
            async with self._writing() as conn:
                await conn.execute(self._tables.sessions.insert().values(**stored.model_dump()))
        except IntegrityError as exc:
            raise SessionExists(record.id) from exc
        return stored

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self._reading() as conn:
            row = (
                await conn.execute(
                    sa.select(self._tables.sessions).where(self._tables.sessions.c.id == session_id)
                )
            ).first()
        return None if row is None else SessionRecord.model_validate(dict(row._mapping))

    async def list_sessions(
        self,
        limit: int = 100,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        agent: str | None = None,
    ) -> Page[SessionRecord]:
        query = sa.select(self._tables.sessions)
        if cursor is not None:
            created, last_id = decode_session_cursor(cursor)
            query = query.where(
                sa.or_(
                    self._tables.sessions.c.created_at < created,
                    sa.and_(
                        self._tables.sessions.c.created_at == created,
                        self._tables.sessions.c.id < last_id,
                    ),
                )
            )
        if status is not None:
            query = query.where(self._tables.sessions.c.status == status)
        if agent is not None:
            query = query.where(self._tables.sessions.c.agent == agent)
        query = query.order_by(
            self._tables.sessions.c.created_at.desc(), self._tables.sessions.c.id.desc()
        ).limit(limit + 1)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        items = [SessionRecord.model_validate(dict(r._mapping)) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_session_cursor(items[-1]) if more else None)

    async def update_session(
        self,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionRecord:
        changes: dict[str, Any] = {"updated_at": utc_now()}
        if title is not None:
            changes["title"] = title
        if metadata is not None:
            changes["metadata"] = metadata
        async with self._writing() as conn:
            result = await conn.execute(
                self._tables.sessions.update()
                .where(self._tables.sessions.c.id == session_id)
                .values(**changes)
            )
            if result.rowcount == 0:
                raise SessionNotFound(session_id)
        record = await self.get_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    async def delete_session(self, session_id: str) -> bool:
        async with self._writing() as conn:
            # The session row first: it waits for an append in flight (which holds that row)
            # and stops later ones, so the events deleted next include every committed one.
            result = await conn.execute(
                self._tables.sessions.delete().where(self._tables.sessions.c.id == session_id)
            )
            await conn.execute(
                self._tables.events.delete().where(self._tables.events.c.session_id == session_id)
            )
            await conn.execute(
                self._tables.snapshots.delete().where(
                    self._tables.snapshots.c.session_id == session_id
                )
            )
        self._deleted(session_id)
        return bool(result.rowcount)

    # -- snapshots ------------------------------------------------------------------------
    async def save_snapshot(
        self, session_id: str, sequence: int, state: dict[str, Any], version: int
    ) -> Snapshot:
        snapshot = Snapshot(session_id=session_id, sequence=sequence, version=version, state=state)
        async with self._writing() as conn:
            exists = (
                await conn.execute(
                    sa.select(self._tables.sessions.c.id).where(
                        self._tables.sessions.c.id == session_id
                    )
                )
            ).first()
            if exists is None:
                raise SessionNotFound(session_id)
            await conn.execute(
                self._tables.snapshots.delete().where(
                    self._tables.snapshots.c.session_id == session_id,
                    self._tables.snapshots.c.sequence == sequence,
                    self._tables.snapshots.c.version == version,
                )
            )
            await conn.execute(self._tables.snapshots.insert().values(**snapshot.model_dump()))
        return snapshot

    async def load_snapshot(
        self,
        session_id: str,
        at_or_before: int | None = None,
        version: int | None = None,
    ) -> Snapshot | None:
        query = sa.select(self._tables.snapshots).where(
            self._tables.snapshots.c.session_id == session_id
        )
        if at_or_before is not None:
            query = query.where(self._tables.snapshots.c.sequence <= at_or_before)
        if version is not None:
            query = query.where(self._tables.snapshots.c.version == version)
        query = query.order_by(
            # Primary-key columns only: the index orders them without reading any state.
            self._tables.snapshots.c.sequence.desc(),
            self._tables.snapshots.c.version.desc(),
        ).limit(1)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else Snapshot.model_validate(dict(row._mapping))

    async def load_snapshot_json(
        self,
        session_id: str,
        at_or_before: int | None = None,
        version: int | None = None,
    ) -> tuple[int, str] | None:
        snapshots = self._tables.snapshots
        query = sa.select(snapshots.c.sequence, sa.cast(snapshots.c.state, sa.Text)).where(
            snapshots.c.session_id == session_id
        )
        if at_or_before is not None:
            query = query.where(snapshots.c.sequence <= at_or_before)
        if version is not None:
            query = query.where(snapshots.c.version == version)
        query = query.order_by(snapshots.c.sequence.desc(), snapshots.c.version.desc()).limit(1)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
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


NOT_MIGRATED_HINT = " (is the database migrated? run `sandbox-agent db upgrade URL`)"


@contextmanager
def database_errors(where: str) -> Iterator[None]:
    """Turn the driver's errors (other than constraint violations, which callers map to
    ``SessionExists`` and the like) into ``StoreError``s that say where and why."""
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as exc:
        cause = exc.orig if exc.orig is not None else exc
        hint = (
            NOT_MIGRATED_HINT
            if "no such table" in str(cause) or "does not exist" in str(cause)
            else ""
        )
        raise StoreError(f"{where}: {cause}{hint}") from exc


async def stored_revision(conn: AsyncConnection) -> str | None:
    """The revision in ``alembic_version``, read without importing Alembic (None if absent)."""
    if conn.dialect.name == "sqlite":
        probe = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    else:
        probe = "SELECT 1 WHERE to_regclass('alembic_version') IS NOT NULL"
    if (await conn.exec_driver_sql(probe)).first() is None:
        return None
    row = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])
