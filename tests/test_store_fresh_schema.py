"""An empty database gets the head schema without Alembic (``store/migrate.py``
``create_head_schema``: it keeps Alembic out of a fresh server's memory). It must be the very
schema that the migration scripts build, so each test builds both and compares the catalogs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy.engine import Connection

from sandbox_agent.store import open_store
from sandbox_agent.store.migrate import alembic_config, run_upgrade
from sandbox_agent.store.sql import SqlDriver
from sandbox_agent.testing.databases import driver_params, drop_schema, new_schema_name

sql_drivers = pytest.mark.parametrize(
    "driver", driver_params(("sqlite", "postgres")), indirect=True
)


def _catalog(connection: Connection) -> dict[str, Any]:
    """Every table, column, constraint and index of the store's schema, and the rows of the
    tables that migrations seed."""
    run = connection.exec_driver_sql
    if connection.dialect.name == "sqlite":
        schema: Any = sorted(
            run("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
            key=lambda row: (row[0], row[1]),
        )
        seeded = ("alembic_version",)
    else:
        current = "table_schema = current_schema()"
        schema = {
            "columns": sorted(
                run(
                    "SELECT table_name, column_name, data_type, is_nullable, column_default, "
                    f"character_maximum_length FROM information_schema.columns WHERE {current}"
                ).fetchall()
            ),
            "constraints": sorted(
                run(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                    "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
                ).fetchall()
            ),
            "indexes": sorted(
                run(
                    "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '') "
                    "FROM pg_indexes WHERE schemaname = current_schema()"
                ).fetchall()
            ),
        }
        seeded = ("alembic_version", "positions")
    rows = {table: sorted(run(f"SELECT * FROM {table}").fetchall()) for table in seeded}
    return {"schema": schema, "rows": rows}


async def _build(url: str, *, with_alembic: bool) -> dict[str, Any]:
    def build(connection: Connection) -> dict[str, Any]:
        if with_alembic:
            command.upgrade(alembic_config(connection), "head")  # the migration scripts
        else:
            run_upgrade(connection)  # an empty database: create_head_schema
        return _catalog(connection)

    async with await open_store(url, migrate=False) as store:
        assert isinstance(store.driver, SqlDriver)
        async with store.driver._writing() as conn:
            return await conn.run_sync(build)


@sql_drivers
async def test_an_empty_database_gets_the_schema_of_the_migration_scripts(
    store_url: str, driver: str
) -> None:
    if driver == "sqlite":
        other_url = store_url.replace("store.db", "alembic.db")
    else:
        # A second schema beside the fixture's, dropped with it by name below.
        other_schema = new_schema_name()
        other_url = store_url.rsplit("schema=", 1)[0] + f"schema={other_schema}"
    try:
        built = await _build(store_url, with_alembic=False)
        migrated = await _build(other_url, with_alembic=True)
    finally:
        if driver == "postgres":
            await drop_schema(other_schema)
    assert built["rows"]["alembic_version"] != []
    assert built == migrated


def test_opening_an_empty_sqlite_store_does_not_import_alembic(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from sandbox_agent.store import open_store\n"
        "async def main():\n"
        f"    async with await open_store('sqlite:///{tmp_path}/fresh.db') as store:\n"
        "        assert (await store.driver.schema_status())[0] is not None\n"
        "asyncio.run(main())\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
