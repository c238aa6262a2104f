"""Running the Alembic migrations of ``migrations/`` on an open SQL engine.

Alembic (about 11 MB of memory, with Mako and Pygments) is imported only when a migration script
has to run: an empty database gets the head schema without it (``create_head_schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

import sandbox_agent

if TYPE_CHECKING:
    from alembic.config import Config


def script_location() -> Path:
    """The migration scripts: packaged in the wheel, or ``migrations/`` of a source checkout."""
    package_dir = Path(sandbox_agent.__file__).resolve().parent
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
    from sandbox_agent.store.sql import HEAD_REVISION
    from sandbox_agent.store.tables import Tables

    tables = Tables(connection.dialect.name)
    version = sa.Table(  # as Alembic creates it (``MigrationContext._version``)
        "alembic_version",
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(connection)
    tables.metadata.create_all(connection)
    if tables.positions is not None:
        connection.execute(tables.positions.insert(), [{"id": 1, "last_position": 0}])
    connection.execute(version.insert().values(version_num=HEAD_REVISION))


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def database_status(url: str, *, upgrade: bool) -> tuple[str | None, str]:
    """(the database's revision, the head revision) of the store at ``url``; with
    ``upgrade`` the pending migrations run first. Raises ``StoreConfigError`` for memory://,
    which has no schema."""
    from sandbox_agent.store.errors import StoreConfigError
    from sandbox_agent.store.url import open_store

    async with await open_store(url, migrate=upgrade) as store:
        status = await store.driver.schema_status()
        if status is None:
            raise StoreConfigError(f"{url!r} has no database schema: migrations are for SQL stores")
        return status
