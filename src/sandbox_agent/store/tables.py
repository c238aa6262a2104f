"""The SQL tables of the SQLite and Postgres drivers (SQLAlchemy Core), shared by both and by the
Alembic migrations in ``migrations/``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from sandbox_agent.events.envelope import TIME_FORMAT, format_time


class Timestamp(sa.TypeDecorator[datetime]):
    """UTC time: ``timestamptz`` on Postgres; on SQLite fixed-width RFC 3339 text
    (``2026-01-02T03:04:05.000006Z``), which sorts as time and round-trips exactly."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return encode_sqlite_time(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return decode_sqlite_time(value)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


def encode_sqlite_time(value: datetime) -> str:
    return format_time(value)


def decode_sqlite_time(value: str) -> datetime:
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


# Postgres ``json``, not ``jsonb``: it keeps the text as written (key order, duplicate keys,
# "\u0000", which jsonb refuses), and nothing queries inside payloads.
JsonDoc = sa.JSON()
# For the nullable ``raw`` column: Python None is SQL NULL, not the JSON value null.
NullableJsonDoc = sa.JSON(none_as_null=True)


class Tables:
    """The tables of one dialect. They differ only in how ``events.position`` is made:

    - SQLite: ``position`` is the table's ``INTEGER PRIMARY KEY AUTOINCREMENT`` (the rowid),
      handed out in commit order because SQLite has one writer at a time, never reused, and
      free: no counter row to update, one b-tree fewer. ``(session_id, sequence)`` is unique.
    - Postgres: ``(session_id, sequence)`` is the primary key and ``position`` comes from the
      one-row ``positions`` table, taken with ``UPDATE ... RETURNING`` so that assignments are
      serialised in commit order (see docs/persistence.md).
    """

    def __init__(self, dialect: str, *, schema_versions: bool = True) -> None:
        # ``schema_versions`` False: the events table as revision 0001 made it (no
        # ``schema_version`` column; 0003 adds it).
        self.dialect = dialect
        self.metadata = sa.MetaData()
        self.sessions = sa.Table(
            "sessions",
            self.metadata,
            sa.Column("id", sa.String(128), primary_key=True),
            sa.Column("agent", sa.String(128), nullable=False),
            sa.Column("agent_mode", sa.String(128)),
            sa.Column("permission_mode", sa.String(128)),
            sa.Column("model", sa.String(256)),
            sa.Column("variant", sa.String(128)),
            sa.Column("title", sa.Text),
            sa.Column("directory", sa.Text),
            sa.Column("native_session_id", sa.String(256)),
            sa.Column("status", sa.String(16), nullable=False, server_default="active"),
            sa.Column("created_at", Timestamp, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
            sa.Column("ended_at", Timestamp),
            sa.Column("last_sequence", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("event_count", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("metadata", JsonDoc, nullable=False),
            sa.Column("init", JsonDoc, nullable=False),
            sa.Index("ix_sessions_created", "created_at", "id"),
        )
        columns: list[sa.schema.SchemaItem] = [
            sa.Column("event_id", sa.String(128), nullable=False),
            sa.Column("time", Timestamp, nullable=False),
            sa.Column("type", sa.String(64), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("synthetic", sa.Boolean, nullable=False),
            sa.Column("native_session_id", sa.String(256)),
            # SQLite: TEXT, because a column declared JSON has NUMERIC affinity and would turn
            # a raw payload such as "5" into the integer 5.
            sa.Column("data", sa.Text if dialect == "sqlite" else JsonDoc, nullable=False),
            sa.Column("raw", sa.Text if dialect == "sqlite" else NullableJsonDoc),
            sa.UniqueConstraint("session_id", "event_id", name="uq_events_session_event_id"),
        ]
        if schema_versions:
            # The version of ``data``'s shape (events/versions.py); migration 0003.
            columns.append(
                sa.Column("schema_version", sa.Integer, nullable=False, server_default="1")
            )
        if dialect == "sqlite":
            self.events = sa.Table(
                "events",
                self.metadata,
                sa.Column("position", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("session_id", sa.String(128), nullable=False),
                sa.Column("sequence", sa.BigInteger, nullable=False),
                *columns,
                sa.UniqueConstraint("session_id", "sequence", name="uq_events_session_sequence"),
                sqlite_autoincrement=True,
            )
            self.positions: sa.Table | None = None
            self.leases: sa.Table | None = None  # one server per SQLite store: no leases
        else:
            self.events = sa.Table(
                "events",
                self.metadata,
                sa.Column("session_id", sa.String(128), primary_key=True),
                sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
                sa.Column("position", sa.BigInteger, nullable=False),
                *columns,
                sa.Index("ix_events_position", "position"),
            )
            self.positions = sa.Table(
                "positions",
                self.metadata,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                sa.Column("last_position", sa.BigInteger, nullable=False),
            )
            # Session leases of servers sharing the store (store/leases.py; migration 0002).
            self.leases = sa.Table(
                "session_leases",
                self.metadata,
                sa.Column("session_id", sa.String(128), primary_key=True),
                sa.Column("server_id", sa.String(64), nullable=False),
                sa.Column("pid", sa.Integer, nullable=False),
                sa.Column("host", sa.String(256), nullable=False),
                sa.Column("since", Timestamp, nullable=False),
                sa.Column("acquired_at", Timestamp, nullable=False),
                sa.Column("expires_at", Timestamp, nullable=False),
                sa.Index("ix_session_leases_server", "server_id"),
                sa.Index("ix_session_leases_expires", "expires_at"),
            )
        # Consumers' checkpoints (store/checkpoints.py; migration 0004), on every dialect.
        self.checkpoints = sa.Table(
            "consumer_checkpoints",
            self.metadata,
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
        )
        self.snapshots = sa.Table(
            "snapshots",
            self.metadata,
            sa.Column("session_id", sa.String(128), primary_key=True),
            sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("state", JsonDoc, nullable=False),
            sa.Column("created_at", Timestamp, nullable=False),
        )


SQLITE_TABLES = Tables("sqlite")
POSTGRES_TABLES = Tables("postgresql")


def tables_for(dialect: str) -> Tables:
    return SQLITE_TABLES if dialect == "sqlite" else POSTGRES_TABLES
