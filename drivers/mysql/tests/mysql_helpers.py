"""Fresh MariaDB/MySQL databases for the driver's tests.

The server comes from ``$SANDBOX_AGENT_TEST_MYSQL_URL`` (default
``mysql://root@127.0.0.1:3306/test``); each user gets a database ``sa_<random>`` of its own,
dropped afterwards. When the server cannot be reached the test is skipped, saying why, except
under CI (``$CI`` true, 1 or yes), where that is a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncmy
import pytest

from sandbox_agent.testing.ci import in_ci

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


def base_url() -> str:
    return os.environ.get("SANDBOX_AGENT_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)


def connect_args() -> dict[str, Any]:
    parts = urlsplit(base_url())
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 5,
    }


async def raw_connect(database: str | None = None) -> Any:
    args = connect_args()
    if database is not None:
        args["db"] = database
    return await asyncmy.connect(**args)


@functools.cache
def mysql_problem() -> str | None:
    """Why MySQL cannot be used (None when it can). Checked once per test run."""

    async def probe() -> None:
        conn = await raw_connect()
        conn.close()

    try:
        # Its own thread: the first caller may be an async fixture with a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result()
    except Exception as exc:
        args = connect_args()
        return f"MySQL at {args['host']}:{args['port']} is unreachable: {exc!r}"
    return None


def require_mysql() -> None:
    """Skip the test when MySQL is unreachable; under CI (``in_ci()``) fail it instead."""
    problem = mysql_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem} (under CI a skipped MySQL test is a failure)", pytrace=False)
    pytest.skip(f"{problem}; set SANDBOX_AGENT_TEST_MYSQL_URL to run the MySQL tests")


def database_url(database: str) -> str:
    parts = urlsplit(base_url())
    return parts._replace(path=f"/{database}").geturl()


async def create_database() -> str:
    name = f"sa_{secrets.token_hex(6)}"
    conn = await raw_connect()
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await raw_connect()
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The store URL of a new, empty database, dropped afterwards."""
    require_mysql()
    name = await create_database()
    try:
        yield database_url(name)
    finally:
        await drop_database(name)


def database_of(url: str) -> str:
    """The database name of a store URL made by ``database_url``."""
    return urlsplit(url).path.lstrip("/")


def new_database_url() -> str:
    """``create_database`` for sync callers (a thread of its own: a loop may be running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return database_url(pool.submit(asyncio.run, create_database()).result())


async def drop_database_of(url: str) -> None:
    await drop_database(database_of(url))
