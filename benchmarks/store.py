"""Store benchmarks: every row of the "Speed" table of spec/persistence.md, each measured against
its raw baseline in the same run.

    python benchmarks/store.py                   # every row (1-2 minutes, more under load)
    python benchmarks/store.py --quick           # small counts: a smoke test, not a measurement
    python benchmarks/store.py --eventsourcing   # also the eventsourcing library, same workload
    python benchmarks/store.py --json            # the figures as JSON
    python benchmarks/store.py --sealed-only     # only compression/encryption vs plain
    python benchmarks/store.py --consumers       # only the consumers section (see below)

Workload: ``item.delta`` drafts with a 300-character delta, appended round-robin to 10 sessions.
The baselines write the same columns into a table made from the same SQLAlchemy definition as the
store's ``events`` table (so with the same indexes), with the same JSON text; their rows are built
before the clock starts, so a baseline times the database alone. The store is timed from the
drafts to the returned ``UniversalEvent``s. Baseline and store alternate (a warm-up of each, then
baseline, store, baseline, store, ...), so machine noise hits both alike. A rate is the best of
the repeats; the ratio is the median of store / baseline over the back-to-back pairs (robust to
slow spells of the machine, such as the fsync latency of a busy disk), and "pairs" is its range.
The two SQLite read rows are measured once more with the store's decode replaced by events built
from the rows with no validation at all (the floor of any decode); the line under the table
gives those ratios, so each run shows how much of a read's cost validation is.

Postgres: ``--pg-url`` (default ``$SANDBOX_AGENT_TEST_PG_URL`` or
``postgresql://postgres@127.0.0.1:5432/test``); the store and the baseline get fresh schemas
``bench_<random>`` and ``bench_<random>_raw``, dropped afterwards. Its rows are skipped, and
say why, when it cannot be reached.

MySQL/MariaDB (the ``sandbox-agent-mysql`` driver package, ``drivers/mysql``): ``--mysql-url``
(default ``$SANDBOX_AGENT_TEST_MYSQL_URL`` or ``mysql://root@127.0.0.1:3306/test``); the store and
the baseline (plain ``asyncmy``, the driver's own library) get fresh databases
``bench_<random>`` and ``bench_<random>_raw``, dropped afterwards. Its rows are skipped, and say
why, when the server cannot be reached or the driver package is not installed.

Consumers (``--consumers``, a section of its own, run instead of the rows above): events/s that
a ``sandbox_agent.consumers.Consumer`` applies with its checkpoint, against ``read_all`` alone
paging through the same log with the same batch size (the baseline), on each driver: a handler
that writes nothing (the checkpoint's own cost), one that inserts a projection row per event in
the checkpoint's transaction (one executemany per batch), and the JetStream publisher when NATS
(``--nats-url``, default ``nats://127.0.0.1:4222``) is reachable. Each repeat starts the
consumer again from position 0 (and empties its projection); best of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import asyncpg
from rich.console import Console
from rich.table import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from decode import unvalidated  # the floor of any decode (a script beside this one)
from sandbox_agent.events import EventDraft, new_event_id, utc_now
from sandbox_agent.store import EventStore, SessionRecord, event_store, open_store
from sandbox_agent.store.codec import dump_json
from sandbox_agent.store.tables import POSTGRES_TABLES, SQLITE_TABLES, Tables, encode_sqlite_time

SESSIONS = 10
BATCH = 100
DELTA = ("lorem ipsum dolor sit amet, consectetur adipiscing elit " * 6)[:300]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
MYSQL_ROWS = ("mysql_batched_append", "mysql_single_append", "mysql_read")
SNAPSHOT_EVERY = 1000

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Counts:
    batched: int  # events per repeat of the batched rows
    single: int  # events per repeat of the single-event SQLite row
    pg_single: int  # events per repeat of the single-event Postgres row (fsync-bound)
    read: int  # events of the stream read back
    state_at: int  # events of the session of state_at
    repeats: int  # timed repeats of the append rows (after a warm-up)
    read_repeats: int  # timed repeats of the read and state_at rows (after a warm-up)


FULL = Counts(20_000, 4_000, 600, 100_000, 100_000, repeats=5, read_repeats=3)
QUICK = Counts(1_000, 200, 50, 2_000, 2_000, repeats=2, read_repeats=2)


@dataclass(frozen=True)
class Spec:
    """A row of the Speed table; ``{n}`` in ``measure`` is the number of events."""

    key: str
    measure: str
    baseline: str
    goal: float


SPECS = {
    spec.key: spec
    for spec in (
        Spec(
            "sqlite_batched_append",
            "SQLite append, 100 events per call",
            "sqlite3 executemany, 100 rows per transaction",
            0.5,
        ),
        Spec(
            "sqlite_single_append",
            "SQLite append, 1 event per call",
            "sqlite3, one insert per transaction",
            0.33,
        ),
        Spec(
            "sqlite_read",
            "SQLite read of a {n}-event stream into UniversalEvents, one call",
            "sqlite3 select of the same rows",
            0.5,
        ),
        Spec(
            "sqlite_read_paged",
            "SQLite read of a {n}-event stream into UniversalEvents, pages of 1000",
            "sqlite3 select of the same rows",
            0.5,
        ),
        Spec(
            "postgres_batched_append",
            "Postgres append, 100 events per call",
            "asyncpg executemany, 100 rows per transaction",
            0.5,
        ),
        Spec(
            "postgres_single_append",
            "Postgres append, 1 event per call",
            "asyncpg, one insert per transaction",
            0.6,
        ),
        Spec(
            "mysql_batched_append",
            "MySQL append, 100 events per call",
            "asyncmy executemany, 100 rows per transaction",
            0.5,
        ),
        Spec(
            "mysql_single_append",
            "MySQL append, 1 event per call",
            "asyncmy, one insert per transaction",
            0.5,
        ),
        Spec(
            "mysql_read",
            "MySQL read of a {n}-event stream into UniversalEvents, one call",
            "asyncmy select of the same rows",
            0.5,
        ),
        Spec(
            "state_at_latest",
            "state_at latest on a {n}-event session with snapshots",
            "full replay of the same session",
            20.0,
        ),
    )
}


@dataclass
class Result:
    """A measured row: rates in events per second, one per timed repeat."""

    key: str
    events: int
    store_rates: list[float] = field(default_factory=list)
    baseline_rates: list[float] = field(default_factory=list)
    skipped: str | None = None
    comparison: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the row's timed and warm-up runs

    @property
    def paired_ratios(self) -> list[float]:
        """store / baseline of each pair of runs made back to back."""
        return [s / b for s, b in zip(self.store_rates, self.baseline_rates, strict=True)]

    def as_json(self) -> dict[str, Any]:
        spec = SPECS[self.key]
        data = {
            **asdict(self),
            "measure": spec.measure.format(n=f"{self.events:,}"),
            "baseline": spec.baseline,
            "goal": spec.goal,
        }
        if self.skipped is None:
            ratio = statistics.median(self.paired_ratios)
            data |= {
                "store_per_s": max(self.store_rates),
                "baseline_per_s": max(self.baseline_rates),
                "ratio": ratio,
                "ratio_of_best": max(self.store_rates) / max(self.baseline_rates),
                "paired_ratios": self.paired_ratios,
                "meets_goal": ratio >= spec.goal,
            }
        return data


Timed = Callable[[int], Awaitable[float]]


async def alternate(key: str, events: int, repeats: int, baseline: Timed, store: Timed) -> Result:
    """Run baseline and store in turn, after an untimed warm-up of each. Each gets the number
    of the repeat (0 for the warm-up) and returns the seconds its timed part took."""
    result = Result(key, events)
    with clock() as elapsed:
        await baseline(0)
        await store(0)
        for repeat in range(1, repeats + 1):
            result.baseline_rates.append(events / await baseline(repeat))
            result.store_rates.append(events / await store(repeat))
    result.seconds = elapsed[0]
    return result


@contextmanager
def clock() -> Iterator[list[float]]:
    """``with clock() as elapsed:`` ..., then ``elapsed[0]`` is the seconds the block took."""
    elapsed: list[float] = []
    start = time.perf_counter()
    yield elapsed
    elapsed.append(time.perf_counter() - start)


# -- the workload ------------------------------------------------------------------------------


def delta_drafts(count: int) -> list[EventDraft]:
    return [
        EventDraft(type="item.delta", data={"item_id": f"msg_{i // 40:05d}", "delta": DELTA})
        for i in range(count)
    ]


def session_ids(prefix: str, repeat: int) -> list[str]:
    return [f"{prefix}{repeat}_{k}" for k in range(SESSIONS)]


def calls(count: int, per_call: int) -> list[tuple[int, int]]:
    """(session index, first event) of each append call: ``per_call`` events, round-robin."""
    return [(n % SESSIONS, start) for n, start in enumerate(range(0, count, per_call))]


def raw_rows(
    sessions: list[str], count: int, per_call: int, when: Any, positions: Iterator[int] | None
) -> list[list[Row]]:
    """The baseline's rows in the same calls as the store's appends, with the values the store
    writes (a fresh event id, the JSON text of the same payload; a position on Postgres)."""
    data = dump_json(delta_drafts(1)[0].data)
    last = dict.fromkeys(sessions, 0)
    chunks: list[list[Row]] = []
    for index, start in calls(count, per_call):
        sid = sessions[index]
        chunk: list[Row] = []
        for _ in range(min(per_call, count - start)):
            last[sid] += 1
            head: Row = (sid, last[sid], new_event_id())
            if positions is not None:
                head += (next(positions),)
            chunk.append((*head, when, "item.delta", "agent", False, None, data, None))
        chunks.append(chunk)
    return chunks


def events_ddl(tables: Tables) -> list[str]:
    """CREATE statements of the store's ``events`` table and its indexes, for a baseline."""
    dialect = sqlite.dialect() if tables.dialect == "sqlite" else postgresql.dialect()
    statements = [CreateTable(tables.events).compile(dialect=dialect)]
    statements += [CreateIndex(index).compile(dialect=dialect) for index in tables.events.indexes]
    return [str(statement) for statement in statements]


async def new_sessions(store: EventStore, ids: list[str]) -> None:
    for sid in ids:
        await store.create_session(SessionRecord(id=sid, agent="bench"))


def store_appends(store: EventStore, prefix: str, count: int, per_call: int) -> Timed:
    """``count`` drafts appended ``per_call`` at a time, round-robin over fresh sessions."""
    drafts = delta_drafts(count)
    plan = calls(count, per_call)

    async def run(repeat: int) -> float:
        sessions = session_ids(prefix, repeat)
        await new_sessions(store, sessions)
        with clock() as elapsed:
            for index, start in plan:
                await store.append(sessions[index], drafts[start : start + per_call])
        return elapsed[0]

    return run


# -- SQLite ------------------------------------------------------------------------------------

SQLITE_INSERT = (
    "INSERT INTO events (session_id, sequence, event_id, time, type, source, synthetic, "
    "native_session_id, data, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQLITE_SELECT = (
    "SELECT sequence, event_id, time, type, source, synthetic, native_session_id, data, raw "
    "FROM events WHERE session_id = ? AND sequence > ? ORDER BY sequence"
)


def raw_sqlite(path: Path, create: bool) -> sqlite3.Connection:
    """A plain sqlite3 connection set up as the store's: WAL, ``synchronous=normal``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = normal")
    if create:
        for statement in events_ddl(SQLITE_TABLES):
            db.execute(statement)
    return db


def sqlite_baseline(db: sqlite3.Connection, prefix: str, count: int, per_call: int) -> Timed:
    async def run(repeat: int) -> float:
        when = encode_sqlite_time(utc_now())
        chunks = raw_rows(session_ids(prefix, repeat), count, per_call, when, None)
        with clock() as elapsed:
            if per_call == 1:
                for chunk in chunks:  # autocommit: each insert is its own transaction
                    db.execute(SQLITE_INSERT, chunk[0])
            else:
                for chunk in chunks:
                    db.execute("BEGIN")
                    db.executemany(SQLITE_INSERT, chunk)
                    db.execute("COMMIT")
        return elapsed[0]

    return run


async def sqlite_rows(counts: Counts, directory: Path) -> list[Result]:
    raw = raw_sqlite(directory / "raw.db", create=True)
    results = []
    async with await open_store(f"sqlite:///{directory / 'store.db'}") as store:
        for key, per_call, count in (
            ("sqlite_batched_append", BATCH, counts.batched),
            ("sqlite_single_append", 1, counts.single),
        ):
            baseline = sqlite_baseline(raw, key, count, per_call)
            timed = store_appends(store, key, count, per_call)
            results.append(await alternate(key, count, counts.repeats, baseline, timed))
    raw.close()
    return results + await sqlite_read_rows(counts, directory / "read.db")


async def fill(store: EventStore, session_id: str, drafts: list[EventDraft]) -> None:
    await new_sessions(store, [session_id])
    for start in range(0, len(drafts), 1000):
        await store.append(session_id, drafts[start : start + 1000], expected_sequence=start)


async def sqlite_read_rows(counts: Counts, path: Path) -> list[Result]:
    """One session read whole, and in pages of 1000 (as ``subscribe`` and ``state_at`` read),
    against a raw select of the same rows from the same file."""
    n = counts.read
    async with await open_store(f"sqlite:///{path}") as store:
        await fill(store, "read", delta_drafts(n))
        raw = raw_sqlite(path, create=False)

        async def baseline(_: int) -> float:
            with clock() as elapsed:
                rows = raw.execute(SQLITE_SELECT, ("read", 0)).fetchall()
            assert len(rows) == n
            return elapsed[0]

        async def whole(_: int) -> float:
            with clock() as elapsed:
                events = await store.read("read")
            assert len(events) == n
            return elapsed[0]

        async def paged(_: int) -> float:
            with clock() as elapsed:
                after = 0
                while page := await store.read("read", after=after, limit=1000):
                    after = page[-1].sequence
            assert after == n
            return elapsed[0]

        results = [
            await alternate("sqlite_read", n, counts.read_repeats, baseline, whole),
            await alternate("sqlite_read_paged", n, counts.read_repeats, baseline, paged),
        ]
        # The same reads with the events built from the rows as they are, validating nothing:
        # what the store could reach if validation cost nothing.
        with mock.patch.object(event_store, "decode_rows", unvalidated):
            for result, read in zip(results, (whole, paged), strict=True):
                floor = await alternate(result.key, n, counts.read_repeats, baseline, read)
                result.comparison["unvalidated_ratio"] = statistics.median(floor.paired_ratios)
        raw.close()
    return results


# -- Postgres ----------------------------------------------------------------------------------

PG_INSERT = (
    "INSERT INTO events (session_id, sequence, event_id, position, time, type, source, "
    "synthetic, native_session_id, data, raw) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11::json)"
)


def pg_dsn(url: str) -> str:
    """The URL as asyncpg takes it: plain postgresql://, without a query."""
    return urlsplit(url)._replace(scheme="postgresql", query="").geturl()


async def postgres_problem(url: str) -> str | None:
    """Why Postgres cannot be used, or None."""
    try:
        conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = urlsplit(url).netloc.rpartition("@")[2]
        return f"skipped: Postgres at {where} unreachable ({type(exc).__name__})"
    await conn.close()
    return None


@asynccontextmanager
async def pg_schema_name(url: str) -> AsyncIterator[str]:
    """A fresh name ``bench_<random>``; the schemas named after it are dropped afterwards."""
    name = f"bench_{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        admin = await asyncpg.connect(pg_dsn(url), timeout=10)
        for schema in (name, f"{name}_raw", f"{name}_es"):
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def pg_baseline(
    pg: asyncpg.Connection, positions: Iterator[int], prefix: str, count: int, per_call: int
) -> Timed:
    async def run(repeat: int) -> float:
        chunks = raw_rows(session_ids(prefix, repeat), count, per_call, utc_now(), positions)
        with clock() as elapsed:
            for chunk in chunks:
                async with pg.transaction():
                    if per_call == 1:
                        await pg.execute(PG_INSERT, *chunk[0])
                    else:
                        await pg.executemany(PG_INSERT, chunk)
        return elapsed[0]

    return run


async def postgres_rows(counts: Counts, url: str) -> list[Result]:
    results = []
    async with pg_schema_name(url) as schema:
        pg = await asyncpg.connect(pg_dsn(url), timeout=10)
        await pg.execute(f'CREATE SCHEMA "{schema}_raw"; SET search_path = "{schema}_raw"')
        for statement in events_ddl(POSTGRES_TABLES):
            await pg.execute(statement)
        positions = itertools.count(1)
        separator = "&" if "?" in url else "?"
        async with await open_store(f"{url}{separator}schema={schema}") as store:
            for key, per_call, count in (
                ("postgres_batched_append", BATCH, counts.batched),
                ("postgres_single_append", 1, counts.pg_single),
            ):
                baseline = pg_baseline(pg, positions, key, count, per_call)
                timed = store_appends(store, key, count, per_call)
                results.append(await alternate(key, count, counts.repeats, baseline, timed))
        await pg.close()
    return results


# -- MySQL / MariaDB ---------------------------------------------------------------------------

MYSQL_INSERT = (
    "INSERT INTO events (session_id, sequence, event_id, position, time, type, source, "
    "synthetic, native_session_id, data, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
MYSQL_SELECT = (
    "SELECT sequence, event_id, time, type, source, synthetic, native_session_id, data, raw "
    "FROM events WHERE session_id = %s AND sequence > %s ORDER BY sequence"
)


def mysql_connect_args(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 5,
    }


async def mysql_problem(url: str) -> str | None:
    """Why the MySQL rows cannot run, or None."""
    try:
        import asyncmy
        import sandbox_agent_mysql  # noqa: F401 (the driver package must be installed)
    except ImportError as exc:
        return f"skipped: {exc.name} not installed (pip install -e drivers/mysql)"
    try:
        conn = await asyncmy.connect(**mysql_connect_args(url))
    except Exception as exc:
        where = urlsplit(url).netloc.rpartition("@")[2]
        return f"skipped: MySQL at {where} unreachable ({type(exc).__name__})"
    conn.close()
    return None


@asynccontextmanager
async def mysql_databases(url: str) -> AsyncIterator[tuple[Any, str, str]]:
    """(an autocommit asyncmy connection, the store's URL, the baseline's database): two fresh
    databases ``bench_<random>`` and ``bench_<random>_raw``, dropped afterwards."""
    import asyncmy

    name = f"bench_{secrets.token_hex(5)}"
    conn = await asyncmy.connect(**mysql_connect_args(url))
    try:
        async with conn.cursor() as cur:
            for database in (name, f"{name}_raw"):
                await cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        yield conn, urlsplit(url)._replace(path=f"/{name}", query="").geturl(), f"{name}_raw"
    finally:
        async with conn.cursor() as cur:
            for database in (name, f"{name}_raw"):
                await cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def mysql_events_ddl(server_version: tuple[int | str, ...]) -> list[str]:
    """CREATE statements of the driver's ``events`` table and its indexes, for a baseline."""
    from sandbox_agent_mysql.tables import Tables, binary_collation
    from sqlalchemy.dialects import mysql

    dialect = mysql.dialect()
    dialect.is_mariadb = any("mariadb" in str(part).lower() for part in server_version)
    events = Tables(binary_collation(dialect, server_version)).events
    statements = [CreateTable(events).compile(dialect=dialect)]
    statements += [CreateIndex(index).compile(dialect=dialect) for index in events.indexes]
    return [str(statement) for statement in statements]


def mysql_baseline(
    conn: Any, positions: Iterator[int], prefix: str, count: int, per_call: int
) -> Timed:
    async def run(repeat: int) -> float:
        when = utc_now().replace(tzinfo=None)  # DATETIME(6) holds UTC
        chunks = raw_rows(session_ids(prefix, repeat), count, per_call, when, positions)
        async with conn.cursor() as cur:
            with clock() as elapsed:
                for chunk in chunks:
                    await conn.begin()
                    if per_call == 1:
                        await cur.execute(MYSQL_INSERT, chunk[0])
                    else:
                        await cur.executemany(MYSQL_INSERT, chunk)
                    await conn.commit()
        return elapsed[0]

    return run


async def mysql_rows(counts: Counts, url: str) -> list[Result]:
    """Appends (100 and 1 per call) against raw inserts into a table of the same definition,
    and a read of one stream against a raw select of the same rows, with the same driver."""
    problem = await mysql_problem(url)
    if problem is not None:
        return [Result(key, 0, skipped=problem) for key in MYSQL_ROWS]
    results = []
    async with mysql_databases(url) as (conn, store_url, raw_database):
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            (version,) = await cur.fetchone()
            server_version = (*(int(n) for n in version.split("-")[0].split(".")), version)
            await cur.execute(f"USE `{raw_database}`")
            for statement in mysql_events_ddl(server_version):
                await cur.execute(statement)
        positions = itertools.count(1)
        async with await open_store(store_url) as store:
            for key, per_call, count in (
                ("mysql_batched_append", BATCH, counts.batched),
                ("mysql_single_append", 1, counts.pg_single),
            ):
                baseline = mysql_baseline(conn, positions, key, count, per_call)
                timed = store_appends(store, key, count, per_call)
                results.append(await alternate(key, count, counts.repeats, baseline, timed))
            n = counts.read
            await fill(store, "read", delta_drafts(n))
            async with conn.cursor() as cur:
                await cur.execute(f"USE `{store_url.rpartition('/')[2]}`")

            async def raw_read(_: int) -> float:
                async with conn.cursor() as cur:
                    with clock() as elapsed:
                        await cur.execute(MYSQL_SELECT, ("read", 0))
                        rows = await cur.fetchall()
                assert len(rows) == n
                return elapsed[0]

            async def store_read(_: int) -> float:
                with clock() as elapsed:
                    events = await store.read("read")
                assert len(events) == n
                return elapsed[0]

            results.append(
                await alternate("mysql_read", n, counts.read_repeats, raw_read, store_read)
            )
    return results


# -- state_at (the replay engine) ------------------------------------------------------------


def replay_engine_present() -> bool:
    if importlib.util.find_spec("sandbox_agent.replay") is None:
        return False
    import sandbox_agent.replay as engine

    return hasattr(engine, "state_at")


def session_drafts(count: int) -> list[EventDraft]:
    """A well-formed session for the replay engine: turns of an answer streamed in 40 deltas."""
    drafts = [EventDraft(type="session.started", source="daemon")]
    turn = 0
    while len(drafts) < count:
        turn += 1
        item = {"item_id": f"msg_{turn:05d}", "kind": "message", "role": "assistant"}
        text = [{"type": "text", "text": DELTA * 40}]
        drafts += [
            EventDraft(type="turn.started", data={"turn_id": f"t{turn}"}, source="daemon"),
            EventDraft(type="item.started", data={"item": item}),
            *[EventDraft(type="item.delta", data={"item_id": item["item_id"], "delta": DELTA})]
            * 40,
            EventDraft(
                type="item.completed",
                data={"item": {**item, "status": "completed", "content": text}},
            ),
            EventDraft(type="turn.ended", data={"turn_id": f"t{turn}", "reason": "completed"}),
        ]
    return drafts[:count]


async def state_at_row(counts: Counts, directory: Path) -> Result:
    """``state_at`` latest, from the newest snapshot, against a full replay of the session."""
    from sandbox_agent.replay import state_at, write_snapshot_if_due

    n = counts.state_at
    async with await open_store(f"sqlite:///{directory / 'replay.db'}") as store:
        await fill(store, "replayed", session_drafts(n))
        state = await state_at(store, "replayed", use_snapshots=False)
        assert not state.anomalies, state.anomalies[:3]
        # The newest snapshot that snapshots every 1000 events leave is at the last event:
        # saved once here, as saving one per 1000 events while filling takes half a minute.
        assert await write_snapshot_if_due(store, state, SNAPSHOT_EVERY, previous_sequence=0)

        async def full(_: int) -> float:
            with clock() as elapsed:
                await state_at(store, "replayed", use_snapshots=False)
            return elapsed[0]

        async def latest(_: int) -> float:
            with clock() as elapsed:
                await state_at(store, "replayed")
            return elapsed[0]

        return await alternate("state_at_latest", n, counts.read_repeats, full, latest)


# -- eventsourcing, for comparison -----------------------------------------------------------


async def eventsourcing_comparison(
    results: list[Result], counts: Counts, directory: Path, pg_url: str | None
) -> str:
    """Run the eventsourcing library on the same workload; say what ran, or why not."""
    try:
        import eventsourcing_comparison as es
    except ImportError as exc:
        return f"skipped: {exc} (pip install eventsourcing)"
    figures = es.sqlite_figures(counts, directory, DELTA)
    note = "SQLite (with its defaults: WAL, synchronous=full)"
    if pg_url is not None:
        async with pg_schema_name(pg_url) as schema:
            admin = await asyncpg.connect(pg_dsn(pg_url), timeout=10)
            await admin.execute(f'CREATE SCHEMA "{schema}_es"')
            await admin.close()
            try:
                figures |= es.postgres_figures(counts, pg_url, f"{schema}_es", DELTA)
                note += " and Postgres"
            except ImportError as exc:
                note += f"; Postgres skipped: {exc} (pip install 'eventsourcing[postgres]')"
    for result in results:
        rate = figures.get(result.key.removesuffix("_paged"))
        if rate is not None:
            result.comparison["eventsourcing_per_s"] = rate
    return note


# -- sealed payloads (docs/performance.md, "Session 9: sealed payloads") -----------------------

#: The store options of each sealed mode; each is timed against the plain store in the same run.
SEALED_MODES = {
    "compress": "compress=zstd",
    "encrypt": "keys=env:SANDBOX_AGENT_BENCH_KEYS",
    "both": "compress=zstd&keys=env:SANDBOX_AGENT_BENCH_KEYS",
}
SEALED_GOAL = 0.6  # of the plain store's rate
SEALED_DISK_GOAL = 0.5  # of the plain store's bytes, with compression


@dataclass
class SealedRow:
    """A sealed mode against the plain store, same driver and workload, in turn."""

    driver: str
    measure: str  # batched append, single append, read
    mode: str
    events: int
    sealed_rates: list[float] = field(default_factory=list)
    plain_rates: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        ratios = [s / p for s, p in zip(self.sealed_rates, self.plain_rates, strict=True)]
        ratio = statistics.median(ratios)
        return {
            **asdict(self),
            "sealed_per_s": max(self.sealed_rates),
            "plain_per_s": max(self.plain_rates),
            "ratio": ratio,
            "paired_ratios": ratios,
            "goal": SEALED_GOAL,
            "meets_goal": ratio >= SEALED_GOAL,
        }


def with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}" if options else url


async def sealed_pair(
    driver: str, measure: str, mode: str, events: int, repeats: int, plain: Timed, sealed: Timed
) -> SealedRow:
    timed = await alternate(measure, events, repeats, plain, sealed)
    return SealedRow(driver, measure, mode, events, timed.store_rates, timed.baseline_rates)


async def sealed_driver_rows(
    driver: str, urls: dict[str, str], counts: Counts, repeats: int
) -> list[SealedRow]:
    """Batched append, single append and a whole read in each mode against the plain store,
    each store on a database of its own (``urls``: ``plain`` and each mode)."""
    rows: list[SealedRow] = []
    stores = {name: await open_store(url) for name, url in urls.items()}
    try:
        single = counts.single if driver == "sqlite" else counts.pg_single
        for mode in SEALED_MODES:
            for measure, per_call, count in (
                ("batched append", BATCH, counts.batched),
                ("single append", 1, single),
            ):
                prefix = f"{mode}_{per_call}_"
                plain = store_appends(stores["plain"], prefix, count, per_call)
                sealed = store_appends(stores[mode], prefix, count, per_call)
                rows.append(await sealed_pair(driver, measure, mode, count, repeats, plain, sealed))
        n = counts.read
        for store in stores.values():
            await fill(store, "read", delta_drafts(n))

        def whole(store: EventStore) -> Timed:
            async def run(_: int) -> float:
                with clock() as elapsed:
                    events = await store.read("read")
                assert len(events) == n
                return elapsed[0]

            return run

        for mode in SEALED_MODES:
            rows.append(
                await sealed_pair(
                    driver,
                    "read",
                    mode,
                    n,
                    counts.read_repeats,
                    whole(stores["plain"]),
                    whole(stores[mode]),
                )
            )
    finally:
        for store in stores.values():
            await store.close()
    return rows


async def sqlite_disk_bytes(directory: Path, counts: Counts) -> dict[str, Any]:
    """Bytes of the 300-character workload on disk (the database file after a checkpoint) and
    in the ``data`` column alone, plain and in each mode."""
    n = counts.read
    sizes: dict[str, Any] = {"events": n}
    for name, options in {"plain": "", **SEALED_MODES}.items():
        path = directory / f"disk_{name}.db"
        async with await open_store(with_options(f"sqlite:///{path}", options)) as store:
            await fill(store, "disk", delta_drafts(n))
        db = sqlite3.connect(path)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (payload,) = db.execute("SELECT sum(length(data)) FROM events").fetchone()
        db.close()
        sizes[name] = {"file_bytes": path.stat().st_size, "data_bytes": int(payload)}
    for name in SEALED_MODES:
        sizes[name]["file_ratio"] = sizes[name]["file_bytes"] / sizes["plain"]["file_bytes"]
        sizes[name]["data_ratio"] = sizes[name]["data_bytes"] / sizes["plain"]["data_bytes"]
    sizes["goal"] = SEALED_DISK_GOAL
    sizes["meets_goal"] = sizes["compress"]["file_ratio"] <= SEALED_DISK_GOAL
    return sizes


async def sealed_section(
    args: argparse.Namespace, counts: Counts, directory: Path
) -> dict[str, Any]:
    """Compression (zstd), encryption (AES-256-GCM) and both, each against the plain store in
    the same run: SQLite, and Postgres when reachable."""
    import base64

    os.environ["SANDBOX_AGENT_BENCH_KEYS"] = "bench:" + base64.b64encode(os.urandom(32)).decode()
    repeats = counts.repeats
    sqlite_urls = {
        name: with_options(f"sqlite:///{directory / f'sealed_{name}.db'}", options)
        for name, options in {"plain": "", **SEALED_MODES}.items()
    }
    rows = await sealed_driver_rows("sqlite", sqlite_urls, counts, repeats)
    postgres: str | None = await postgres_problem(args.pg_url)
    if postgres is None:
        async with pg_schema_name(args.pg_url) as schema:
            names = {"plain": "", **SEALED_MODES}
            pg_urls = {
                name: with_options(with_options(args.pg_url, f"schema={schema}_{i}"), options)
                for i, (name, options) in enumerate(names.items())
            }
            try:
                rows += await sealed_driver_rows("postgres", pg_urls, counts, repeats)
            finally:
                admin = await asyncpg.connect(pg_dsn(args.pg_url), timeout=10)
                for i in range(len(names)):
                    await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_{i}" CASCADE')
                await admin.close()
    return {
        "rows": [row.as_json() for row in rows],
        "disk": await sqlite_disk_bytes(directory, counts),
        "postgres": postgres or "measured",
    }


def print_sealed(report: dict[str, Any], console: Console) -> None:
    table = Table(title="Sealed payloads against the plain store, same run (events/s)")
    for name in ("driver", "measure", "mode", "sealed", "plain", "ratio", "goal", "pairs"):
        table.add_column(name, justify="right" if name not in ("driver", "measure") else "left")
    for row in report["rows"]:
        pairs = row["paired_ratios"]
        table.add_row(
            row["driver"],
            f"{row['measure']} ({row['events']:,})",
            row["mode"],
            f"{row['sealed_per_s']:,.0f}",
            f"{row['plain_per_s']:,.0f}",
            f"{row['ratio']:.2f}x",
            f">= {row['goal']:g}x",
            f"{min(pairs):.2f}-{max(pairs):.2f}",
        )
    console.print(table)
    disk = report["disk"]
    console.print(
        f"SQLite bytes for {disk['events']:,} events of the 300-character workload: plain "
        f"{disk['plain']['file_bytes']:,} (data column {disk['plain']['data_bytes']:,}); "
        + "; ".join(
            f"{name} {disk[name]['file_bytes']:,} = {disk[name]['file_ratio']:.2f}x "
            f"(data column {disk[name]['data_ratio']:.2f}x)"
            for name in SEALED_MODES
        )
        + f". Goal with compression: <= {disk['goal']:g}x. Postgres: {report['postgres']}."
    )


# -- consumers (--consumers) -------------------------------------------------------------------

CONSUMER_EVENTS = 20_000
CONSUMER_BATCHES = (100, 1000)
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


async def consumer_stores(
    args: argparse.Namespace, directory: Path
) -> AsyncIterator[tuple[str, str]]:
    """(driver name, URL of an empty store) for each driver that can run; Postgres and MySQL
    in fresh schemas/databases dropped afterwards."""
    yield "memory", "memory://"
    yield "sqlite", f"sqlite:///{directory / 'consumers.db'}"
    if await postgres_problem(args.pg_url) is None:
        async with pg_schema_name(args.pg_url) as schema:
            base = args.pg_url
            yield "postgres", f"{base}{'&' if '?' in base else '?'}schema={schema}"
    if await mysql_problem(args.mysql_url) is None:
        async with mysql_databases(args.mysql_url) as (_conn, url, _raw):
            yield "mysql", url


async def consumer_rates(
    store: EventStore, events: int, batch: int, repeats: int, nats_url: str | None
) -> dict[str, float]:
    """Best events/s of read_all alone, a consumer with an empty handler, one with a
    projection row per event, and the JetStream publisher (when ``nats_url``)."""
    import sqlalchemy as sa

    from sandbox_agent.consumers import Consumer, reset_consumer

    engine = getattr(store.driver, "_engine", None)  # the SQL drivers': bench_proj is there
    insert = sa.text("INSERT INTO bench_proj (position, type) VALUES (:p, :t)")
    memory_rows: list[tuple[int, str]] = []

    async def nothing(items: Any, txn: Any) -> None:
        pass

    async def project(items: Any, txn: Any) -> None:
        rows = [(item.position, item.event.type) for item in items]
        if txn.connection is None:
            txn.on_commit(lambda: memory_rows.extend(rows))
        else:
            await txn.connection.execute(insert, [{"p": p, "t": t} for p, t in rows])

    async def read_alone() -> float:
        with clock() as elapsed:
            after = 0
            while page := await store.read_all(after, batch):
                after = page[-1].position
        return elapsed[0]

    def consumer_run(name: str, handler: Any) -> Callable[[], Awaitable[float]]:
        async def timed() -> float:
            await reset_consumer(store, name, 0)
            memory_rows.clear()
            if engine is not None:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("DELETE FROM bench_proj"))
            with clock() as elapsed:
                applied = await Consumer(
                    store, name, handler, batch_size=batch
                ).run_until_caught_up()
            assert applied == events, (applied, events)
            return elapsed[0]

        return timed

    runs: dict[str, Callable[[], Awaitable[float]]] = {
        "read_all": read_alone,
        "checkpoint_only": consumer_run("bench-empty", nothing),
        "projection": consumer_run("bench-proj", project),
    }
    if nats_url is not None:
        runs["jetstream"] = nats_run(store, nats_url, batch, events)
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for repeat in range(repeats + 1):  # the first is a warm-up
        for key, timed in runs.items():
            rate = events / await timed()
            if repeat:
                rates[key].append(rate)
    # Rates: the best repeat; ratios: the median over the repeats of each against the
    # read_all run just before it (robust to slow spells of a shared machine).
    found: dict[str, float] = {key: max(values) for key, values in rates.items()}
    for key, values in rates.items():
        if key != "read_all":
            pairs = zip(values, rates["read_all"], strict=True)
            found[f"{key}_ratio"] = statistics.median(v / b for v, b in pairs)
    return found


def nats_run(
    store: EventStore, nats_url: str, batch: int, events: int
) -> Callable[[], Awaitable[float]]:
    from sandbox_agent.consumers import reset_consumer
    from sandbox_agent.consumers.jetstream import JetStreamPublisher

    async def timed() -> float:
        import nats

        token = secrets.token_hex(4)
        stream = f"BENCH_{token}"
        publisher = JetStreamPublisher(
            store,
            servers=nats_url,
            stream=stream,
            subject_prefix=f"bench.{token}",
            batch_size=batch,
        )
        await reset_consumer(store, f"nats:{stream}", 0)
        try:
            async with publisher:
                with clock() as elapsed:
                    assert await publisher.run_until_caught_up() == events
        finally:
            nc = await nats.connect(nats_url)
            await nc.jetstream().delete_stream(stream)
            await nc.close()
        return elapsed[0]

    return timed


async def nats_problem(url: str) -> str | None:
    try:
        import nats
    except ImportError:
        return "skipped: nats-py not installed (pip install 'sandbox-agent[nats]')"
    try:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0)
        await nc.jetstream().account_info()
        await nc.close()
    except Exception as exc:
        return f"skipped: NATS with JetStream at {url} unreachable ({type(exc).__name__})"
    return None


async def consumers_section(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    events = 2_000 if args.quick else CONSUMER_EVENTS
    repeats = 1 if args.quick else 3
    nats_skip = await nats_problem(args.nats_url)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    async for driver, url in consumer_stores(args, directory):
        async with await open_store(url) as store:
            ids = session_ids("c", 0)
            await new_sessions(store, ids)
            drafts = delta_drafts(events)
            for index, start in calls(events, BATCH):
                await store.append(ids[index], drafts[start : start + BATCH])
            engine = getattr(store.driver, "_engine", None)
            if engine is not None:  # the projection's table, in the store's database
                async with engine.begin() as conn:
                    await conn.exec_driver_sql(
                        "CREATE TABLE bench_proj (position BIGINT NOT NULL, type VARCHAR(64))"
                    )
            for batch in CONSUMER_BATCHES:
                rates = await consumer_rates(
                    store, events, batch, repeats, None if nats_skip else args.nats_url
                )
                rows.append({"driver": driver, "batch": batch, "events": events, **rates})
    return {
        "quick": args.quick,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "nats": nats_skip or args.nats_url,
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }


def print_consumers(report: dict[str, Any], console: Console) -> None:
    table = Table(title="Consumers against read_all alone, same run (events/s)")
    for name in (
        "driver",
        "batch",
        "read_all",
        "checkpoint only",
        "ratio",
        "projection",
        "ratio",
        "jetstream",
        "ratio",
    ):
        table.add_column(name, justify="left" if name == "driver" else "right")
    for row in report["rows"]:
        base = row["read_all"]
        cells = [row["driver"], str(row["batch"]), f"{base:,.0f}"]
        for key in ("checkpoint_only", "projection", "jetstream"):
            rate = row.get(key)
            cells += ["", ""] if rate is None else [f"{rate:,.0f}", f"{row[key + '_ratio']:.2f}x"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"{report['rows'][0]['events']:,} events in 10 sessions; rates: best of "
        f"{report['repeats']} repeats after a warm-up; ratio: the median over the repeats of "
        "each against the read_all run just before it; "
        f"NATS: {report['nats']}; {report['cpus']} CPUs, "
        f"{report['seconds']:.0f} s."
    )


# -- running and printing --------------------------------------------------------------------


async def run(args: argparse.Namespace, counts: Counts, directory: Path) -> dict[str, Any]:
    started = time.perf_counter()
    if args.sealed_only:
        return {"sealed": await sealed_section(args, counts, directory), "rows": []}
    results = await sqlite_rows(counts, directory)
    problem = await postgres_problem(args.pg_url)
    if problem is None:
        results += await postgres_rows(counts, args.pg_url)
    else:
        results += [
            Result(key, 0, skipped=problem)
            for key in ("postgres_batched_append", "postgres_single_append")
        ]
    results += await mysql_rows(counts, args.mysql_url)
    if replay_engine_present():
        results.append(await state_at_row(counts, directory))
    else:
        results.append(Result("state_at_latest", 0, skipped="n/a (replay engine not present)"))
    comparison = None
    if args.eventsourcing:
        pg_url = None if problem else args.pg_url
        comparison = await eventsourcing_comparison(results, counts, directory, pg_url)
    return {
        "quick": args.quick,
        "repeats": counts.repeats,
        "read_repeats": counts.read_repeats,
        "sessions": SESSIONS,
        "delta_chars": len(DELTA),
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
        "eventsourcing": comparison,
        "rows": [result.as_json() for result in results],
        "sealed": await sealed_section(args, counts, directory),
    }


def print_table(report: dict[str, Any], console: Console) -> None:
    if not report["rows"]:  # --sealed-only
        print_sealed(report["sealed"], console)
        return
    table = Table(title="The event store against raw baselines, same run (events/s)")
    table.add_column("measure / [dim]baseline[/dim]")
    for name in ("store", "baseline", "ratio", "goal", "meets", "pairs"):
        table.add_column(name, justify="right")
    comparison = report["eventsourcing"] is not None
    if comparison:
        table.add_column("eventsourcing", justify="right")
    for row in report["rows"]:
        cells = [f"{row['measure']}\n[dim]{row['baseline']}[/dim]"]
        if row["skipped"] is not None:
            cells += ["", "", row["skipped"], f">= {row['goal']:g}x", "", ""]
        else:
            pairs = row["paired_ratios"]
            meets = "[green]yes[/green]" if row["meets_goal"] else "[red]no[/red]"
            cells += [
                f"{row['store_per_s']:,.0f}",
                f"{row['baseline_per_s']:,.0f}",
                f"{row['ratio']:.2f}x",
                f">= {row['goal']:g}x",
                meets,
                f"{min(pairs):.2f}-{max(pairs):.2f}",
            ]
        if comparison:
            rate = row["comparison"].get("eventsourcing_per_s")
            cells.append("" if rate is None else f"{rate:,.0f}")
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"Rates: best of {report['repeats']} timed repeats (append rows) or "
        f"{report['read_repeats']} (read, state_at), each row after a warm-up, baseline and "
        "store in turn. Ratio: the median of store/baseline over those back-to-back pairs; "
        "'pairs': their range. For state_at, a rate is the session's events over the seconds "
        f"taken. {report['sessions']} sessions, "
        f"{report['delta_chars']}-character deltas, {report['cpus']} CPUs, "
        f"{report['seconds']:.0f} s."
    )
    if comparison:
        console.print(f"eventsourcing: {report['eventsourcing']}")
    floors = [
        f"{row['measure'].rpartition(', ')[2]} {row['comparison']['unvalidated_ratio']:.2f}x"
        for row in report["rows"]
        if "unvalidated_ratio" in row["comparison"]
    ]
    if floors:
        console.print(
            "The SQLite reads with no validation at all (each event built from its row as it "
            f"is; the floor of any decode), same run: {', '.join(floors)}."
        )
    print_sealed(report["sealed"], console)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("SANDBOX_AGENT_TEST_PG_URL", DEFAULT_PG_URL),
        help="the Postgres to use (fresh schemas are made and dropped)",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SANDBOX_AGENT_TEST_MYSQL_URL", DEFAULT_MYSQL_URL),
        help="the MySQL/MariaDB to use (fresh databases are made and dropped)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--eventsourcing", action="store_true", help="also run the eventsourcing library"
    )
    parser.add_argument(
        "--sealed-only", action="store_true", help="only the sealed-payload section"
    )
    parser.add_argument("--repeats", type=int, help="timed repeats of the append rows")
    parser.add_argument("--dir", type=Path, help="where the SQLite files go (default: a temp dir)")
    parser.add_argument(
        "--consumers", action="store_true", help="only the consumers section (see the docstring)"
    )
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("SANDBOX_AGENT_TEST_NATS_URL", DEFAULT_NATS_URL),
        help="the NATS with JetStream of the consumers section's publisher row",
    )
    args = parser.parse_args()
    if args.consumers:
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            section = asyncio.run(consumers_section(args, Path(directory)))
        if args.json:
            json.dump(section, sys.stdout, indent=2)
            print()
        else:
            print_consumers(section, Console(width=max(Console().width, 120)))
        return
    counts = QUICK if args.quick else FULL
    if args.repeats:
        counts = replace(counts, repeats=args.repeats)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        report = asyncio.run(run(args, counts, Path(directory)))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report, Console(width=max(Console().width, 120)))


if __name__ == "__main__":
    main()
