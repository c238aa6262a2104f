"""Store fixtures: every store test runs against each driver (memory, SQLite, Postgres).

``driver`` is parametrized over ``memory``, ``sqlite`` and ``postgres`` (the last marked
``postgres``; a test may ask for ``sqlite-threaded`` too, SQLite without inline appends);
``store_url`` is the URL of a fresh, empty store of that driver (a real SQLite file in
``tmp_path``; a Postgres schema of its own, dropped afterwards), made by the kit's
``sandbox_agent.testing.databases``; ``store`` is that store, opened and closed around the test.
The store contract itself is ``sandbox_agent.testing.contract`` (``test_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.databases import driver_params, fresh_store_url, sqlite_url


@pytest.fixture(params=driver_params())
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(driver: str, tmp_path: Path) -> AsyncIterator[str]:
    if driver == "sqlite":
        yield sqlite_url(tmp_path / "store.db")
        return
    async with fresh_store_url(driver, tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
