"""Consumers (``sandbox_agent.consumers``): each event applied exactly once, in position order,
the checkpoint moving in the handler's own transaction, on every built-in driver; the kill
trials (a consumer process SIGKILLed at random moments) on SQLite and Postgres; the
``consumers`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.consumers import (
    CheckpointTransaction,
    Consumer,
    delete_consumer,
    list_consumers,
    reset_consumer,
)
from sandbox_agent.store import EventStore, PositionedEvent, StorageDriver, open_store
from sandbox_agent.store.errors import NotSupported, StoreConfigError
from sandbox_agent.testing.databases import driver_params, fresh_url, sqlite_url
from sandbox_agent.testing.support import deltas, new_session

SRC = Path(__file__).resolve().parents[1] / "src"


class Boom(Exception):
    pass


class Projection:
    """A consumer's own table: ``proj`` rows in the store's database for the SQL drivers,
    written on ``txn.connection``; a list of this process for the memory driver, written by
    ``on_commit``."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.sql = getattr(store.driver, "_engine", None)
        self.rows: list[int] = []

    async def create(self, table: str = "proj") -> None:
        self.table = table
        if self.sql is not None:
            async with self.sql.begin() as conn:
                await conn.execute(sa.text(f"CREATE TABLE {table} (position BIGINT NOT NULL)"))

    async def apply(self, batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        if txn.connection is None:
            txn.on_commit(lambda: self.rows.extend(item.position for item in batch))
            return
        for item in batch:
            await txn.connection.execute(
                sa.text(f"INSERT INTO {self.table} (position) VALUES (:p)"), {"p": item.position}
            )

    async def applied(self) -> list[int]:
        if self.sql is None:
            return list(self.rows)
        async with self.sql.connect() as conn:
            rows = await conn.execute(sa.text(f"SELECT position FROM {self.table}"))
            # Rows in insertion order are not promised by SQL; positions are, and a handler
            # applies them in increasing order, so sorting loses only the order check.
            return sorted(int(p) for p in rows.scalars())


async def positions(store: EventStore) -> list[int]:
    found: list[int] = []
    while page := await store.read_all(found[-1] if found else 0, 500):
        found.extend(item.position for item in page)
    return found


@pytest.fixture
async def projection(store: EventStore) -> AsyncIterator[Projection]:
    made = Projection(store)
    await made.create()
    yield made


async def test_each_event_is_applied_once_in_position_order(
    store: EventStore, projection: Projection
) -> None:
    sessions = [await new_session(store) for _ in range(3)]
    for n in range(9):
        await store.append(sessions[n % 3], deltas(n % 4 + 1, prefix=f"b{n}"))
    seen: list[int] = []

    async def handler(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        seen.extend(item.position for item in batch)
        await projection.apply(batch, txn)

    consumer = Consumer(store, "proj", handler, batch_size=4)
    assert await consumer.run_until_caught_up() == len(await positions(store))
    assert seen == await positions(store) == sorted(seen)
    assert await projection.applied() == seen
    assert await consumer.step() == 0
    [row] = await list_consumers(store)
    assert (row.name, row.position, row.lag) == ("proj", seen[-1], 0)

    await store.append(sessions[0], deltas(3, prefix="late"))
    assert [r.lag for r in await list_consumers(store)] == [3]
    assert await Consumer(store, "proj", handler).run_until_caught_up() == 3
    assert await projection.applied() == await positions(store) == seen


async def test_a_failing_handler_rolls_back_its_writes_and_the_checkpoint(
    store: EventStore, projection: Projection
) -> None:
    sid = await new_session(store)
    await store.append(sid, deltas(10))
    calls = 0

    async def failing(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        nonlocal calls
        calls += 1
        await projection.apply(batch, txn)  # written, then rolled back with the checkpoint
        if calls == 2:
            raise Boom

    consumer = Consumer(store, "proj", failing, batch_size=4)
    with pytest.raises(Boom):
        await consumer.run_until_caught_up()
    all_positions = await positions(store)
    assert await projection.applied() == all_positions[:4]
    assert [r.position for r in await list_consumers(store)] == [all_positions[3]]
    assert await Consumer(store, "proj", projection.apply).run_until_caught_up() == 6
    assert await projection.applied() == all_positions


async def test_consumers_by_name_keep_their_own_checkpoints(store: EventStore) -> None:
    sid = await new_session(store)
    await store.append(sid, deltas(5))
    a, b = Projection(store), Projection(store)
    await a.create("proj_a")
    await b.create("proj_b")
    assert await Consumer(store, "a", a.apply, batch_size=2).run_until_caught_up() == 5
    await store.append(sid, deltas(2, prefix="e"))
    assert await Consumer(store, "b", b.apply).run_until_caught_up() == 7
    assert await a.applied() == (await positions(store))[:5]
    assert await b.applied() == await positions(store)
    assert [(r.name, r.lag) for r in await list_consumers(store)] == [("a", 2), ("b", 0)]


async def test_two_runners_of_one_consumer_take_turns(
    store: EventStore, projection: Projection
) -> None:
    """Two processes running one consumer (here two tasks, each with its own transactions)
    while events arrive: each event is applied once, by one of them."""
    sid = await new_session(store)

    async def appender() -> None:
        for n in range(15):
            await store.append(sid, deltas(3, prefix=f"a{n}"))
            await asyncio.sleep(0)

    async def runner() -> int:
        consumer = Consumer(store, "shared", projection.apply, batch_size=5)
        total = 0
        for _ in range(40):
            total += await consumer.run_until_caught_up()
            await asyncio.sleep(0.001)
        return total

    _, first, second = await asyncio.gather(appender(), runner(), runner())
    last = await Consumer(store, "shared", projection.apply).run_until_caught_up()
    assert first + second + last == 45
    assert await projection.applied() == await positions(store)


async def test_reset_applies_again_and_delete_forgets(
    store: EventStore, projection: Projection
) -> None:
    sid = await new_session(store)
    await store.append(sid, deltas(4))
    all_positions = await positions(store)
    await Consumer(store, "proj", projection.apply).run_until_caught_up()
    assert await reset_consumer(store, "proj", all_positions[1]) is True
    assert [(r.position, r.lag) for r in await list_consumers(store)] == [(all_positions[1], 2)]
    assert await Consumer(store, "proj", projection.apply).run_until_caught_up() == 2
    assert sorted(await projection.applied()) == sorted(all_positions + all_positions[2:])
    assert await reset_consumer(store, "new", 0) is False
    assert await delete_consumer(store, "proj") is True
    assert await delete_consumer(store, "proj") is False
    assert [r.name for r in await list_consumers(store)] == ["new"]


async def test_bad_names_and_options_are_refused(store: EventStore) -> None:
    async def nothing(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        pass

    for name in ("", "x" * 129, "a\nb"):
        with pytest.raises(StoreConfigError, match="consumer name"):
            Consumer(store, name, nothing)
        with pytest.raises(StoreConfigError, match="consumer name"):
            await reset_consumer(store, name)
    with pytest.raises(StoreConfigError, match="batch_size"):
        Consumer(store, "c", nothing, batch_size=0)
    with pytest.raises(StoreConfigError, match="poll_interval"):
        Consumer(store, "c", nothing, poll_interval=0)
    with pytest.raises(StoreConfigError, match="position"):
        await reset_consumer(store, "c", -1)
    sid = await new_session(store)
    await store.append(sid, deltas(2))
    consumer = Consumer(store, "c", nothing)
    await consumer.run_until_caught_up()
    async with store.driver.checkpoint_transaction("c") as txn:
        with pytest.raises(ValueError, match="behind"):
            txn.advance(txn.position - 1)


async def test_a_driver_without_checkpoints_says_so(store: EventStore) -> None:
    # The contract's defaults, as a driver that implements none of the primitives has them.
    with pytest.raises(NotSupported, match="does not support consumer checkpoints"):
        await StorageDriver.select_checkpoints(store.driver)
    with pytest.raises(NotSupported, match="does not support consumer checkpoints"):
        StorageDriver.checkpoint_transaction(store.driver, "c")
    with pytest.raises(NotSupported, match="does not support consumer checkpoints"):
        await StorageDriver.write_checkpoint(store.driver, "c", 0)


async def test_run_follows_new_events_until_stopped(
    store: EventStore, projection: Projection
) -> None:
    sid = await new_session(store)
    stop = asyncio.Event()
    consumer = Consumer(store, "live", projection.apply, poll_interval=0.01)
    task = asyncio.create_task(consumer.run(stop))
    await store.append(sid, deltas(3))
    for _ in range(500):
        if consumer.applied == 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert await projection.applied() == await positions(store)


# -- the property: any interleaving of appends and batches ------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 2), st.integers(1, 6)),
        st.tuples(st.just("step"), st.integers(1, 7), st.booleans()),
    ),
    max_size=25,
)


async def _interleaving(url: str, ops: list[tuple[str, int, Any]]) -> None:
    async with await open_store(url) as store:
        projection = Projection(store)
        await projection.create()
        sessions = [await new_session(store) for _ in range(3)]
        seen: list[int] = []

        for op, a, b in ops:
            if op == "append":
                await store.append(sessions[a], deltas(b))
                continue

            async def handler(
                batch: Sequence[PositionedEvent], txn: CheckpointTransaction, fail: bool = b
            ) -> None:
                await projection.apply(batch, txn)
                if fail:
                    raise Boom
                txn.on_commit(lambda: seen.extend(item.position for item in batch))

            consumer = Consumer(store, "p", handler, batch_size=a)
            with contextlib.suppress(Boom):
                await consumer.step()
            # After any step, applied or failed: a prefix of the log, each event once.
            log = await positions(store)
            assert await projection.applied() == seen == log[: len(seen)]
        await Consumer(store, "p", projection.apply).run_until_caught_up()
        assert await projection.applied() == await positions(store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_any_interleaving_applies_each_event_once_in_order_memory(ops: list[Any]) -> None:
    asyncio.run(_interleaving("memory://", ops))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_any_interleaving_applies_each_event_once_in_order_sqlite(ops: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_interleaving(sqlite_url(Path(folder) / "p.db"), ops))


# -- kill trials --------------------------------------------------------------------------------


def crash_trials(url: str, trials: int, seed: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_agent.testing.crash_consumer", url, str(trials), str(seed)],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_trials(result: dict[str, Any], trials: int) -> None:
    assert result["trials"] == trials
    assert result["events"] > trials  # the log grew between kills
    assert (result["missing"], result["twice"], result["unknown"]) == ([], [], [])
    assert result["disorder"] == 0


persistent = pytest.mark.parametrize("kind", driver_params(("sqlite", "postgres")))


@persistent
def test_a_consumer_killed_at_random_applies_each_event_once(kind: str, tmp_path: Path) -> None:
    with fresh_url(kind, tmp_path) as url:
        result = crash_trials(url, 5, random.randrange(1 << 30))
    check_trials(result, 5)


@pytest.mark.slow
@persistent
def test_a_consumer_killed_300_times_applies_each_event_once(kind: str, tmp_path: Path) -> None:
    with fresh_url(kind, tmp_path) as url:
        result = crash_trials(url, 300, random.randrange(1 << 30))
    check_trials(result, 300)
    # Most kills landed inside a batch, between its first write and its commit.
    assert result["killed_in_batch"] >= 100, result


# -- the command --------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", *args],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_consumers_command_lists_resets_and_deletes(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "c.db")

    async def fill() -> None:
        async with await open_store(url) as store:
            sid = await new_session(store)
            await store.append(sid, deltas(5))
            projection = Projection(store)
            await projection.create()
            await Consumer(store, "proj", projection.apply, batch_size=2).run_until_caught_up()
            await Consumer(store, "other", projection.apply, batch_size=2).step()

    asyncio.run(fill())
    listed = cli("consumers", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["name"], r["position"], r["lag"]) for r in json.loads(listed.stdout)] == [
        ("other", 2, 3),
        ("proj", 5, 0),
    ]
    table = cli("consumers", "--store", url)
    assert "proj" in table.stdout and "lag" in table.stdout, table.stdout
    changed = cli(
        "consumers", "--store", url, "--reset", "proj", "--to", "1", "--delete", "other", "--json"
    )
    assert [(r["name"], r["position"]) for r in json.loads(changed.stdout)] == [("proj", 1)]
    missing = cli("consumers", "--store", url, "--delete", "nosuch")
    assert missing.returncode == 1 and "no consumer named 'nosuch'" in missing.stderr
    nostore = cli("consumers", "--store", sqlite_url(tmp_path / "none.db"))
    assert nostore.returncode == 1 and "error" in nostore.stderr
