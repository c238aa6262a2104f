"""The Postgres driver (``postgresql://user@host:port/db``): SQLAlchemy async Core over asyncpg.

For backends with several replicas: every replica opens the same database, reads and follows
any session, and ``expected_sequence`` keeps concurrent writers honest.

- Appends lock the session's row (``UPDATE sessions ... RETURNING``), so a stream's sequences
  are taken one writer at a time, then take their global positions from the one-row
  ``positions`` table. That row lock is held until commit, so positions become visible in
  commit order and a ``read_all`` reader never skips a late commit. The cost: appends to
  different sessions serialise on that row for the last few statements of their transaction.
- ``subscribe`` listens on a channel named after the schema (``LISTEN``), notified by every
  append in its own transaction (``pg_notify``, delivered at commit); a slow poll
  (``poll_interval``, default 1 s) covers a dropped listener connection.
- ``?schema=name`` keeps the tables in that schema (created when missing), via ``search_path``.

The append and read paths use the asyncpg connection under SQLAlchemy's pool directly, with
``unnest``, so that an append is one statement: one round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from pydantic_core import from_json
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sandbox_agent.events import EventDraft, UniversalEvent, utc_now
from sandbox_agent.store.base import (
    DEFAULT_PAGE,
    batch_projection,
    check_batch_ids,
    fill_drafts,
    resolve_retry,
)
from sandbox_agent.store.codec import decode_event, dump_json, dump_raw, paused_gc
from sandbox_agent.store.errors import (
    SequenceConflict,
    SessionNotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.records import PositionedEvent
from sandbox_agent.store.sql import NOT_MIGRATED_HINT, SqlEventStore
from sandbox_agent.store.url import float_option, int_option, no_more_options

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_EVENT_COLUMNS = (
    "sequence, event_id, time, type, source, synthetic, native_session_id, data::text, raw::text"
)
# The whole append is one statement (one round trip, its own transaction). In order:
# s  locks the session row, checks expected_sequence ($4, NULL: append at the end), takes the
#    batch's sequences and updates the projection; no row when the check fails or the
#    session is unknown, and then nothing below writes anything;
# p  takes the batch's global positions from the one-row positions table, whose lock is held
#    to commit, so positions become visible in commit order;
# n  notifies subscribers (delivered at commit);
# the INSERT writes the batch from unnest'ed arrays.
_APPEND = (
    "WITH s AS (UPDATE sessions SET last_sequence = last_sequence + $2, "
    "event_count = event_count + $2, updated_at = $13, status = COALESCE($14::text, status), "
    "ended_at = CASE WHEN $14::text IS NULL THEN ended_at WHEN $14::text = 'ended' THEN $15 "
    "ELSE NULL END, native_session_id = COALESCE($16::text, native_session_id) "
    "WHERE id = $1 AND ($4::bigint IS NULL OR last_sequence = $4) "
    "RETURNING last_sequence - $2 AS base), "
    "p AS (UPDATE positions SET last_position = last_position + $2 "
    "WHERE id = 1 AND EXISTS (SELECT 1 FROM s) RETURNING last_position - $2 AS base), "
    "n AS (SELECT pg_notify($3, $1) FROM s), "
    "i AS (INSERT INTO events (session_id, sequence, event_id, position, time, type, source, "
    "synthetic, native_session_id, data, raw) "
    "SELECT $1, s.base + t.i, t.event_id, p.base + t.i, t.time, t.type, t.source, t.synthetic, "
    "t.native_session_id, t.data::json, t.raw::json "
    "FROM s, p, unnest($5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::bool[], "
    "$10::text[], $11::text[], $12::text[]) WITH ORDINALITY "
    "AS t(event_id, time, type, source, synthetic, native_session_id, data, raw, i)) "
    "SELECT s.base, (SELECT count(*) FROM n) FROM s"
)
_READ = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = $1 AND sequence > $2 "
    "ORDER BY sequence LIMIT $3"
)
_READ_ALL = (
    f"SELECT position, session_id, {_EVENT_COLUMNS} FROM events WHERE position > $1 "
    "ORDER BY position LIMIT $2"
)
_EXISTS = "SELECT last_sequence FROM sessions WHERE id = $1"
_MIGRATION_LOCK = 0x5A4E_7A61  # pg_advisory_xact_lock key: one migrator at a time


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's store (identifiers are at most 63 bytes)."""
    name = f"sandbox_agent_events_{schema}"
    if len(name) > 63:
        name = "sandbox_agent_events_" + hashlib.sha1(schema.encode()).hexdigest()[:32]
    return name


class PostgresEventStore(SqlEventStore):
    """Open it with ``open_store("postgresql://user@host:5432/db?schema=name")``."""

    def __init__(self, engine: Any, url: str, schema: str, poll_interval: float) -> None:
        super().__init__(engine, url)
        self.schema = schema
        self.channel = channel_name(schema)
        self._poll_interval = poll_interval
        self._listener: AsyncConnection | None = None
        self._listener_raw: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, **options: Any) -> PostgresEventStore:
        schema = str(options.pop("schema", "public"))
        if not _SCHEMA_NAME.match(schema):
            raise StoreConfigError(
                f"Postgres option schema must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, "
                f"at most 63 characters), got {schema!r}"
            )
        pool_size = int_option(options, "pool_size") or 10
        max_overflow = int_option(options, "max_overflow")
        connect_timeout = float_option(options, "connect_timeout", 10.0)
        poll_interval = float_option(options, "poll_interval", 1.0)
        no_more_options(options, url)
        try:
            sa_url = make_url(url).set(drivername="postgresql+asyncpg")
        except Exception as exc:
            raise StoreConfigError(f"invalid Postgres URL {url!r}: {exc}") from exc
        engine = create_async_engine(
            sa_url,
            pool_size=pool_size,
            max_overflow=2 * pool_size if max_overflow is None else max_overflow,
            connect_args={
                "server_settings": {"search_path": schema},
                "timeout": connect_timeout,
            },
            json_serializer=dump_json,
            json_deserializer=from_json,
        )
        where = sa_url.render_as_string(hide_password=True)
        store = cls(engine, where, schema, poll_interval)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                await conn.commit()
            if migrate:
                await store._upgrade()
            await store._listen()
        except Exception as exc:
            await store.close()
            if isinstance(exc, StoreError):
                raise
            cause = exc.__cause__ or exc
            if (
                isinstance(exc, DBAPIError)
                and not isinstance(cause, OSError | asyncpg.exceptions.ConnectionDoesNotExistError)
                and "CannotConnectNow" not in type(cause).__name__
            ):
                raise StoreError(f"Postgres at {where}: {cause}") from exc
            raise StoreUnavailable(f"cannot connect to Postgres at {where}: {cause}") from exc
        return store

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    async def _listen(self) -> None:
        self._listener = await self._engine.connect()
        raw = await self._listener.get_raw_connection()
        self._listener_raw = raw.driver_connection
        assert self._listener_raw is not None
        await self._listener_raw.add_listener(self.channel, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, session_id: str) -> None:
        self._notifier.notify(session_id)

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                if self._listener_raw is not None:
                    await self._listener_raw.remove_listener(self.channel, self._on_notify)
                await self._listener.close()
            self._listener = self._listener_raw = None
        await super().close()

    @asynccontextmanager
    async def _raw(self) -> AsyncIterator[asyncpg.Connection]:
        """The asyncpg connection under a pooled SQLAlchemy one. Without pool pre-ping (three
        round trips per checkout), a connection found dead is invalidated on first use."""
        conn = await self._engine.connect()
        try:
            raw = await conn.get_raw_connection()
            pg: asyncpg.Connection = raw.driver_connection
            try:
                yield pg
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                await conn.invalidate()
                raise StoreUnavailable(f"Postgres at {self.url}: {exc}") from exc
            except asyncpg.UndefinedTableError as exc:
                raise StoreError(f"Postgres at {self.url}: {exc}{NOT_MIGRATED_HINT}") from exc
            except asyncpg.PostgresError as exc:  # e.g. a value too long for its column
                raise StoreError(f"Postgres at {self.url}: {exc}") from exc
        finally:
            await conn.close()

    # -- append ---------------------------------------------------------------------------
    async def append(
        self,
        session_id: str,
        drafts: Sequence[EventDraft],
        expected_sequence: int | None = None,
    ) -> list[UniversalEvent]:
        if not drafts:
            await self.last_sequence(session_id)  # SessionNotFound for an unknown session
            return []
        filled = fill_drafts(drafts)
        check_batch_ids(session_id, filled)
        count = len(filled)
        status, ended_at, native = batch_projection(filled)
        async with self._raw() as pg:
            try:
                row = await pg.fetchrow(
                    _APPEND,
                    session_id,
                    count,
                    self.channel,
                    expected_sequence,
                    [event_id for _, event_id, _ in filled],
                    [time for _, _, time in filled],
                    [d.type for d, _, _ in filled],
                    [d.source for d, _, _ in filled],
                    [d.synthetic for d, _, _ in filled],
                    [d.native_session_id for d, _, _ in filled],
                    [dump_json(d.data) for d, _, _ in filled],
                    [dump_raw(d.raw) for d, _, _ in filled],
                    utc_now(),
                    status,
                    ended_at,
                    native,
                )
            except asyncpg.UniqueViolationError as exc:
                # An event_id of the batch is stored already: a retry, or a conflict.
                retried = await self._find_retry(pg, session_id, filled)
                if retried is not None:
                    return retried
                raise StoreError(
                    f"session {session_id!r}: append failed, nothing was written: {exc}"
                ) from exc
            if row is None:
                actual = await pg.fetchval(_EXISTS, session_id)
                if actual is None:
                    raise SessionNotFound(session_id)
                retried = await self._find_retry(pg, session_id, filled)
                if retried is not None:
                    return retried
                raise SequenceConflict(session_id, expected_sequence or 0, int(actual))
        last = int(row[0])
        stored = [
            draft.to_event(session_id=session_id, sequence=last + i, event_id=event_id, time=time)
            for i, (draft, event_id, time) in enumerate(filled, start=1)
        ]
        # Local subscribers at once; the NOTIFY wakes those of other processes.
        self._appended(session_id, stored)
        return stored

    async def _find_retry(
        self,
        pg: asyncpg.Connection,
        session_id: str,
        filled: list[tuple[EventDraft, str, datetime]],
    ) -> list[UniversalEvent] | None:
        rows = await pg.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = $1 AND event_id = ANY($2)",
            session_id,
            [event_id for _, event_id, _ in filled],
        )
        found = {row[1]: decode_event(session_id, *row) for row in rows}
        return resolve_retry(session_id, filled, found)

    # -- reads ----------------------------------------------------------------------------
    async def read(
        self, session_id: str, after: int = 0, limit: int | None = None
    ) -> list[UniversalEvent]:
        async with self._raw() as pg:
            rows = await pg.fetch(_READ, session_id, after, limit)
            if not rows and await pg.fetchval(_EXISTS, session_id) is None:
                raise SessionNotFound(session_id)
        with paused_gc():
            return [decode_event(session_id, *row) for row in rows]

    async def last_sequence(self, session_id: str) -> int:
        async with self._raw() as pg:
            value = await pg.fetchval(_EXISTS, session_id)
        if value is None:
            raise SessionNotFound(session_id)
        return int(value)

    async def read_all(
        self, after_position: int = 0, limit: int = DEFAULT_PAGE
    ) -> list[PositionedEvent]:
        async with self._raw() as pg:
            rows = await pg.fetch(_READ_ALL, after_position, limit)
        with paused_gc():
            return [PositionedEvent(row[0], decode_event(*row[1:])) for row in rows]


__all__ = ["PostgresEventStore", "channel_name"]
