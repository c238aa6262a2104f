"""Fresh, isolated stores for every built-in driver: a SQLite file, a Postgres schema, or memory.

Postgres comes from ``$SANDBOX_AGENT_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each user gets its own ``t_<random>`` schema,
dropped afterwards. When Postgres cannot be reached the test is skipped, except under CI
(``ci.in_ci()``: ``$CI`` is true, 1 or yes), where a skipped Postgres test is a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from sandbox_agent.testing.ci import in_ci

DRIVERS = ("memory", "sqlite", "postgres")
PERSISTENT_DRIVERS = ("sqlite", "postgres")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_base_url() -> str:
    """The Postgres to test against: ``$SANDBOX_AGENT_TEST_PG_URL`` or the default."""
    return os.environ.get("SANDBOX_AGENT_TEST_PG_URL", DEFAULT_PG_URL)


def _asyncpg_dsn() -> str:
    # asyncpg wants plain postgresql://, without SQLAlchemy's +asyncpg or our query options.
    parts = urlsplit(pg_base_url())
    return parts._replace(scheme="postgresql", query="").geturl()


@functools.cache
def postgres_problem() -> str | None:
    """Why Postgres cannot be used (None when it can). Checked once per test run."""

    async def probe() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(), timeout=5)
        await conn.close()

    try:
        # Its own thread: the first caller may be an async fixture with a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {_asyncpg_dsn()} is unreachable: {exc!r}"
    return None


def require_postgres() -> None:
    """Skip the test when Postgres is unreachable; under CI (``in_ci()``) fail it instead."""
    problem = postgres_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem} (under CI a skipped Postgres test is a failure)", pytrace=False)
    pytest.skip(f"{problem}; set SANDBOX_AGENT_TEST_PG_URL to run the Postgres tests")


def new_schema_name() -> str:
    """A fresh schema name, ``t_<random>``."""
    return f"t_{secrets.token_hex(6)}"


def pg_url(schema: str) -> str:
    """The test Postgres URL with its tables in ``schema`` (created on first open)."""
    base = pg_base_url()
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def drop_schema(schema: str) -> None:
    """Drop ``schema`` with everything in it."""
    conn = await asyncpg.connect(_asyncpg_dsn(), timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def sqlite_url(path: Path) -> str:
    """The SQLite URL of the file at ``path``."""
    return f"sqlite:///{path.resolve()}"  # an absolute path gives sqlite:////abs/path.db


def _new_store(driver: str, tmp_dir: Path) -> tuple[str, str | None]:
    """A URL of an empty store of ``driver``, and the Postgres schema to drop afterwards."""
    if driver == "memory":
        return "memory://", None
    if driver in ("sqlite", "sqlite-threaded"):
        url = sqlite_url(tmp_dir / f"store-{secrets.token_hex(4)}.db")
        # sqlite-threaded: every append in the writer thread, none inline.
        return (url + "?inline_append_max=0" if driver == "sqlite-threaded" else url), None
    if driver == "postgres":
        require_postgres()
        schema = new_schema_name()
        return pg_url(schema), schema
    raise ValueError(driver)


@contextmanager
def fresh_url(driver: str, tmp_dir: Path) -> Iterator[str]:
    """A URL of an empty store of ``driver``, removed again afterwards (sync callers); the
    drivers are those of ``fresh_store_url``."""
    url, schema = _new_store(driver, tmp_dir)
    try:
        yield url
    finally:
        if schema is not None:
            asyncio.run(drop_schema(schema))


@asynccontextmanager
async def fresh_store_url(driver: str, tmp_dir: Path) -> AsyncIterator[str]:
    """A URL of an empty store of ``driver`` (``memory``, ``sqlite``, ``sqlite-threaded``:
    SQLite without inline appends, ``postgres``), removed again afterwards (async callers).
    Postgres skips (under CI: fails) when unreachable."""
    url, schema = _new_store(driver, tmp_dir)
    try:
        yield url
    finally:
        if schema is not None:
            await drop_schema(schema)


def driver_params(drivers: tuple[str, ...] = DRIVERS) -> list[object]:
    """``pytest.param``s for ``drivers``, the Postgres one marked ``postgres``."""
    return [
        pytest.param(d, id=d, marks=[pytest.mark.postgres] if d == "postgres" else [])
        for d in drivers
    ]
