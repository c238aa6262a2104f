"""Running the Alembic migrations of ``migrations/`` on an open SQL engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import sandbox_agent


def script_location() -> Path:
    """The migration scripts: packaged in the wheel, or ``migrations/`` of a source checkout."""
    package_dir = Path(sandbox_agent.__file__).resolve().parent
    for candidate in (package_dir / "_migrations", package_dir.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("sandbox-agent's migration scripts are missing from this install")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def run_upgrade(connection: Connection) -> None:
    """Apply every pending migration on ``connection`` (inside the caller's transaction)."""
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None for a database never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


async def database_status(url: str, *, upgrade: bool) -> tuple[str | None, str]:
    """(the database's revision, the head revision) of the store at ``url``; with
    ``upgrade`` the pending migrations run first. Raises ``StoreConfigError`` for memory://,
    which has no schema."""
    from sandbox_agent.store.errors import StoreConfigError
    from sandbox_agent.store.sql import SqlEventStore
    from sandbox_agent.store.url import open_store

    async with await open_store(url, migrate=upgrade) as store:
        if not isinstance(store, SqlEventStore):
            raise StoreConfigError(f"{url!r} has no database schema: migrations are for SQL stores")
        return await store.schema_revision(), head_revision()
