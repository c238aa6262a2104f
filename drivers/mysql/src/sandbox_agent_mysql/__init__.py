"""MySQL and MariaDB storage for sandbox-agent: ``open_store("mysql://user@host:3306/db")``.

Installing this distribution registers the ``mysql``, ``mariadb``, ``mysql+asyncmy`` and
``mariadb+asyncmy`` URL schemes (entry-point group ``sandbox_agent.store_drivers``), so the
server, the CLI, the SDK and ``SANDBOX_AGENT_STORE`` all accept them.
"""

from __future__ import annotations

from typing import Any

from sandbox_agent.store.event_store import EventStore
from sandbox_agent_mysql.driver import MysqlDriver

__all__ = ["MysqlDriver", "open_mysql_store"]


async def open_mysql_store(url: str, **options: Any) -> EventStore:
    """Open the event store at ``url`` (``mysql://user:password@host:port/database?option=...``;
    options ``pool_size``, ``poll_interval``, ``connect_timeout``; ``migrate=False`` skips the
    migrations). Raises ``StoreConfigError`` for a bad URL or option and ``StoreUnavailable``
    when the server cannot be reached."""
    driver = await MysqlDriver.open(url, **options)
    try:
        return EventStore(driver)
    except BaseException:
        await driver.close()
        raise
