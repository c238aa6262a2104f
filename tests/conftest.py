"""Store fixtures: every store test runs against each driver (memory, SQLite, Postgres).

``driver`` is parametrized over ``memory``, ``sqlite`` and ``postgres`` (the last marked
``postgres``; the store contract adds ``sqlite-threaded``, SQLite without inline appends);
``store_url`` is the URL of a fresh, empty store of that driver (a real SQLite
file in ``tmp_path``; a Postgres schema of its own, dropped afterwards); ``store`` is that
store, opened and closed around the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox_agent.store import EventStore, open_store

from helpers.databases import (
    driver_params,
    drop_schema,
    new_schema_name,
    pg_url,
    require_postgres,
    sqlite_url,
)


@pytest.fixture(params=driver_params())
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(driver: str, tmp_path: Path) -> AsyncIterator[str]:
    if driver == "memory":
        yield "memory://"
    elif driver == "sqlite":
        yield sqlite_url(tmp_path / "store.db")
    elif driver == "sqlite-threaded":  # every append in the writer thread, none inline
        yield sqlite_url(tmp_path / "store.db") + "?inline_append_max=0"
    else:
        require_postgres()
        schema = new_schema_name()
        try:
            yield pg_url(schema)
        finally:
            await drop_schema(schema)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
