"""The store contract (``sandbox_agent.testing.contract``) run against memory, SQLite (also
with every append in the writer thread) and Postgres, plus what only concerns opening a store:
bad URLs, unreachable databases, reopening a persistent one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest

from sandbox_agent.store import (
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    open_store,
)
from sandbox_agent.testing.contract import StoreContract, run_crash_trials
from sandbox_agent.testing.databases import (
    PERSISTENT_DRIVERS,
    driver_params,
    drop_schema,
    new_schema_name,
    pg_url,
    require_postgres,
)
from sandbox_agent.testing.support import deltas, dumped, ended, new_session, with_option

# Our CI runs 25 SIGKILL trials per driver in the default suite, 300 in the slow one.
CRASH_TRIALS = 25


class TestMemoryStore(StoreContract):
    store_url = "memory://"
    skip_groups: ClassVar[dict[str, str]] = {
        "processes": "memory:// lives in one process",
        "crash": "memory:// lives in one process: nothing survives a SIGKILL",
    }


class TestSqliteStore(StoreContract):
    store_url = "sqlite:///store.db"  # a fresh file in tmp_path for every store
    crash_trials = CRASH_TRIALS

    def subscriber_url(self, url: str) -> str:
        return with_option(url, "poll_interval=0.05")  # other stores' appends: by polling


class TestSqliteThreadedStore(TestSqliteStore):
    """SQLite with every append in the writer thread (small appends are otherwise inline)."""

    store_url = "sqlite:///store.db?inline_append_max=0"


#: Test keys (tests/fixtures/seal/test.keys): payloads sealed with the last, k2026.
TEST_KEYS = Path(__file__).parent / "fixtures" / "seal" / "test.keys"


class TestSealedSqliteStore(TestSqliteStore):
    """SQLite with every payload and snapshot compressed and encrypted (``store/seal.py``)."""

    store_url = f"sqlite:///store.db?compress=zstd&keys=file:{TEST_KEYS}"
    # Sealing is EventStore's, above the driver: TestSqliteStore runs these on the same driver
    # (a process of its own opening a sealed store: test_store_seal's db rekey).
    skip_groups: ClassVar[dict[str, str]] = {
        "processes": "the driver's, run by TestSqliteStore",
        "crash": "the driver's, run by TestSqliteStore",
    }


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    crash_trials = CRASH_TRIALS

    async def fresh_store_url(self) -> str:
        require_postgres()
        return pg_url(new_schema_name())

    async def discard_store_url(self, url: str) -> None:
        await drop_schema(url.rpartition("schema=")[2])

    def subscriber_url(self, url: str) -> str:
        # Postgres is told of other stores' appends (NOTIFY): a poll slower than the test's
        # timeout proves that the notice reaches the subscriber.
        return with_option(url, "poll_interval=60")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("driver", driver_params(PERSISTENT_DRIVERS), indirect=True)
async def test_killed_writers_leave_whole_batches_over_many_trials(store_url: str) -> None:
    await run_crash_trials(store_url, trials=300)


@pytest.mark.parametrize("url", ["nonsense", "", "/just/a/path.db", "sqlite:/missing-slashes.db"])
async def test_open_store_rejects_a_malformed_url(url: str) -> None:
    with pytest.raises(StoreConfigError):
        await open_store(url)


async def test_open_store_rejects_an_unknown_driver() -> None:
    # Not mysql: drivers/mysql registers that scheme when it is installed.
    with pytest.raises(StoreConfigError, match="nosuchdriver") as info:
        await open_store("nosuchdriver://root@localhost/db")
    assert isinstance(info.value, StoreError)


@pytest.mark.parametrize(
    "url",
    [
        "memory://?max_sessions=lots",
        "memory://?max_sessions=0",
        "memory://?max_events_per_session=-1",
    ],
)
async def test_open_store_rejects_a_bad_memory_option_value(url: str) -> None:
    with pytest.raises(StoreConfigError):
        await open_store(url)


async def test_open_store_rejects_a_bad_sqlite_option_value(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="synchronous"):
        await open_store(f"sqlite:///{tmp_path}/x.db?synchronous=sometimes")
    with pytest.raises(StoreConfigError, match="busy_timeout"):
        await open_store(f"sqlite:///{tmp_path}/x.db?busy_timeout=soon")


async def test_open_store_of_an_unreachable_postgres_raises_store_unavailable() -> None:
    # Port 1 on the loopback interface: nothing listens there, the connection is refused.
    async with asyncio.timeout(60):
        with pytest.raises(StoreUnavailable):
            await open_store("postgresql://postgres@127.0.0.1:1/test")


async def test_open_store_of_an_unopenable_sqlite_path_raises_a_clear_store_error(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "store.db"  # its parent is a file: it can be neither created nor opened
    with pytest.raises(StoreError) as info:
        await open_store(f"sqlite:///{path}")
    assert str(path) in str(info.value)


async def test_open_store_of_a_file_that_is_not_a_database_raises_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite database, just some bytes " * 100)
    with pytest.raises(StoreError) as info:
        await open_store(f"sqlite:///{path}")
    assert str(path) in str(info.value)


async def test_open_store_accepts_a_relative_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_store("sqlite:///relative.db") as store:
        await new_session(store, "s1")
    assert (tmp_path / "relative.db").exists()


@pytest.mark.parametrize("driver", driver_params(PERSISTENT_DRIVERS), indirect=True)
async def test_everything_survives_closing_and_reopening_the_store(store_url: str) -> None:
    async with await open_store(store_url) as store:
        sid = await new_session(store, "s1", title="t", metadata={"m": [1]})
        stored = await store.append(sid, [*deltas(3), ended()])
        await store.save_snapshot(sid, 2, {"state": "x"}, 3)
        record = await store.get_session(sid)
        everything = await store.read_all()
    for migrate in (True, False):
        async with await open_store(store_url, migrate=migrate) as store:
            assert await store.get_session(sid) == record
            assert dumped(await store.read(sid)) == dumped(stored)
            assert await store.read_all() == everything
            snap = await store.load_snapshot(sid)
            assert snap is not None and (snap.sequence, snap.state) == (2, {"state": "x"})
    async with await open_store(store_url) as store:
        more = await store.append(sid, deltas(1), expected_sequence=4)
        assert more[0].sequence == 5
        positions = [p.position for p in await store.read_all()]
        assert positions == sorted(set(positions)) and len(positions) == 5
