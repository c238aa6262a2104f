"""``MysqlDriver``'s primitives against the contract of ``sandbox_agent.store.driver``, directly
(the store contract and the state machine check them again through ``EventStore``)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from mysql_helpers import raw_connect
from sandbox_agent_mysql import MysqlDriver
from sandbox_agent_mysql.migrate import HEAD_REVISION, head_revision, stored_revision

from sandbox_agent.events import new_event_id, utc_now
from sandbox_agent.store import EventStore, open_store
from sandbox_agent.store.driver import EventRow, SessionChange
from sandbox_agent.store.errors import (
    DuplicateEventId,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.records import SessionRecord
from sandbox_agent.store.registry import registered_schemes


@pytest.fixture
async def driver(mysql_url: str) -> AsyncIterator[MysqlDriver]:
    opened = await MysqlDriver.open(mysql_url)
    try:
        yield opened
    finally:
        await opened.close()


def row(text: str = "x", *, event_id: str | None = None, **fields: object) -> EventRow:
    values: dict[str, object] = {
        "event_id": event_id or new_event_id(),
        "time": utc_now(),
        "type": "item.delta",
        "source": "agent",
        "synthetic": False,
        "native_session_id": None,
        "data": f'{{"item_id":"m","delta":"{text}"}}',
        "raw": None,
        "schema_version": 1,
    }
    values.update(fields)
    return EventRow(**values)  # type: ignore[arg-type]


def change(count: int, **fields: object) -> SessionChange:
    return SessionChange(count=count, updated_at=utc_now(), **fields)  # type: ignore[arg-type]


async def new_session(driver: MysqlDriver, session_id: str | None = None) -> str:
    sid = session_id or f"s_{secrets.token_hex(4)}"
    await driver.insert_session(SessionRecord(id=sid, agent="mock"))
    return sid


async def append(driver: MysqlDriver, sid: str, n: int, expected: int | None = None) -> int:
    return await driver.insert_events(sid, [row(str(i)) for i in range(n)], expected, change(n))


async def test_head_revision_constant_matches_the_migration_scripts() -> None:
    assert head_revision() == HEAD_REVISION


async def test_open_migrates_a_fresh_database_with_binary_utf8mb4_tables(
    driver: MysqlDriver, mysql_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    async with driver._connection() as conn:
        assert await stored_revision(conn) == HEAD_REVISION
    conn = await raw_connect(database)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name <> 'alembic_version'",
                (database,),
            )
            collations = dict(await cur.fetchall())
    finally:
        conn.close()
    assert sorted(collations) == [
        "consumer_checkpoints",
        "events",
        "positions",
        "sessions",
        "snapshots",
    ]
    assert set(collations.values()) <= {"utf8mb4_nopad_bin", "utf8mb4_0900_bin"}


async def test_reopening_a_migrated_database_keeps_its_rows(mysql_url: str) -> None:
    first = await MysqlDriver.open(mysql_url)
    sid = await new_session(first)
    await append(first, sid, 2)
    await first.close()
    for migrate in (True, False):
        again = await MysqlDriver.open(mysql_url, migrate=migrate)
        try:
            assert await again.select_last_sequence(sid) == 2
        finally:
            await again.close()


async def test_concurrent_openers_of_a_fresh_database_migrate_it_once(mysql_url: str) -> None:
    drivers = await asyncio.gather(*(MysqlDriver.open(mysql_url) for _ in range(4)))
    try:
        sid = await new_session(drivers[0])
        assert await append(drivers[1], sid, 1) == 0
    finally:
        for opened in drivers:
            await opened.close()


async def test_insert_events_numbers_the_batch_and_returns_the_last_sequence_before_it(
    driver: MysqlDriver,
) -> None:
    sid = await new_session(driver)
    assert await append(driver, sid, 3) == 0
    assert await append(driver, sid, 2, expected=3) == 3
    assert [r[0] for r in await driver.select_events(sid, 0, None)] == [1, 2, 3, 4, 5]
    assert [r[0] for r in await driver.select_events(sid, 1, 2)] == [2, 3]
    assert await driver.select_last_sequence(sid) == 5


async def test_a_stale_expected_sequence_raises_with_the_actual_value_and_writes_nothing(
    driver: MysqlDriver,
) -> None:
    sid = await new_session(driver)
    await append(driver, sid, 2)
    with pytest.raises(SequenceConflict) as info:
        await append(driver, sid, 1, expected=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    record = await driver.select_session(sid)
    assert record is not None and (record.last_sequence, record.event_count) == (2, 2)
    assert len(await driver.select_all(0, 100)) == 2


async def test_an_unknown_session_raises_session_not_found(driver: MysqlDriver) -> None:
    with pytest.raises(SessionNotFound):
        await append(driver, "nope", 1)
    with pytest.raises(SessionNotFound):
        await driver.select_events("nope", 0, None)
    with pytest.raises(SessionNotFound):
        await driver.insert_snapshot("nope", 1, 1, "{}", utc_now())
    assert await driver.select_last_sequence("nope") is None
    assert await driver.select_session("nope") is None


async def test_a_duplicate_event_id_raises_and_writes_nothing(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    taken = new_event_id()
    await driver.insert_events(sid, [row(event_id=taken)], None, change(1))
    with pytest.raises(DuplicateEventId):
        await driver.insert_events(sid, [row(), row(event_id=taken)], None, change(2))
    assert await driver.select_last_sequence(sid) == 1
    assert len(await driver.select_all(0, 100)) == 1
    other = await new_session(driver)  # the same id in another session is fine
    assert await driver.insert_events(other, [row(event_id=taken)], None, change(1)) == 0
    found = await driver.select_events_by_id(sid, [taken, "missing"])
    assert [r[1] for r in found] == [taken]


async def test_insert_session_of_a_taken_id_raises_session_exists(driver: MysqlDriver) -> None:
    await new_session(driver, "s1")
    with pytest.raises(SessionExists):
        await new_session(driver, "s1")


async def test_the_session_change_is_applied_in_the_append(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await driver.insert_events(
        sid, [row(), row()], None, change(2, status="ended", ended_at=when, native_session_id="n")
    )
    record = await driver.select_session(sid)
    assert record is not None
    assert (record.status, record.ended_at, record.native_session_id) == ("ended", when, "n")
    assert (record.last_sequence, record.event_count) == (2, 2)
    await driver.insert_events(sid, [row()], None, change(1, status="active"))
    record = await driver.select_session(sid)
    assert record is not None
    assert (record.status, record.ended_at, record.native_session_id) == ("active", None, "n")


async def test_times_are_stored_in_utc_to_the_microsecond(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    local = datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
    extremes = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    times = [local, *extremes]
    await driver.insert_events(sid, [row(time=t) for t in times], None, change(3))
    texts = [r[2] for r in await driver.select_events(sid, 0, None)]
    assert texts == [
        "2030-06-01T19:00:00.123456Z",
        "0001-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z",
    ]


async def test_text_with_nul_and_four_byte_characters_round_trips(driver: MysqlDriver) -> None:
    odd = "a\x00b 🚀 日本 \U0010ffff"
    sid = await new_session(driver, odd + " ")
    await driver.insert_events(sid, [row(event_id=odd, native_session_id=odd)], None, change(1))
    [stored] = await driver.select_events(sid, 0, None)
    assert (stored[1], stored[6]) == (odd, odd)
    assert await driver.select_session(odd) is None  # no padding: "x " is not "x"
    assert await driver.select_session(odd.upper() + " ") is None or odd.upper() == odd


async def test_overlong_values_raise_store_error_and_write_nothing(driver: MysqlDriver) -> None:
    with pytest.raises(StoreError):
        await new_session(driver, "s" * 300)
    sid = await new_session(driver)
    with pytest.raises(StoreError):
        await driver.insert_events(sid, [row(), row(type="t" * 100)], None, change(2))
    assert await driver.select_last_sequence(sid) == 0
    assert await driver.select_all(0, 10) == []


async def test_snapshots_replace_the_same_key_and_pick_the_highest(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    for sequence, version, state in ((2, 1, "a"), (2, 2, "b"), (5, 1, "c"), (2, 1, "a2")):
        await driver.insert_snapshot(sid, sequence, version, f'{{"s":"{state}"}}', utc_now())
    assert await driver.select_snapshot_keys(sid) == [(2, 1), (2, 2), (5, 1)]
    latest = await driver.select_snapshot(sid, None, None)
    assert latest is not None and (latest.sequence, latest.state) == (5, '{"s":"c"}')
    at_4 = await driver.select_snapshot(sid, 4, None)
    assert at_4 is not None and (at_4.sequence, at_4.version) == (2, 2)
    v1 = await driver.select_snapshot(sid, 4, 1)
    assert v1 is not None and v1.state == '{"s":"a2"}' and v1.created_at.tzinfo is not None
    assert await driver.delete_snapshots(sid, [(2, 1), (5, 1), (7, 7)]) == 2
    assert await driver.select_snapshot_keys(sid) == [(2, 2)]


async def test_delete_session_removes_its_rows(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    await append(driver, sid, 3)
    await driver.insert_snapshot(sid, 1, 1, "{}", utc_now())
    assert await driver.delete_session(sid) is True
    assert await driver.delete_session(sid) is False
    assert await driver.select_all(0, 10) == []
    assert await driver.select_snapshot_keys(sid) == []


async def test_update_session_reports_whether_the_row_exists(driver: MysqlDriver) -> None:
    sid = await new_session(driver)
    now = utc_now()
    assert await driver.update_session(sid, {"title": "t", "updated_at": now}) is True
    assert await driver.update_session(sid, {"title": "t", "updated_at": now}) is True  # same
    assert await driver.update_session("nope", {"title": "t", "updated_at": now}) is False


async def test_positions_become_visible_in_commit_order_under_concurrent_appends(
    mysql_url: str,
) -> None:
    writer = await MysqlDriver.open(mysql_url, pool_size=8)
    try:
        sessions = [await new_session(writer) for _ in range(8)]
        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            after = 0
            while not done.is_set() or after < 8 * 20 * 2:
                page = await writer.select_all(after, 1000)
                seen.extend(int(r[0]) for r in page)
                after = int(page[-1][0]) if page else after
                await asyncio.sleep(0)

        async def write(sid: str) -> None:
            for _ in range(20):
                await append(writer, sid, 2)

        follower = asyncio.create_task(follow())
        await asyncio.gather(*(write(sid) for sid in sessions))
        done.set()
        await asyncio.wait_for(follower, 30)
        # A reader that resumes after the last position it saw never misses one.
        assert seen == list(range(1, 8 * 20 * 2 + 1))
    finally:
        await writer.close()


async def test_an_unreachable_server_raises_store_unavailable_naming_host_and_port() -> None:
    async with asyncio.timeout(30):
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            await MysqlDriver.open("mysql://root@127.0.0.1:1/test?connect_timeout=5")


async def test_a_refused_login_raises_store_unavailable_without_the_password(
    mysql_url: str,
) -> None:
    parts = urlsplit(mysql_url)
    url = parts._replace(netloc=f"sa_nobody:hunter2@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(StoreUnavailable, match="sa_nobody") as info:
        await MysqlDriver.open(url)
    assert "hunter2" not in str(info.value)


async def test_an_unknown_database_raises_store_unavailable(mysql_url: str) -> None:
    missing = mysql_url.rsplit("/", 1)[0] + "/sa_missing_" + secrets.token_hex(4)
    with pytest.raises(StoreUnavailable, match="sa_missing_"):
        await MysqlDriver.open(missing)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://root@127.0.0.1/test?colour=blue", "colour"),
        ("mysql://root@127.0.0.1/test?pool_size=lots", "pool_size"),
        ("mysql://root@127.0.0.1/test?poll_interval=0", "poll_interval"),
        ("mysql://root@127.0.0.1/test?connect_timeout=-1", "connect_timeout"),
        ("mysql://root@127.0.0.1", "database"),
        ("mysql://root@127.0.0.1:port/test", "port"),
        ("sqlite:///x.db", "scheme"),
    ],
)
async def test_bad_urls_and_options_raise_store_config_error(url: str, match: str) -> None:
    with pytest.raises(StoreConfigError, match=match):
        await MysqlDriver.open(url)


async def test_options_come_from_the_url_and_keywords_win(mysql_url: str) -> None:
    opened = await MysqlDriver.open(f"{mysql_url}?poll_interval=0.5&pool_size=3", pool_size=2)
    try:
        assert opened.poll_interval == 0.5
        assert opened.options.pool_size == 2
    finally:
        await opened.close()
    for scheme in ("mariadb", "mysql+asyncmy", "mariadb+asyncmy"):
        other = await MysqlDriver.open(scheme + mysql_url.removeprefix("mysql"))
        await other.close()


async def test_a_statement_over_max_allowed_packet_is_a_store_error_and_the_pool_recovers(
    driver: MysqlDriver,
) -> None:
    sid = await new_session(driver)
    async with driver._connection() as conn:
        limit = int((await conn.exec_driver_sql("SELECT @@max_allowed_packet")).scalar_one())
    with pytest.raises(StoreError, match="max_allowed_packet") as info:
        await driver.insert_snapshot(sid, 1, 1, '"' + "x" * (limit + 1) + '"', utc_now())
    assert not isinstance(info.value, StoreUnavailable)
    for _ in range(3):  # the connection the server closed is not handed out again
        assert await driver.select_snapshot_keys(sid) == []


async def test_cancelled_appends_leave_whole_batches_and_a_usable_pool(
    driver: MysqlDriver,
) -> None:
    sid = await new_session(driver)
    for delay in range(8):
        task = asyncio.create_task(append(driver, sid, 5))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    last = await driver.select_last_sequence(sid)
    assert last is not None and last % 5 == 0
    rows = await driver.select_events(sid, 0, None)
    assert [r[0] for r in rows] == list(range(1, last + 1))
    assert len(await driver.select_all(0, 1000)) == last
    assert await append(driver, sid, 1, expected=last) == last


async def test_connections_read_committed_in_utc_with_strict_sql_mode(driver: MysqlDriver) -> None:
    async with driver._raw() as conn, conn.cursor() as cur:
        await cur.execute("SELECT @@session.time_zone, @@session.sql_mode, @@autocommit")
        zone, mode, autocommit = await cur.fetchone()
        try:  # MySQL 8 and MariaDB 11.1 name it transaction_isolation
            await cur.execute("SELECT @@session.transaction_isolation")
        except Exception:
            await cur.execute("SELECT @@session.tx_isolation")
        (isolation,) = await cur.fetchone()
    assert (zone, autocommit, isolation) == ("+00:00", 1, "READ-COMMITTED")
    assert "STRICT_ALL_TABLES" in mode


async def test_open_store_knows_every_scheme_of_the_package(mysql_url: str) -> None:
    assert {"mysql", "mysql+asyncmy", "mariadb", "mariadb+asyncmy"} <= set(registered_schemes())
    rest = mysql_url.removeprefix("mysql")
    for scheme in ("mysql", "mariadb", "mysql+asyncmy", "mariadb+asyncmy"):
        async with await open_store(scheme + rest, pool_size=1) as store:
            assert isinstance(store, EventStore) and isinstance(store.driver, MysqlDriver)
            assert store.driver.options.pool_size == 1


async def kill_connections_to(database: str) -> None:
    admin = await raw_connect()
    try:
        async with admin.cursor() as cur:
            await cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s", (database,)
            )
            for (connection_id,) in await cur.fetchall():
                await cur.execute(f"KILL {int(connection_id)}")
    finally:
        admin.close()


@pytest.mark.parametrize("path", ["event primitives", "sessions through SQLAlchemy"])
async def test_connections_killed_by_the_server_are_store_unavailable_then_replaced(
    mysql_url: str, path: str
) -> None:
    # As after a restart of the server: every pooled connection is dead.
    driver = await MysqlDriver.open(mysql_url, pool_size=3)
    try:
        sid = await new_session(driver)
        await asyncio.gather(*(append(driver, sid, 1) for _ in range(3)))  # fill the pool
        database = mysql_url.rsplit("/", 1)[1]
        await kill_connections_to(database)

        async def last() -> int | None:
            if path == "event primitives":
                return await driver.select_last_sequence(sid)
            record = await driver.select_session(sid)
            return None if record is None else record.last_sequence

        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(await last())
            except StoreUnavailable as exc:
                assert database in str(exc)
                outcomes.append(None)
        assert outcomes[-2:] == [3, 3]  # at most the first call finds a dead connection
        assert await append(driver, sid, 1, expected=3) == 3
    finally:
        await driver.close()


async def test_more_concurrent_calls_than_the_pool_holds_use_overflow_connections(
    mysql_url: str,
) -> None:
    driver = await MysqlDriver.open(mysql_url, pool_size=1)
    try:
        sids = [await new_session(driver) for _ in range(6)]
        for _ in range(3):  # overflow connections are opened, then closed when given back
            await asyncio.gather(*(append(driver, sid, 2) for sid in sids))
            await asyncio.gather(*(driver.select_events(sid, 0, None) for sid in sids))
        assert [await driver.select_last_sequence(sid) for sid in sids] == [6] * 6
    finally:
        await driver.close()
