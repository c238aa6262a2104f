"""The shipped store contract (``sandbox_agent.testing.contract``) against MySQL/MariaDB, each
store in a fresh database, through ``open_store("mysql://...")`` and nothing patched."""

from __future__ import annotations

from typing import ClassVar

from mysql_helpers import create_database, database_url, drop_database_of, require_mysql

from sandbox_agent.testing.contract import StoreContract


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
