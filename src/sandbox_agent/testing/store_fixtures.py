"""pytest fixtures for code that uses an event store (the plugin re-exports them).

- ``event_store``: an open, empty ``EventStore``, closed after the test; parametrized over
  ``memory``, ``sqlite`` (a real file in ``tmp_path``) and ``postgres`` (a schema of its own
  at ``$SANDBOX_AGENT_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``,
  dropped after the test; skipped with the reason when Postgres does not answer, and a
  failure instead under ``CI=true``).
- ``event_store_url``: the URL of that store, for code that opens the store itself.
- ``event_store_driver``: the driver's name (``memory``, ``sqlite``, ``postgres``).

This module imports only pytest and pytest-asyncio: the store and the database libraries are
imported when a fixture runs, since the plugin is loaded by every pytest run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from sandbox_agent.store import EventStore

__all__ = ["EVENT_STORE_DRIVERS", "event_store", "event_store_driver", "event_store_url"]

#: The drivers ``event_store`` runs a test against.
EVENT_STORE_DRIVERS = ("memory", "sqlite", "postgres")


@pytest.fixture(params=EVENT_STORE_DRIVERS)
def event_store_driver(request: pytest.FixtureRequest) -> str:
    """The driver ``event_store`` uses: ``memory``, ``sqlite`` or ``postgres``."""
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="function")
async def event_store_url(event_store_driver: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty store of ``event_store_driver``, removed after the test."""
    from sandbox_agent.testing.databases import fresh_store_url

    async with fresh_store_url(event_store_driver, tmp_path) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="function")
async def event_store(event_store_url: str) -> AsyncIterator[EventStore]:
    """An open, empty store (memory, SQLite, Postgres), closed after the test."""
    from sandbox_agent.store import open_store

    store = await open_store(event_store_url)
    try:
        yield store
    finally:
        await store.close()
