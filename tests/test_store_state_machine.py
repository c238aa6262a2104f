"""Promise 6: every driver behaves like a plain Python model of the store.

The kit's state machine (``sandbox_agent.testing.machine``) drives a real store (memory, a
SQLite file, a Postgres schema of its own) and its ``Model`` side by side, and compares every
answer: returned events, errors and their details, reads, paging, the global log,
subscriptions, forks, prunes, the sessions projection and snapshots. SQLite and Postgres are
also closed and reopened between steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_agent.store import open_store
from sandbox_agent.testing.databases import (
    driver_params,
    drop_schema,
    new_schema_name,
    pg_url,
    require_postgres,
    sqlite_url,
)
from sandbox_agent.testing.machine import (
    StoreMachine,
    run_store_machine,
    store_machine,
    url_store_machine,
)


def postgres_url(tmp: Path) -> str:
    return pg_url(new_schema_name())


async def drop_postgres(url: str) -> None:
    await drop_schema(url.rpartition("schema=")[2])


def machine_for(driver: str) -> type[StoreMachine]:
    if driver == "memory":  # through a plain factory of stores
        return store_machine(lambda: open_store("memory://"), name="StoreMachine_memory")
    if driver == "sqlite":
        return url_store_machine(
            lambda tmp: sqlite_url(tmp / "machine.db"), name="StoreMachine_sqlite"
        )
    require_postgres()
    return url_store_machine(postgres_url, drop=drop_postgres, name="StoreMachine_postgres")


# Memory is cheap, so it gets more examples; each SQL example opens (and migrates) a new database.
# The default run keeps to the test budget; the slow suite (which CI runs) goes four times as far
# as the default run did before the MySQL suite joined it.
EXAMPLES = {"memory": 80, "sqlite": 20, "postgres": 12}
SLOW_EXAMPLES = {"memory": 600, "sqlite": 240, "postgres": 160}


@pytest.mark.parametrize("driver", driver_params())
def test_store_behaves_like_the_model(driver: str) -> None:
    run_store_machine(machine_for(driver), examples=EXAMPLES[driver], steps=30)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("driver", driver_params())
def test_store_behaves_like_the_model_for_longer(driver: str) -> None:
    run_store_machine(machine_for(driver), examples=SLOW_EXAMPLES[driver], steps=60)
