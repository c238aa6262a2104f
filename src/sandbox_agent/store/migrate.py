"""Running the Alembic migrations of ``migrations/`` on an open SQL engine.

Alembic (about 11 MB of memory, with Mako and Pygments) is imported only when a migration script
has to run: an empty database gets the head schema without it (``create_head_schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from alembic.config import Config


#: The revision of the newest migration in ``migrations/`` (a test checks they agree).
HEAD_REVISION = "0004"


def script_location() -> Path:
    """The migration scripts: packaged in the wheel, or ``migrations/`` of a source checkout."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "_migrations", package_dir.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("sandbox-agent's migration scripts are missing from this install")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def run_upgrade(connection: Connection) -> None:
    """Apply every pending migration on ``connection`` (inside the caller's transaction).
    An empty database gets the head schema straight from the tables, stamped with the head
    revision, as Alembic's recipe for a new database does (``create_all``, then ``stamp``)."""
    if _is_empty(connection):
        create_head_schema(connection)
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def _is_empty(connection: Connection) -> bool:
    return not sa.inspect(connection).get_table_names()


def create_head_schema(connection: Connection) -> None:
    """The schema of ``HEAD_REVISION`` on an empty database, without Alembic: the tables of
    ``store/tables.py`` (what the migrations build), the seed row of ``positions``, and
    Alembic's version table holding the head revision."""
    from sandbox_agent.store.tables import Tables

    # The events table as 0001 made it, then 0003's column added the same way: SQLite keeps a
    # table's CREATE text, and a test holds it equal to what the migrations leave.
    tables = Tables(connection.dialect.name, schema_versions=False)
    added = Tables(connection.dialect.name).events.c.schema_version
    version = sa.Table(  # as Alembic creates it (``MigrationContext._version``)
        "alembic_version",
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(connection)
    tables.metadata.create_all(connection)
    column = sa.schema.CreateColumn(added).compile(dialect=connection.dialect)
    connection.exec_driver_sql(f"ALTER TABLE events ADD COLUMN {column}")
    if tables.positions is not None:
        connection.execute(tables.positions.insert(), [{"id": 1, "last_position": 0}])
    connection.execute(version.insert().values(version_num=HEAD_REVISION))


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


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
