"""Integrity (issue #15, item 7): a damaged store is reported as damaged, never served as a
shorter, clean stream.

A real server writes a SQLite store: session ``a-damaged`` of about 400 events and session
``z-healthy``. Each test damages a copy of that file, deterministically (events deleted below the
last sequence: a gap) or as a failing disk would (bytes flipped in the pages of the index that
reads go through), then: ``replay --check`` reports the damage and exits 1, ``--deep`` reports
SQLite's own integrity check, and a server on the copy answers ``store_corrupt`` for the damaged
session, lists it as ``failed``, and serves the healthy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from sandbox_agent.cli import app
from sandbox_agent.events import EventDraft
from sandbox_agent.store import (
    EventStore,
    SessionRecord,
    StorageDriver,
    StoreCorrupt,
    open_store,
)
from sandbox_agent.store.memory import MemoryDriver
from sandbox_agent.testing.corruption import (
    copy_sqlite,
    delete_events,
    flip_bytes,
    index_on,
    pages_of,
)
from sandbox_agent.testing.databases import pg_base_url, require_postgres, sqlite_url
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess, events_of, problem, stream_turn
from sandbox_agent.testing.streams import Stream

DAMAGED = "a-damaged"  # sorts first: its index entries fill the index's first leaf pages
HEALTHY = "z-healthy"
MIN_EVENTS = 400


def _stream(session_id: str, turns: int) -> Stream:
    """A clean session as a server writes it: started, then turns of a prompt and an answer
    in three chunks (9 events a turn)."""
    stream = Stream(session_id).started("mock")
    for n in range(1, turns + 1):
        turn = f"turn_{n}"
        stream.turn(turn).user(f"itm_{2 * n - 1}", f"prompt {n}")
        stream.assistant(f"itm_{2 * n}", "An answer ", "in three ", f"chunks, turn {n}.")
        stream.turn_end(turn)
    return stream


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean SQLite store: ``a-damaged`` of about 400 events, ``z-healthy`` of one turn."""
    path = tmp_path_factory.mktemp("integrity") / "pristine.db"

    async def write() -> None:
        async with await open_store(sqlite_url(path)) as store:
            for session_id, turns in ((DAMAGED, 47), (HEALTHY, 1)):  # 424 events, 10
                events = _stream(session_id, turns).events
                await store.create_session(SessionRecord(id=session_id, agent="mock"))
                drafts = [EventDraft.from_event(event) for event in events]
                await store.append(session_id, drafts, expected_sequence=0)

    asyncio.run(write())
    return path


async def _record(path: Path, session_id: str) -> SessionRecord:
    async with await open_store(sqlite_url(path)) as store:
        record = await store.get_session(session_id)
    assert record is not None
    return record


def _cli(path: Path, *args: str) -> Result:
    """``sandbox-agent replay ARGS --store <path>``, in this process."""
    return CliRunner().invoke(app, ["replay", *args, "--store", sqlite_url(path)])


def _with_gap(pristine: Path, tmp_path: Path) -> tuple[Path, int]:
    """A copy whose damaged session lost its events 3..last-1 (its row still says last)."""
    copy = copy_sqlite(pristine, tmp_path / "gap.db")
    with_last = _last_sequence(copy)
    assert delete_events(copy, DAMAGED, 3, with_last - 1) == with_last - 3
    return copy, with_last


def _last_sequence(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT last_sequence FROM sessions WHERE id = ?", (DAMAGED,)).fetchone()
    return int(row[0])


def _with_flips(pristine: Path, tmp_path: Path) -> Path:
    """A copy with bytes flipped in the first leaf pages of the (session_id, sequence) index,
    which every read of a session's events goes through: the damaged session's entries only."""
    copy = copy_sqlite(pristine, tmp_path / "flipped.db")
    index = index_on(copy, "events", ["session_id", "sequence"])
    leaves = pages_of(copy, index)
    assert len(leaves) >= 2, leaves  # the healthy session's few entries are in the last one
    flip_bytes(copy, leaves[:1], count=8, seed=15)
    return copy


# -- the pristine store is clean: the checks below find damage, not noise --------------------
def test_the_pristine_store_checks_clean(pristine: Path, tmp_path: Path) -> None:
    copy = copy_sqlite(pristine, tmp_path / "copy.db")
    done = _cli(copy, "--all", "--check", "--deep", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["integrity"] == {
        "supported": True,
        "ok": True,
        "method": "SQLite PRAGMA integrity_check",
        "problems": [],
    }
    by_id = {s["session_id"]: s for s in report["sessions"]}
    assert by_id[DAMAGED]["events"] >= MIN_EVENTS and by_id[DAMAGED]["anomalies"] == []


# -- the store layer --------------------------------------------------------------------------
async def test_a_read_across_a_gap_is_store_corrupt(pristine: Path, tmp_path: Path) -> None:
    copy, last = _with_gap(pristine, tmp_path)
    async with await open_store(sqlite_url(copy)) as store:
        with pytest.raises(StoreCorrupt) as caught:
            await store.read(DAMAGED)  # events 1, 2 and `last` are there: a hole between
        assert caught.value.session_id == DAMAGED and caught.value.sequence == 3
        assert f"events 3..{last - 1} missing" in str(caught.value)
        with pytest.raises(StoreCorrupt):
            await store.read(DAMAGED, after=0, limit=100)
        assert [e.sequence for e in await store.read(DAMAGED, after=0, limit=2)] == [1, 2]
        # The end of the stream lost too: a short page below the row's last sequence.
        delete_events(copy, DAMAGED, last, last)
        with pytest.raises(
            StoreCorrupt, match=f"the session's row says its last sequence is {last}"
        ):
            await store.read(DAMAGED, after=2)
        assert len(await store.read(HEALTHY)) == (await _record(copy, HEALTHY)).last_sequence
        assert await store.verify(HEALTHY) == []
        found = await store.verify(DAMAGED)
    assert [(f.kind, f.sequence) for f in found] == [("gap", 3)]
    assert f"events 3..{last} missing" in found[0].detail


# -- replay --check ---------------------------------------------------------------------------
def test_replay_check_reports_a_gap_and_exits_1(pristine: Path, tmp_path: Path) -> None:
    copy, last = _with_gap(pristine, tmp_path)
    done = _cli(copy, DAMAGED, "--check")
    assert done.exit_code == 1, done.output
    assert "no anomalies" not in done.stdout
    assert f"#3 events_missing: events 3..{last - 1} missing" in done.stdout

    done = _cli(copy, "--all", "--check", "--json")
    assert done.exit_code == 1
    by_id = {s["session_id"]: s for s in json.loads(done.stdout)}
    assert by_id[HEALTHY]["anomalies"] == []
    kinds = [a["kind"] for a in by_id[DAMAGED]["anomalies"]]
    assert kinds[0] == "events_missing"


def test_replay_check_deep_runs_sqlites_integrity_check(pristine: Path, tmp_path: Path) -> None:
    copy = _with_flips(pristine, tmp_path)
    done = _cli(copy, DAMAGED, "--check", "--deep", "--json")
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["anomalies"], report  # the store's own finding, whichever the flips made
    assert report["anomalies"][0]["kind"] in ("events_missing", "database_corrupt", "row_mismatch")
    integrity = report["integrity"]
    assert integrity["supported"] and not integrity["ok"] and integrity["problems"]

    text = _cli(copy, DAMAGED, "--check", "--deep")
    assert text.exit_code == 1
    assert "problem(s) (SQLite PRAGMA integrity_check)" in text.stdout


def test_deep_needs_check(pristine: Path, tmp_path: Path) -> None:
    done = _cli(pristine, DAMAGED, "--deep")
    assert done.exit_code == 2 and "--deep goes with --check only" in done.output


# -- a server on the damaged copy -------------------------------------------------------------
@pytest.mark.parametrize("damage", ["gap", pytest.param("flipped", marks=pytest.mark.slow)])
def test_a_server_answers_store_corrupt_and_serves_the_other_session(
    damage: str, pristine: Path, tmp_path: Path
) -> None:
    if damage == "gap":
        copy, last = _with_gap(pristine, tmp_path)
    else:
        copy = _with_flips(pristine, tmp_path)
    server = ServerProcess(sqlite_url(copy), tmp_path / "server.log").start()
    try:
        with server.client() as client:
            listed = client.get("/v1/sessions")
            assert listed.status_code == 200, listed.text
            by_id = {s["sessionId"]: s for s in listed.json()["sessions"]}
            assert by_id[DAMAGED]["status"] == "failed"
            assert "stored stream damaged" in by_id[DAMAGED]["error"]
            assert by_id[HEALTHY]["status"] == "idle" and "error" not in by_id[HEALTHY]

            for method, path, body in [
                ("GET", f"/v1/sessions/{DAMAGED}", None),
                ("POST", f"/v1/sessions/{DAMAGED}/messages", {"message": OK_PROMPT}),
                ("GET", f"/v1/sessions/{DAMAGED}/events", None),
                ("GET", f"/v1/sessions/{DAMAGED}/state", None),
            ]:
                answer = client.request(method, path, json=body)
                found = problem(answer, 500, "store_corrupt")
                assert found["sessionId"] == DAMAGED
                if damage == "gap":
                    assert f"events 3..{last - 1} missing" in found["detail"]
                    assert found["sequence"] == 3

            # The other session: read, prompted, streamed as ever.
            before = len(events_of(client, HEALTHY))
            turn = stream_turn(client, HEALTHY, OK_PROMPT)
            assert turn[-1]["type"] == "turn.ended"
            assert len(events_of(client, HEALTHY)) == before + len(turn)
            assert client.get(f"/v1/sessions/{HEALTHY}").json()["status"] == "idle"

            # Deleting the damaged session is how its damage goes away.
            assert client.delete(f"/v1/sessions/{DAMAGED}").status_code == 204
            assert client.get(f"/v1/sessions/{DAMAGED}").status_code == 404
    finally:
        server.stop()
    assert f"session {DAMAGED}: failed, not served" in server.log()


# -- the integrity hook of each driver --------------------------------------------------------
async def test_each_driver_answers_the_integrity_check(store: EventStore, driver: str) -> None:
    report = await store.check_integrity()
    if driver == "memory":
        assert (report.supported, report.ok, report.method) == (
            True,
            True,
            "memory: nothing to check",
        )
    elif driver == "sqlite":
        assert report.ok and report.method == "SQLite PRAGMA integrity_check"
    else:  # Postgres: amcheck when the database has it, else a clear "not supported"
        assert report.ok or (not report.supported and "amcheck" in report.method), report


class _NoCheck(MemoryDriver):
    """A driver of another distribution, written before the hook (MySQL, drivers.md's)."""

    check_integrity = StorageDriver.check_integrity


async def test_a_driver_without_the_hook_answers_not_supported() -> None:
    async with EventStore(_NoCheck()) as store:
        report = await store.check_integrity()
    assert not report.supported and not report.ok
    assert report.method == "_NoCheck has no integrity check"


@pytest.mark.postgres
async def test_postgres_with_amcheck_checks_every_index() -> None:
    """In a database of its own, where amcheck is installed (the store never installs it)."""
    require_postgres()
    base = pg_base_url()
    name = f"t_amcheck_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(urlsplit(base)._replace(query="").geturl(), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = urlsplit(base)._replace(path=f"/{name}").geturl()
        conn = await asyncpg.connect(urlsplit(url)._replace(query="").geturl(), timeout=10)
        try:
            await conn.execute("CREATE EXTENSION amcheck")
        finally:
            await conn.close()
        async with await open_store(url) as store:
            await store.create_session(SessionRecord(id="s", agent="mock"))
            await store.append("s", [EventDraft(type="session.started")])
            report = await store.check_integrity()
        assert report.supported and report.ok, report
        assert report.method.startswith("Postgres amcheck bt_index_check on ")
        assert int(report.method.split(" on ")[1].split()[0]) >= 3  # the tables' indexes
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
