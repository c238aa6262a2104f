"""Kill a consumer with SIGKILL at random moments, many times over, then check that every
event was applied exactly once.

    python -m sandbox_agent.testing.crash_consumer URL TRIALS SEED

The consumer (``sandbox_agent.consumers.Consumer``) writes a projection table of its own,
``crash_applied`` (one row per event it applies, no unique key, so an event applied twice
shows as two rows), one statement per event, in the transaction that moves its checkpoint.
This process imports the store once, makes three sessions and the table, then for each trial
appends a few events and forks a consumer child (cheap: no interpreter start-up). The child
writes ``b`` to a pipe as it begins a batch and ``c`` once it committed; this process kills it
at a random moment and notes whether a batch was in flight. At the end a consumer that is not
killed catches up, and this process prints one JSON line: ``{"trials": N, "killed_in_batch":
K, "events": E, "missing": [...], "twice": [...], "disorder": D}``, where ``missing`` and
``twice`` are positions, and ``disorder`` counts batches that began at or before a position
already applied.

The table is made through the driver's SQLAlchemy engine (the SQL drivers of this package and
``sandbox-agent-mysql``): a handler creates no tables in its transaction, since MySQL commits
DDL by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from sandbox_agent.consumers import CheckpointTransaction, Consumer
from sandbox_agent.events import EventDraft
from sandbox_agent.store import EventStore, PositionedEvent, SessionRecord, open_store
from sandbox_agent.testing.children import kill_after

NAME = "crash-trial"
SESSIONS = ("s0", "s1", "s2")
_INSERT = sa.text("INSERT INTO crash_applied (position, session_id, sequence) VALUES (:p, :s, :q)")
_MAX = sa.text("SELECT max(position) FROM crash_applied")


def _engine(store: EventStore) -> Any:
    engine = getattr(store.driver, "_engine", None)
    if engine is None:
        raise SystemExit(f"{type(store.driver).__name__} has no SQLAlchemy engine to use")
    return engine


async def setup(url: str) -> None:
    async with await open_store(url) as store:
        for session_id in SESSIONS:
            if await store.get_session(session_id) is None:
                await store.create_session(SessionRecord(id=session_id, agent="mock"))
        async with _engine(store).begin() as conn:
            await conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS crash_applied "
                    "(position BIGINT NOT NULL, session_id VARCHAR(128) NOT NULL, "
                    "sequence BIGINT NOT NULL)"
                )
            )
            await conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS crash_disorder (position BIGINT NOT NULL)")
            )


async def append_some(url: str, rng: random.Random, most: int) -> None:
    async with await open_store(url) as store:
        for _ in range(rng.randint(0, most)):
            session_id = rng.choice(SESSIONS)
            size = rng.randint(1, 5)
            await store.append(
                session_id, [EventDraft(type="trial.note", data={"n": n}) for n in range(size)]
            )


async def consume(url: str, seed: int, out: int | None) -> int:
    rng = random.Random(seed)

    def say(mark: bytes) -> None:
        if out is not None:
            os.write(out, mark)

    async def apply(batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        conn = txn.connection
        say(b"b")
        before = (await conn.execute(_MAX)).scalar()
        if before is not None and batch[0].position <= before:
            await conn.execute(
                sa.text("INSERT INTO crash_disorder VALUES (:p)"), {"p": batch[0].position}
            )
        for item in batch:
            event = item.event
            await conn.execute(
                _INSERT, {"p": item.position, "s": event.session_id, "q": event.sequence}
            )

    async with await open_store(url) as store:
        say(b"o")
        consumer = Consumer(store, NAME, apply, batch_size=rng.randint(1, 12))
        total = 0
        while count := await consumer.step():
            total += count
            say(b"c")
        return total


def child(url: str, seed: int, out: int) -> None:
    try:
        asyncio.run(consume(url, seed, out))
        os.write(out, b"d")
    except BaseException as exc:  # report, then leave without running the parent's cleanup
        os.write(out, f"e{exc!r}".replace("\n", " ").encode())
    finally:
        os._exit(1)


def trial(url: str, seed: int, rng: random.Random) -> bool:
    """One consumer child killed at a random moment; whether a batch was in flight."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        child(url, seed, write_end)
    os.close(write_end)
    # Mostly kill while applying (counted from the first batch's start, since opening the
    # store and its first connection may take longer than a batch); sometimes while opening.
    start_mark = b"b" if rng.random() < 0.8 else b"o"
    seen = kill_after(
        pid,
        read_end,
        rng.uniform(0, 0.02),
        started=lambda seen: start_mark in seen,
        never_started="the consumer never opened the store",
    )
    if b"e" in seen:
        raise SystemExit(f"the consumer failed: {seen[seen.index(b'e') :].decode()}")
    marks = seen.replace(b"o", b"").replace(b"d", b"")
    return marks.endswith(b"b")


async def verify(url: str) -> dict[str, Any]:
    async with await open_store(url) as store:
        expected: list[int] = []
        after = 0
        while page := await store.read_all(after, 1000):
            expected.extend(item.position for item in page)
            after = page[-1].position
        async with _engine(store).connect() as conn:
            applied = Counter(
                int(p)
                for p in (await conn.execute(sa.text("SELECT position FROM crash_applied")))
                .scalars()
                .all()
            )
            disorder = (await conn.execute(sa.text("SELECT count(*) FROM crash_disorder"))).scalar()
    return {
        "events": len(expected),
        "missing": [p for p in expected if p not in applied],
        "twice": sorted(p for p, n in applied.items() if n > 1),
        "unknown": sorted(set(applied) - set(expected)),
        "disorder": int(disorder or 0),
    }


def main(argv: list[str]) -> None:
    url, trials, seed = argv[0], int(argv[1]), int(argv[2])
    rng = random.Random(seed)
    asyncio.run(setup(url))
    asyncio.run(append_some(url, rng, 12))
    killed_in_batch = 0
    for n in range(trials):
        asyncio.run(append_some(url, rng, 20))
        killed_in_batch += trial(url, seed * 1_000_003 + n, rng)
    asyncio.run(consume(url, seed, None))  # the last one runs to the end
    result = asyncio.run(verify(url))
    print(json.dumps({"trials": trials, "killed_in_batch": killed_in_batch, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
