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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pydantic_core import from_json
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sandbox_agent.store.codec import dump_json
from sandbox_agent.store.driver import (
    EventRow,
    IntegrityReport,
    PositionedRow,
    RewrittenRow,
    SessionChange,
    StoredRow,
)
from sandbox_agent.store.errors import (
    DuplicateEventId,
    SequenceConflict,
    SessionNotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.event_store import EventStore
from sandbox_agent.store.leases import Lease, LeaseDriver, LeaseHolder
from sandbox_agent.store.ownership import AdvisoryOwnership
from sandbox_agent.store.sql import NOT_MIGRATED_HINT, SqlDriver
from sandbox_agent.store.url import float_option, int_option, no_more_options, split_url

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_EVENT_COLUMNS = (
    "sequence, event_id, time, type, source, synthetic, native_session_id, data::text, raw::text, "
    "schema_version"
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
    "synthetic, native_session_id, data, raw, schema_version) "
    "SELECT $1, s.base + t.i, t.event_id, p.base + t.i, t.time, t.type, t.source, t.synthetic, "
    "t.native_session_id, t.data::json, t.raw::json, t.schema_version "
    "FROM s, p, unnest($5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::bool[], "
    "$10::text[], $11::text[], $12::text[], $17::int[]) WITH ORDINALITY "
    "AS t(event_id, time, type, source, synthetic, native_session_id, data, raw, "
    "schema_version, i)) "
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
#: asyncpg's errors of a connection that failed or a server that cannot serve (shutting down,
#: starting, out of connections): the store is unreachable, not the request wrong.
_UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)
_MIGRATION_LOCK = 0x5A4E_7A61  # pg_advisory_xact_lock key: one migrator at a time


_AMCHECK_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    "WHERE e.extname = 'amcheck'"
)
_SCHEMA_BTREES = (
    "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
    "JOIN pg_am a ON a.oid = c.relam WHERE n.nspname = $1 AND a.amname = 'btree' "
    "ORDER BY c.relname"
)


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's store (identifiers are at most 63 bytes)."""
    name = f"sandbox_agent_events_{schema}"
    if len(name) > 63:
        name = "sandbox_agent_events_" + hashlib.sha1(schema.encode()).hexdigest()[:32]
    return name


class PostgresDriver(SqlDriver):
    """Open it with ``open_store("postgresql://user@host:5432/db?schema=name")``."""

    def __init__(self, engine: Any, url: str, schema: str, poll_interval: float) -> None:
        super().__init__(engine, url)
        self.schema = schema
        self.channel = channel_name(schema)
        self.poll_interval = poll_interval
        self._wake: Callable[[str], None] = lambda _: None
        self._listener: AsyncConnection | None = None
        self._listener_raw: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, **options: Any) -> PostgresDriver:
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

    def attach(self, wake: Callable[[str], None]) -> None:
        self._wake = wake

    def _unreachable(self, exc: BaseException) -> bool:
        current: BaseException | None = exc
        while current is not None:
            if isinstance(current, _UNREACHABLE):
                return True
            current = current.__cause__
        return super()._unreachable(exc)

    async def check_integrity(self) -> IntegrityReport:
        """amcheck's ``bt_index_check`` (with ``heapallindexed``) on every B-tree index of the
        store's schema, when the extension is installed; this driver never installs it."""
        async with self._raw() as pg:
            where = await pg.fetchval(_AMCHECK_SCHEMA)
            if where is None:
                return IntegrityReport(
                    supported=False,
                    method="Postgres: not supported without the amcheck extension "
                    "(CREATE EXTENSION amcheck, as a superuser, enables it)",
                )
            indexes = await pg.fetch(_SCHEMA_BTREES, self.schema)
            problems: list[str] = []
            for index in indexes:
                try:
                    await pg.execute(
                        f'SELECT "{where}".bt_index_check($1::oid::regclass, true)', index["oid"]
                    )
                except asyncpg.PostgresError as exc:
                    problems.append(f"index {index['relname']}: {exc}")
        return IntegrityReport(
            supported=True,
            method=f"Postgres amcheck bt_index_check on {len(indexes)} index(es)",
            problems=tuple(problems),
        )

    def ownership_lock(self) -> AdvisoryOwnership:
        return AdvisoryOwnership(self._engine, self.schema)

    def session_leases(self) -> PostgresLeases:
        return PostgresLeases(self)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, session_id: str) -> None:
        self._wake(session_id)

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
        try:
            conn = await self._engine.connect()
        except Exception as exc:  # the pool's new connection: refused, reset, timed out
            if self._unreachable(exc):
                raise StoreUnavailable(f"Postgres at {self.url}: {exc}") from exc
            raise StoreError(f"Postgres at {self.url}: {exc}") from exc
        try:
            raw = await conn.get_raw_connection()
            pg: asyncpg.Connection = raw.driver_connection
            try:
                yield pg
            except _UNREACHABLE as exc:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                raise StoreUnavailable(f"Postgres at {self.url}: {exc}") from exc
            except asyncpg.UndefinedTableError as exc:
                raise StoreError(f"Postgres at {self.url}: {exc}{NOT_MIGRATED_HINT}") from exc
            except asyncpg.PostgresError as exc:  # e.g. a value too long for its column
                raise StoreError(f"Postgres at {self.url}: {exc}") from exc
        finally:
            await conn.close()

    # -- events ---------------------------------------------------------------------------
    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        async with self._raw() as pg:
            try:
                row = await pg.fetchrow(
                    _APPEND,
                    session_id,
                    change.count,
                    self.channel,
                    expected_sequence,
                    [r.event_id for r in rows],
                    [r.time for r in rows],
                    [r.type for r in rows],
                    [r.source for r in rows],
                    [r.synthetic for r in rows],
                    [r.native_session_id for r in rows],
                    [r.data for r in rows],
                    [r.raw for r in rows],
                    change.updated_at,
                    change.status,
                    change.ended_at,
                    change.native_session_id,
                    [r.schema_version for r in rows],
                )
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateEventId(session_id, str(exc)) from exc
            if row is None:
                actual = await pg.fetchval(_EXISTS, session_id)
                if actual is None:
                    raise SessionNotFound(session_id)
                raise SequenceConflict(session_id, expected_sequence or 0, int(actual))
        return int(row[0])

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        async with self._raw() as pg:
            rows: list[asyncpg.Record] = await pg.fetch(_READ, session_id, after, limit)
            if not rows and await pg.fetchval(_EXISTS, session_id) is None:
                raise SessionNotFound(session_id)
        return rows

    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        async with self._raw() as pg:
            rows: list[asyncpg.Record] = await pg.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = $1 AND event_id = ANY($2)",
                session_id,
                list(event_ids),
            )
        return rows

    async def rewrite_events(self, session_id: str, rows: Sequence[RewrittenRow]) -> None:
        async with self._raw() as pg, pg.transaction():
            if await pg.fetchval(_EXISTS, session_id) is None:
                raise SessionNotFound(session_id)
            changed = await pg.fetchval(
                _REWRITE,
                session_id,
                [r.sequence for r in rows],
                [r.data for r in rows],
                [r.raw for r in rows],
                [r.schema_version for r in rows],
            )
            if changed != len({r.sequence for r in rows}):
                # Raising inside the transaction rolls it back: nothing was written.
                raise StoreError(
                    f"session {session_id!r}: {len(rows) - int(changed)} of the events to "
                    "rewrite are not stored (nothing was written)"
                )

    async def select_last_sequence(self, session_id: str) -> int | None:
        async with self._raw() as pg:
            value = await pg.fetchval(_EXISTS, session_id)
        return None if value is None else int(value)

    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        async with self._raw() as pg:
            rows: list[asyncpg.Record] = await pg.fetch(_READ_ALL, after_position, limit)
        return rows


_REWRITE = (
    "WITH u AS (UPDATE events e SET data = t.data::json, raw = t.raw::json, "
    "schema_version = COALESCE(t.schema_version, e.schema_version) "
    "FROM unnest($2::bigint[], $3::text[], $4::text[], $5::int[]) "
    "AS t(sequence, data, raw, schema_version) "
    "WHERE e.session_id = $1 AND e.sequence = t.sequence RETURNING 1) SELECT count(*) FROM u"
)


# The lease statements (store/leases.py). Times are the database's (now()), never a host's.
# _ACQUIRE is the compare-and-set: the row is written only when it is free, expired or ours;
# ON CONFLICT locks the row and checks the WHERE on its newest version, so of two servers
# racing for one expired lease exactly one wins.
_LEASE_COLUMNS = "session_id, server_id, pid, host, since, expires_at"
_ACQUIRE = (
    "INSERT INTO session_leases AS l (session_id, server_id, pid, host, since, acquired_at, "
    "expires_at) VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6)) "
    "ON CONFLICT (session_id) DO UPDATE SET server_id = EXCLUDED.server_id, "
    "pid = EXCLUDED.pid, host = EXCLUDED.host, since = EXCLUDED.since, "
    "acquired_at = CASE WHEN l.server_id = EXCLUDED.server_id THEN l.acquired_at "
    "ELSE EXCLUDED.acquired_at END, expires_at = EXCLUDED.expires_at "
    "WHERE l.server_id = EXCLUDED.server_id OR l.expires_at <= now() "
    f"RETURNING {_LEASE_COLUMNS}"
)
_HOLDER = f"SELECT {_LEASE_COLUMNS} FROM session_leases WHERE session_id = $1"
_RENEW = (
    "UPDATE session_leases SET expires_at = now() + make_interval(secs => $2) "
    "WHERE server_id = $1 RETURNING session_id"
)
_EXPIRED = (
    "SELECT l.session_id FROM session_leases l JOIN sessions s ON s.id = l.session_id "
    "WHERE l.expires_at <= now() AND s.status = 'active' ORDER BY l.expires_at LIMIT $1"
)


class PostgresLeases(LeaseDriver):
    """Session leases in the ``session_leases`` table (migration 0002)."""

    def __init__(self, driver: PostgresDriver) -> None:
        self._driver = driver

    async def acquire(self, session_id: str, holder: LeaseHolder, seconds: float) -> Lease:
        async with self._driver._raw() as pg:
            # A lease that expires or is released between the two statements: try again.
            for _ in range(3):
                row = await pg.fetchrow(
                    _ACQUIRE,
                    session_id,
                    holder.server_id,
                    holder.pid,
                    holder.host,
                    holder.since,
                    seconds,
                )
                row = row or await pg.fetchrow(_HOLDER, session_id)
                if row is not None:
                    return _lease(row)
        raise StoreError(f"session {session_id!r}: its lease changed hands three times at once")

    async def renew(self, server_id: str, seconds: float) -> set[str]:
        async with self._driver._raw() as pg:
            rows = await pg.fetch(_RENEW, server_id, seconds)
        return {str(r[0]) for r in rows}

    async def release(self, server_id: str, session_ids: Sequence[str] | None) -> None:
        async with self._driver._raw() as pg:
            await pg.execute(
                "UPDATE session_leases SET expires_at = now() WHERE server_id = $1 "
                "AND ($2::text[] IS NULL OR session_id = ANY($2)) AND expires_at > now()",
                server_id,
                None if session_ids is None else list(session_ids),
            )

    async def forget(self, server_id: str, session_id: str) -> None:
        async with self._driver._raw() as pg:
            await pg.execute(
                "DELETE FROM session_leases WHERE session_id = $1 AND server_id = $2",
                session_id,
                server_id,
            )

    async def expired(self, limit: int) -> list[str]:
        async with self._driver._raw() as pg:
            rows = await pg.fetch(_EXPIRED, limit)
        return [str(r[0]) for r in rows]

    def ownership_lock(self) -> AdvisoryOwnership:
        return AdvisoryOwnership(self._driver._engine, self._driver.schema, shared=True)


def _lease(row: asyncpg.Record) -> Lease:
    holder = LeaseHolder(server_id=row[1], pid=row[2], host=row[3], since=row[4])
    return Lease(session_id=row[0], holder=holder, expires_at=row[5])


async def open_postgres_store(url: str, **options: Any) -> EventStore:
    """``postgresql://user@host:5432/db?schema=name&pool_size=10`` (see the module's
    docstring)."""
    base, query = split_url(url)
    return EventStore(await PostgresDriver.open(base, **{**query, **options}))


__all__ = ["PostgresDriver", "PostgresLeases", "channel_name", "open_postgres_store"]
