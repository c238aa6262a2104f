"""The shipped store contract (``sandbox_agent.testing.contract``) against MySQL/MariaDB, each
store in a fresh database, through ``open_store("mysql://...")`` and nothing patched."""

from __future__ import annotations

from typing import ClassVar

import pytest
from mysql_helpers import create_database, database_url, drop_database_of, require_mysql

from sandbox_agent.testing.contract import StoreContract, run_crash_trials


class TestMysqlStore(StoreContract):
    crash_trials: ClassVar[int] = 15

    async def fresh_store_url(self) -> str:
        require_mysql()
        return database_url(await create_database())

    async def discard_store_url(self, url: str) -> None:
        await drop_database_of(url)

    def subscriber_url(self, url: str) -> str:
        # Other stores' appends reach a subscriber by polling: MySQL has no LISTEN.
        return f"{url}?poll_interval=0.05"


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_killed_writers_leave_whole_batches_over_many_trials(mysql_url: str) -> None:
    await run_crash_trials(mysql_url, trials=300)
