"""The driver's Alembic migrations (``migrations/``, shipped inside this package).

``MysqlDriver.open`` runs the pending ones under a named lock (``GET_LOCK``), so several
processes opening one database take turns. Alembic is imported only when the database is
behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision in ``migrations/versions`` (a test keeps the two equal).
HEAD_REVISION = "0003"
VERSION_TABLE = "alembic_version"


def script_location() -> Path:
    return Path(__file__).resolve().parent / "migrations"


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
    """Apply every pending migration on ``connection``. MySQL commits each DDL statement by
    itself: a migration cut off half way is finished by the next run of its idempotent steps
    only if it was written so; 0001 creates tables that are all missing or all there."""
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


async def stored_revision(conn: AsyncConnection) -> str | None:
    """The database's revision, read without Alembic (None if it was never migrated)."""
    probe = (
        "SELECT 1 FROM information_schema.tables "
        f"WHERE table_schema = DATABASE() AND table_name = '{VERSION_TABLE}'"
    )
    if (await conn.exec_driver_sql(probe)).first() is None:
        return None
    row = (await conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


async def upgrade(conn: AsyncConnection, lock_timeout: float = 60.0) -> None:
    """Bring the database of ``conn`` (an autocommit connection) to ``HEAD_REVISION``."""
    if await stored_revision(conn) == HEAD_REVISION:
        return
    # Named locks are server-wide: the database's name keeps stores of two databases apart.
    name = await conn.exec_driver_sql("SELECT CONCAT('sandbox_agent_migrate.', DATABASE())")
    lock = str(name.scalar_one())[:64]
    got = await conn.exec_driver_sql("SELECT GET_LOCK(%s, %s)", (lock, lock_timeout))
    if got.scalar_one() != 1:
        raise TimeoutError(f"another process held the migration lock {lock!r} for {lock_timeout} s")
    try:
        revision = await stored_revision(conn)
        if revision is None:
            # Alembic's own would name its primary key, which MariaDB ignores with a warning
            # that asyncmy logs on every new database.
            await conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version_num VARCHAR(32) NOT NULL, PRIMARY KEY (version_num))"
            )
        if revision != HEAD_REVISION:
            await conn.run_sync(run_upgrade)
    finally:
        await conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (lock,))
