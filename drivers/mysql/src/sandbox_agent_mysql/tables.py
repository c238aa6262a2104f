"""The MySQL/MariaDB tables (SQLAlchemy Core), used by the driver's queries and by migration 0001.

- Every text column is ``utf8mb4`` with a binary, no-pad collation (``utf8mb4_nopad_bin`` on
  MariaDB, ``utf8mb4_0900_bin`` on MySQL 8): ids compare byte for byte as in Python, so
  ``"S1"`` and ``"s1"``, or ``"a"`` and ``"a "``, are different sessions, and ordering by id is
  code-point order.
- Times are ``DATETIME(6)`` holding UTC (microseconds, no time-zone conversion by the server).
- JSON documents are ``LONGTEXT`` holding the JSON text as written (MariaDB's ``JSON`` type is
  the same column with a ``json_valid`` check that nothing here needs).
- ``events``: primary key ``(session_id, sequence)``, so a session's stream is one clustered
  range; ``position`` comes from the one-row ``positions`` table (see ``driver.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from sandbox_agent.store.codec import dump_json, load_json


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware ``datetime`` stored as UTC in ``DATETIME(6)``, read back aware (UTC)."""

    impl = mysql.DATETIME(fsp=6)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class JsonText(sa.TypeDecorator[Any]):
    """A JSON document kept as its text in ``LONGTEXT``."""

    impl = mysql.LONGTEXT
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return load_json(value)


class Tables:
    """The tables, with ``collation`` as their default collation (None: the database's)."""

    def __init__(self, collation: str | None = None, *, schema_versions: bool = True) -> None:
        # ``schema_versions`` False: the events table as revision 0001 made it (0002 adds the
        # column).
        options: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
        if collation is not None:
            options["mysql_collate"] = collation
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
            sa.Column("title", mysql.LONGTEXT),
            sa.Column("directory", mysql.LONGTEXT),
            sa.Column("native_session_id", sa.String(256)),
            sa.Column("status", sa.String(16), nullable=False, server_default="active"),
            sa.Column("created_at", UtcDateTime, nullable=False),
            sa.Column("updated_at", UtcDateTime, nullable=False),
            sa.Column("ended_at", UtcDateTime),
            sa.Column("last_sequence", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("event_count", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("metadata", JsonText, nullable=False),
            sa.Column("init", JsonText, nullable=False),
            sa.Index("ix_sessions_created", "created_at", "id"),
            **options,
        )
        self.events = sa.Table(
            "events",
            self.metadata,
            sa.Column("session_id", sa.String(128), primary_key=True),
            sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("event_id", sa.String(128), nullable=False),
            sa.Column("time", UtcDateTime, nullable=False),
            sa.Column("type", sa.String(64), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("synthetic", sa.Boolean, nullable=False),
            sa.Column("native_session_id", sa.String(256)),
            sa.Column("data", mysql.LONGTEXT, nullable=False),
            sa.Column("raw", mysql.LONGTEXT),
            *(
                # The version of ``data``'s shape (sandbox_agent.events.versions).
                [sa.Column("schema_version", sa.Integer, nullable=False, server_default="1")]
                if schema_versions
                else []
            ),
            sa.UniqueConstraint("session_id", "event_id", name="uq_events_session_event_id"),
            sa.Index("ix_events_position", "position"),
            **options,
        )
        self.positions = sa.Table(
            "positions",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("last_position", sa.BigInteger, nullable=False),
            **options,
        )
        self.snapshots = sa.Table(
            "snapshots",
            self.metadata,
            sa.Column("session_id", sa.String(128), primary_key=True),
            sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("state", mysql.LONGTEXT, nullable=False),
            sa.Column("created_at", UtcDateTime, nullable=False),
            **options,
        )


class CheckpointTables:
    """Consumers' checkpoints (``sandbox_agent.store.checkpoints``; migration 0002), in a
    metadata of their own: 0001 creates everything in ``Tables.metadata``."""

    def __init__(self, collation: str | None = None) -> None:
        options: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
        if collation is not None:
            options["mysql_collate"] = collation
        self.metadata = sa.MetaData()
        self.checkpoints = sa.Table(
            "consumer_checkpoints",
            self.metadata,
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("updated_at", UtcDateTime, nullable=False),
            **options,
        )


#: The tables as the queries use them (the collation only matters when creating them).
TABLES = Tables()
CHECKPOINTS = CheckpointTables()


def binary_collation(dialect: Dialect, server_version: tuple[int | str, ...]) -> str:
    """The utf8mb4 collation that compares like Python strings on this server."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"  # MariaDB 10.2 and later
    if tuple(n for n in server_version if isinstance(n, int)) >= (8, 0, 1):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"  # MySQL 5.7: pads with spaces ("a" = "a "); see the README's limits
