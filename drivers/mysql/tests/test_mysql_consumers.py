"""Consumers (``sandbox_agent.consumers``) on MySQL/MariaDB: the checkpoint moves in the
handler's own transaction (``START TRANSACTION`` on the pool's autocommit connections), the
checkpoint table comes with migration 0003, and a consumer SIGKILLed at random moments applies
each event exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mysql_helpers import drop_database_of, new_database_url

from sandbox_agent.consumers import (
    CheckpointTransaction,
    Consumer,
    delete_consumer,
    list_consumers,
    reset_consumer,
)
from sandbox_agent.store import EventStore, PositionedEvent, open_store
from sandbox_agent.testing.support import deltas, new_session

SOURCES = [str(Path(__file__).resolve().parents[1] / "src")]


class Boom(Exception):
    pass


async def positions(store: EventStore) -> list[int]:
    found: list[int] = []
    while page := await store.read_all(found[-1] if found else 0, 500):
        found.extend(item.position for item in page)
    return found


async def projection_table(store: EventStore) -> None:
    async with store.driver._engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(sa.text("CREATE TABLE proj (position BIGINT NOT NULL)"))


async def applied(store: EventStore) -> list[int]:
    async with store.driver._engine.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(sa.text("SELECT position FROM proj ORDER BY position"))
        return [int(p) for p in rows.scalars()]


async def apply(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
    for item in batch:
        await txn.connection.execute(
            sa.text("INSERT INTO proj (position) VALUES (:p)"), {"p": item.position}
        )


async def test_each_event_once_rollback_takeover_reset_and_delete(mysql_url: str) -> None:
    async with await open_store(mysql_url) as store:
        await projection_table(store)
        sessions = [await new_session(store) for _ in range(2)]
        for n in range(6):
            await store.append(sessions[n % 2], deltas(n + 1, prefix=f"b{n}"))
        log = await positions(store)
        calls = 0

        async def failing(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
            nonlocal calls
            calls += 1
            await apply(batch, txn)
            if calls == 3:
                raise Boom

        with pytest.raises(Boom):
            await Consumer(store, "proj", failing, batch_size=4).run_until_caught_up()
        assert await applied(store) == log[:8]  # the third batch rolled back, checkpoint too
        assert [(r.name, r.position, r.lag) for r in await list_consumers(store)] == [
            ("proj", log[7], len(log) - 8)
        ]

        async def appender() -> None:
            for n in range(10):
                await store.append(sessions[0], deltas(2, prefix=f"a{n}"))
                await asyncio.sleep(0)

        async def runner() -> int:
            consumer = Consumer(store, "proj", apply, batch_size=3)
            total = 0
            for _ in range(20):
                total += await consumer.run_until_caught_up()
                await asyncio.sleep(0.001)
            return total

        await asyncio.gather(appender(), runner(), runner())
        await Consumer(store, "proj", apply).run_until_caught_up()
        log = await positions(store)
        assert await applied(store) == log

        assert await reset_consumer(store, "proj", log[-3]) is True
        assert await Consumer(store, "proj", apply).run_until_caught_up() == 2
        assert await applied(store) == sorted(log + log[-2:])
        assert await delete_consumer(store, "proj") is True
        assert await list_consumers(store) == []


async def test_a_database_at_revision_0001_gets_the_checkpoint_table(mysql_url: str) -> None:
    from alembic import command
    from sandbox_agent_mysql.migrate import alembic_config

    async with await open_store(mysql_url, migrate=False) as store:
        engine = store.driver._engine  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            await conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "PRIMARY KEY (version_num))"
            )
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
    async with await open_store(mysql_url) as store:
        assert await list_consumers(store) == []
        sid = await new_session(store)
        await store.append(sid, deltas(2))
        await reset_consumer(store, "c", 1)
        assert [(r.position, r.lag) for r in await list_consumers(store)] == [(1, 1)]


def crash_trials(trials: int) -> dict[str, Any]:
    url = new_database_url()
    try:
        path = os.pathsep.join([*SOURCES, *sys.path])
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox_agent.testing.crash_consumer",
                url,
                str(trials),
                str(random.randrange(1 << 30)),
            ],
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        asyncio.run(drop_database_of(url))
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["trials"] == trials and result["events"] > trials
    assert (result["missing"], result["twice"], result["unknown"]) == ([], [], [])
    assert result["disorder"] == 0
    return result


def test_a_consumer_killed_at_random_applies_each_event_once() -> None:
    crash_trials(5)


@pytest.mark.slow
def test_a_consumer_killed_200_times_applies_each_event_once() -> None:
    result = crash_trials(200)
    assert result["killed_in_batch"] >= 60, result
