"""The ``eventsourcing`` library on the workload of ``store.py``, for its "for comparison" column.

Imported by ``store.py --eventsourcing`` (ImportError when the library is missing; ``pip install
eventsourcing``, and ``eventsourcing[postgres]`` for its Postgres recorder). An ``Application``'s
event store is timed from domain events built beforehand (as the store is timed from drafts) to
stored rows, and reading back into domain events. The library runs with its own defaults: SQLite
in WAL mode at SQLite's default ``synchronous=full``; Postgres with a table lock per insert.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent

SESSIONS = 10


class ItemDelta(DomainEvent):
    """The workload's ``item.delta`` payload as an eventsourcing domain event."""

    item_id: str
    delta: str


def deltas(count: int, per_call: int, delta: str) -> list[list[ItemDelta]]:
    """``count`` events in calls of ``per_call``, round-robin over 10 fresh originators."""
    originators = [uuid.uuid4() for _ in range(SESSIONS)]
    versions = dict.fromkeys(originators, 0)
    batches = []
    for n, start in enumerate(range(0, count, per_call)):
        originator = originators[n % SESSIONS]
        batch = []
        for i in range(start, min(start + per_call, count)):
            versions[originator] += 1
            batch.append(
                ItemDelta(
                    originator_id=originator,
                    originator_version=versions[originator],
                    timestamp=ItemDelta.create_timestamp(),
                    item_id=f"msg_{i // 40:05d}",
                    delta=delta,
                )
            )
        batches.append(batch)
    return batches


def best_rate(count: int, repeats: int, run: Callable[[], Any]) -> float:
    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def timed_puts(app: Application[Any], count: int, per_call: int, delta: str, repeats: int) -> float:
    """Best rate of ``put`` over fresh originators; building the events is not timed."""
    best = float("inf")
    for repeat in range(repeats + 1):
        batches = deltas(count, per_call, delta)
        start = time.perf_counter()
        for batch in batches:
            app.events.put(batch)
        elapsed = time.perf_counter() - start
        if repeat:  # the first is a warm-up
            best = min(best, elapsed)
    return count / best


def read_rate(app: Application[Any], count: int, delta: str, repeats: int) -> float:
    originator = uuid.uuid4()
    stream: Sequence[ItemDelta] = [
        ItemDelta(
            originator_id=originator,
            originator_version=v,
            timestamp=ItemDelta.create_timestamp(),
            item_id=f"msg_{v // 40:05d}",
            delta=delta,
        )
        for v in range(1, count + 1)
    ]
    for start in range(0, count, 1000):
        app.events.put(stream[start : start + 1000])

    def run() -> None:
        assert len(list(app.events.get(originator))) == count

    return best_rate(count, repeats, run)


def sqlite_figures(counts: Any, directory: Path, delta: str) -> dict[str, float]:
    app: Application[Any] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(directory / "es.db"),
        }
    )
    try:
        return {
            "sqlite_batched_append": timed_puts(app, counts.batched, 100, delta, counts.repeats),
            "sqlite_single_append": timed_puts(app, counts.single, 1, delta, counts.repeats),
            "sqlite_read": read_rate(app, counts.read, delta, counts.read_repeats),
        }
    finally:
        app.close()


def postgres_figures(counts: Any, pg_url: str, schema: str, delta: str) -> dict[str, float]:
    """Raises ImportError when the library's Postgres recorder (psycopg) is missing."""
    import eventsourcing.postgres  # noqa: F401  (needs psycopg)

    parts = urlsplit(pg_url)
    app: Application[Any] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": schema,
        }
    )
    try:
        return {
            "postgres_batched_append": timed_puts(app, counts.batched, 100, delta, counts.repeats),
            "postgres_single_append": timed_puts(app, counts.pg_single, 1, delta, counts.repeats),
        }
    finally:
        app.close()
