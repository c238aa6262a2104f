"""Migrations: an empty database of each kind upgrades to a schema equal to the SQLAlchemy
tables, upgrading twice is a no-op, and the ``db`` commands report the revision."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from sandbox_agent.store import SessionRecord, StoreConfigError, open_store
from sandbox_agent.store.migrate import HEAD_REVISION, head_revision
from sandbox_agent.store.paths import database_path
from sandbox_agent.store.sql import SqlDriver
from sandbox_agent.store.tables import Tables, tables_for
from sandbox_agent.store.url import database_status
from sandbox_agent.testing.databases import driver_params

sql_drivers = pytest.mark.parametrize(
    "driver", driver_params(("sqlite", "postgres")), indirect=True
)


def _empty_database(store_url: str) -> str:
    """``store_url`` once it names an empty database: for SQLite an empty file (``db current``
    does not create a store), Postgres' schema is there already."""
    if store_url.startswith("sqlite"):
        database_path(store_url).touch()
    return store_url


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    diffs = compare_metadata(context, tables_for(connection.dialect.name).metadata)
    return list(diffs)


@sql_drivers
async def test_upgrade_of_an_empty_database_matches_the_tables(store_url: str) -> None:
    assert await database_status(_empty_database(store_url), upgrade=False) == (
        None,
        head_revision(),
    )
    async with await open_store(store_url) as store:
        assert isinstance(store.driver, SqlDriver)
        async with store.driver._reading() as conn:
            differences = await conn.run_sync(_schema_differences)
    assert differences == []


@sql_drivers
async def test_upgrade_is_idempotent(store_url: str) -> None:
    head = head_revision()
    assert await database_status(store_url, upgrade=True) == (head, head)
    assert await database_status(store_url, upgrade=True) == (head, head)
    async with await open_store(store_url, migrate=False) as store:
        assert isinstance(store.driver, SqlDriver)
        assert await store.driver.schema_revision() == head


@sql_drivers
def test_db_commands_report_the_revision(store_url: str) -> None:
    command = [sys.executable, "-m", "sandbox_agent", "db"]
    _empty_database(store_url)
    before = subprocess.run(
        [*command, "current", store_url, "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(before.stdout) == {
        "current": None,
        "head": head_revision(),
        "pending": True,
    }
    subprocess.run([*command, "upgrade", store_url], capture_output=True, text=True, check=True)
    after = subprocess.run(
        [*command, "current", store_url, "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(after.stdout)["pending"] is False


def test_the_drivers_know_the_head_revision_without_alembic() -> None:
    assert head_revision() == HEAD_REVISION


async def test_migrations_are_refused_for_the_memory_store() -> None:
    with pytest.raises(StoreConfigError, match="no database schema"):
        await database_status("memory://", upgrade=True)


@sql_drivers
async def test_a_database_at_revision_0001_upgrades_to_the_head(store_url: str) -> None:
    """0002 (session leases, Postgres only), 0003 (events.schema_version) and 0004 (consumer
    checkpoints) on a database 0001 built: what open_store runs. The events stored before read
    at version 1."""
    from alembic import command

    from sandbox_agent.store.migrate import alembic_config

    async with await open_store(store_url, migrate=False) as store:
        assert isinstance(store.driver, SqlDriver)
        engine = store.driver._engine
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            await conn.run_sync(_an_event_at_0001)
        assert await store.driver.schema_revision() == "0001"
    async with await open_store(store_url) as store:
        assert isinstance(store.driver, SqlDriver)
        assert await store.driver.schema_revision() == head_revision() == "0004"
        async with store.driver._reading() as conn:
            assert await conn.run_sync(_schema_differences) == []
        (event,) = await store.read("s-0001")
        assert (event.type, event.data) == ("item.delta", {"item_id": "i", "delta": "old"})
        (row,) = await store.driver.select_events("s-0001", 0, None)
        assert row[9] == 1  # stored before 0003: the first schema version


def _an_event_at_0001(connection: Connection) -> None:
    """A session with one event, written with the tables as revision 0001 made them."""
    tables = Tables(connection.dialect.name, schema_versions=False)
    record = SessionRecord(id="s-0001", agent="mock", last_sequence=1, event_count=1)
    connection.execute(tables.sessions.insert().values(**record.model_dump()))
    values = {
        "session_id": "s-0001",
        "sequence": 1,
        "event_id": "evt_1",
        "time": record.created_at,
        "type": "item.delta",
        "source": "agent",
        "synthetic": False,
        "data": {"item_id": "i", "delta": "old"},
    }
    if connection.dialect.name == "sqlite":  # a TEXT column there; JSON on Postgres
        values["data"] = json.dumps(values["data"])
    if tables.positions is not None:  # Postgres numbers positions from its positions table
        values["position"] = 1
        connection.execute(tables.positions.update().values(last_position=1))
    connection.execute(tables.events.insert().values(**values))
