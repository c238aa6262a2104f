"""Payloads sealed at rest (``store/seal.py``): compression and AES-GCM encryption by URL
options, on memory, a SQLite file and Postgres (the MySQL driver: drivers/mysql/tests). For
any stream, sealed then read gives the same events; keys rotate and ``rekey`` moves every
payload to the active key; a changed or moved ciphertext, a missing or wrong key, are clear
errors; options never carry a key."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.replay import export_sessions, import_sessions
from sandbox_agent.store import (
    EventStore,
    Keyring,
    RewrittenRow,
    SessionNotFound,
    SessionRecord,
    StorageDriver,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreKeyError,
    open_store,
)
from sandbox_agent.store.rekey import rekey
from sandbox_agent.store.seal import Sealer, Where
from sandbox_agent.testing.databases import _asyncpg_dsn, driver_params, fresh_url
from sandbox_agent.testing.strategies import draft_specs, make_draft

TEST_KEYS = Path(__file__).parent / "fixtures" / "seal" / "test.keys"
SEALED = f"compress=zstd&keys=file:{TEST_KEYS}"
DRIVERS = driver_params(("memory", "sqlite", "postgres"))


def sealed(url: str, options: str = SEALED) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


def key_text(*kids: str) -> str:
    """A keyring's text with fresh keys named ``kids`` (the last active)."""
    return "".join(f"{kid}:{base64.b64encode(os.urandom(32)).decode()}\n" for kid in kids)


@pytest.fixture(params=DRIVERS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_url(request.param, tmp_path) as fresh:
        yield fresh


def dumped(events: list[UniversalEvent]) -> list[dict[str, Any]]:
    return [event.model_dump() for event in events]


# Payloads that the envelope must not swallow: a "$sealed" key of their own, at the top or
# deeper, text that looks like an envelope.
LOOKALIKES = st.sampled_from(
    [
        {"$sealed": "1.zg.k2026.AAAA"},
        {"$sealed": "plain", "value": 1},
        {"a": {"$sealed": "x"}},
        {"text": '{"$sealed":"1.nn..e30="}'},
    ]
)
PAYLOAD_STREAMS = st.lists(
    st.tuples(draft_specs, st.none() | LOOKALIKES, st.none() | LOOKALIKES), max_size=12
)


def stream_drafts(specs: list[tuple[Any, Any, Any]]) -> list[EventDraft]:
    drafts = []
    for number, (spec, data, raw) in enumerate(specs):
        draft = make_draft(f"evt_{number}_{os.urandom(4).hex()}", spec)
        if data is not None:
            draft = draft.model_copy(update={"type": "x.future", "data": {**data, "n": number}})
        if raw is not None:
            draft = draft.model_copy(update={"raw": raw})
        drafts.append(draft)
    return drafts


async def _read_all(store: EventStore, sid: str) -> list[UniversalEvent]:
    return [p.event for p in await store.read_all(0, 100_000) if p.event.session_id == sid]


async def _round_trip(url: str, options: str, drafts: list[EventDraft]) -> None:
    async with await open_store(sealed(url, options)) as store:
        sid = f"s_{os.urandom(6).hex()}"
        await store.create_session(SessionRecord(id=sid, agent="mock"))
        appended: list[UniversalEvent] = []
        for start in range(0, len(drafts), 5):  # several appends, so several pages of rows
            appended += await store.append(sid, drafts[start : start + 5])
        assert dumped(await store.read(sid)) == dumped(appended)
        assert dumped(await store.read(sid, after=2, limit=3)) == dumped(appended[2:5])
        if url.startswith("memory"):
            assert dumped(await _read_all(store, sid)) == dumped(appended)
        assert await store.verify(sid) == []
        # A retry of the whole stream is recognised through the sealed rows.
        if drafts:
            assert dumped(await store.append(sid, drafts[:5])) == dumped(appended[:5])
        state = {"events": [e.data for e in appended], "$sealed": "a key of the state's own"}
        await store.save_snapshot(sid, len(appended), state, 1)
        loaded = await store.load_snapshot(sid)
        assert loaded is not None and loaded.state == state
    # The global log, through a reader with every key (earlier examples sealed their own).
    if not url.startswith("memory"):
        async with await open_store(sealed(url, f"keys=file:{TEST_KEYS}")) as reader:
            assert dumped(await _read_all(reader, sid)) == dumped(appended)
    # Reopened plain (no options): every row that is only compressed still reads.
    if "keys=" not in options and not url.startswith("memory"):
        async with await open_store(url) as plain:
            assert dumped(await plain.read(sid)) == dumped(appended)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=PAYLOAD_STREAMS,
    options=st.sampled_from([SEALED, "compress=zlib", f"keys=file:{TEST_KEYS}", ""]),
)
def test_any_stream_sealed_then_read_is_the_same_stream(
    url: str, specs: list[tuple[Any, Any, Any]], options: str
) -> None:
    asyncio.run(_round_trip(url, options, stream_drafts(specs)))


# -- rotation ----------------------------------------------------------------------------------


async def _rotation(url: str, tmp_path: Path, texts: list[str]) -> None:
    keys = tmp_path / "keys"
    keys.write_text(key_text("old"))
    ring = f"compress=zstd&keys=file:{keys}"
    drafts = [EventDraft(type="x.future", data={"text": text}) for text in texts]
    half = len(drafts) // 2
    async with await open_store(sealed(url, ring)) as store:
        sid = f"s_{os.urandom(6).hex()}"
        await store.create_session(SessionRecord(id=sid, agent="mock"))
        appended = await store.append(sid, drafts[:half])
        await store.save_snapshot(sid, half, {"n": half}, 1)
        # A new key: listed last, it seals what comes next; the old one still opens.
        keys.write_text(keys.read_text() + key_text("new"))
        store.sealer = Sealer("zstd", Keyring.load(f"file:{keys}"))
        appended += await store.append(sid, drafts[half:])
        assert dumped(await store.read(sid)) == dumped(appended)
        summary = await rekey(store)
        assert summary.events_rewritten == half and summary.snapshots_rewritten == 1
        assert (await rekey(store)).events_rewritten == 0  # all on the active key now
    # Without the old key: everything still opens, as everything is on the new one.
    lines = keys.read_text().splitlines()
    keys.write_text(lines[1] + "\n")
    if url.startswith("memory"):
        return
    async with await open_store(sealed(url, ring)) as store:
        assert dumped(await store.read(sid)) == dumped(appended)
        loaded = await store.load_snapshot(sid)
        assert loaded is not None and loaded.state == {"n": half}
    # Only the old key: a StoreKeyError naming the new key id, the session and the sequence.
    keys.write_text(lines[0] + "\n")
    async with await open_store(sealed(url, ring)) as store:
        with pytest.raises(StoreKeyError, match=rf"session '{sid}', sequence 1, data: .*'new'"):
            await store.read(sid)
        with pytest.raises(StoreKeyError, match="'new'"):
            await store.load_snapshot(sid)
        assert await store.last_sequence(sid) == len(appended)  # the numbering needs no key
        assert await store.verify(sid) == []  # nor does the check of the numbering


@pytest.mark.parametrize("driver", DRIVERS)
@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=200), min_size=2, max_size=10))
def test_rotation_keeps_every_event_readable_and_rekey_moves_them_to_the_active_key(
    driver: str, tmp_path: Path, texts: list[str]
) -> None:
    # A store and keys of its own per example: rekey goes through every session of a store.
    with fresh_url(driver, tmp_path) as url:
        asyncio.run(_rotation(url, tmp_path, texts))


# -- tampering ---------------------------------------------------------------------------------


async def _stored_rows(url: str, sid: str) -> list[tuple[int, str]]:
    if url.startswith("sqlite"):
        path = url.partition("sqlite:///")[2].partition("?")[0]
        with sqlite3.connect(path) as db:
            return db.execute(
                "SELECT sequence, data FROM events WHERE session_id = ? ORDER BY sequence", (sid,)
            ).fetchall()
    schema = url.rpartition("schema=")[2]
    conn = await asyncpg.connect(_asyncpg_dsn())
    try:
        rows = await conn.fetch(
            f'SELECT sequence, data::text FROM "{schema}".events WHERE session_id = $1 '
            "ORDER BY sequence",
            sid,
        )
        return [(int(r[0]), str(r[1])) for r in rows]
    finally:
        await conn.close()


async def _set_stored(url: str, sid: str, sequence: int, data: str) -> None:
    if url.startswith("sqlite"):
        path = url.partition("sqlite:///")[2].partition("?")[0]
        with sqlite3.connect(path) as db:
            db.execute(
                "UPDATE events SET data = ? WHERE session_id = ? AND sequence = ?",
                (data, sid, sequence),
            )
        return
    schema = url.rpartition("schema=")[2]
    conn = await asyncpg.connect(_asyncpg_dsn())
    try:
        await conn.execute(
            f'UPDATE "{schema}".events SET data = $1::json WHERE session_id = $2 AND sequence = $3',
            data,
            sid,
            sequence,
        )
    finally:
        await conn.close()


def flipped(envelope: str, at: int) -> str:
    """The envelope with one byte of its ciphertext flipped (still valid base64)."""
    header, _, body = json.loads(envelope)["$sealed"].rpartition(".")
    raw = bytearray(base64.b64decode(body))
    raw[at % len(raw)] ^= 0x01
    return json.dumps({"$sealed": f"{header}.{base64.b64encode(bytes(raw)).decode()}"})


async def _tamper(url: str, at: int, move: bool) -> None:
    async with await open_store(sealed(url)) as store:
        sid = f"s_{os.urandom(6).hex()}"
        await store.create_session(SessionRecord(id=sid, agent="mock"))
        await store.append(sid, [EventDraft(type="x.future", data={"n": n}) for n in range(3)])
        rows = await _stored_rows(url, sid)
        changed = rows[0][1] if move else flipped(rows[1][1], at)
        await _set_stored(url, sid, 2, changed)
        with pytest.raises(StoreCorrupt, match=r"sequence 2, data: .*key id 'k2026'") as caught:
            await store.read(sid)
        assert caught.value.session_id == sid and caught.value.sequence == 2
        found = await store.verify(sid)
        assert [(f.sequence, f.kind) for f in found] == [(2, "undecodable")]
        assert "does not authenticate" in found[0].detail


@pytest.mark.parametrize("driver", driver_params(("sqlite", "postgres")))
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(at=st.integers(min_value=0, max_value=10_000), move=st.booleans())
def test_a_flipped_byte_or_a_moved_ciphertext_is_store_corrupt_naming_session_sequence_and_key(
    driver: str, tmp_path: Path, at: int, move: bool
) -> None:
    with fresh_url(driver, tmp_path) as url:
        asyncio.run(_tamper(url, at, move))


async def test_a_key_of_the_same_id_but_other_bytes_is_store_corrupt_naming_the_key(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(key_text("k1"))
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with await open_store(f"{url}?keys=file:{keys}") as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await store.append("s", [EventDraft(type="x.future", data={"n": 1})])
    keys.write_text(key_text("k1"))
    async with await open_store(f"{url}?keys=file:{keys}") as store:
        with pytest.raises(StoreCorrupt, match=r"sequence 1, data: .*key id 'k1'"):
            await store.read("s")
    async with await open_store(url) as store:  # no keys at all
        with pytest.raises(StoreKeyError, match=r"key id 'k1'.*opened without keys"):
            await store.read("s")


# -- options -----------------------------------------------------------------------------------


async def test_the_options_are_taken_by_open_store_for_every_driver(tmp_path: Path) -> None:
    """The driver never sees them (it would refuse an unknown option), and a store opened with
    them seals: the stored text is an envelope."""
    url = f"sqlite:///{tmp_path / 's.db'}?synchronous=full&{SEALED}"
    async with await open_store(url) as store:
        assert store.sealer is not None and store.sealer.compress == "zstd"
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await store.append("s", [EventDraft(type="x.future", data={"secret": "hush " * 40})])
    with sqlite3.connect(tmp_path / "s.db") as db:
        (data,) = db.execute("SELECT data FROM events").fetchone()
    assert data.startswith('{"$sealed":"1.zg.k2026.') and "hush" not in data
    async with await open_store(
        f"sqlite:///{tmp_path / 's.db'}", compress="zlib", keys=f"file:{TEST_KEYS}"
    ) as store:
        assert (await store.read("s"))[0].data == {"secret": "hush " * 40}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("compress=lz4", "compress must be zstd, zlib or none"),
        ("keys=" + base64.b64encode(b"k" * 32).decode(), "keys must be env:NAME or file:PATH"),
        ("keys=env:SANDBOX_AGENT_NO_SUCH_VARIABLE", "SANDBOX_AGENT_NO_SUCH_VARIABLE is not set"),
        ("keys=file:/no/such/keyring", "cannot read it"),
        (f"keys=file:{TEST_KEYS}&active_key=nope", "active key id 'nope' is not among"),
        ("active_key=k1", "active_key needs keys"),
    ],
)
async def test_bad_seal_options_are_clear_errors_that_never_show_a_key(
    tmp_path: Path, options: str, message: str
) -> None:
    with pytest.raises(StoreConfigError, match=message) as caught:
        await open_store(f"sqlite:///{tmp_path / 's.db'}?{options}")
    assert base64.b64encode(b"k" * 32).decode() not in str(caught.value)
    for line in TEST_KEYS.read_text().splitlines():
        assert line.partition(":")[2] not in str(caught.value) or line.startswith("#")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key in it"),
        ("k1:not base64!", "key 'k1' is not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "5 bytes once decoded, not 32"),
        ("bad.id:" + base64.b64encode(b"k" * 32).decode(), "key id 'bad.id'"),
        (key_text("k1") + key_text("k1"), "listed twice"),
    ],
)
def test_a_bad_keyring_names_the_line_and_never_the_key(text: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as caught:
        Keyring.parse(text, "keys=env:X")
    for line in text.splitlines():
        secret = line.partition(":")[2]
        assert not secret or secret not in str(caught.value)
    assert "keys=env:X" in str(caught.value)


def test_a_keyring_line_without_an_id_is_the_default_key_and_repr_hides_keys() -> None:
    ring = Keyring.parse("# a comment\n\n" + base64.b64encode(b"k" * 32).decode(), "x")
    assert ring.active == "default" and ring.keys["default"] == b"k" * 32
    assert "k" * 10 not in repr(ring) and base64.b64encode(b"k" * 32).decode() not in repr(ring)


def test_compression_that_does_not_pay_stores_the_plain_text() -> None:
    sealer = Sealer("zlib")
    where = Where("s", 0, "e", "data")
    assert sealer.seal('{"a":1}', where) == '{"a":1}'
    assert sealer.seal('{"$sealed":1}', where) == '{"$sealed":"plain","value":{"$sealed":1}}'
    long = json.dumps({"text": "abc " * 200})
    packed = sealer.seal(long, where)
    assert packed.startswith('{"$sealed":"1.dn..') and len(packed) < len(long) / 4
    assert Sealer().open(packed, where) == long


# -- rewrite_events, rekey, export ---------------------------------------------------------------


async def test_rewrite_events_replaces_payloads_atomically_on_each_driver(url: str) -> None:
    async with await open_store(url) as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await store.append("s", [EventDraft(type="x.future", data={"n": n}) for n in range(3)])
        before = await store.read("s")
        await store.driver.rewrite_events(
            "s", [RewrittenRow(2, '{"n":20}', '"raw"'), RewrittenRow(3, '{"n":30}', None)]
        )
        after = await store.read("s")
        assert [e.data for e in after] == [{"n": 0}, {"n": 20}, {"n": 30}]
        assert [e.raw for e in after] == [None, "raw", None]
        assert [(e.event_id, e.time, e.type) for e in after] == [
            (e.event_id, e.time, e.type) for e in before
        ]
        with pytest.raises(StoreError, match=r"not stored|no stored event"):
            await store.driver.rewrite_events(
                "s", [RewrittenRow(1, '{"n":99}', None), RewrittenRow(9, "{}", None)]
            )
        assert (await store.read("s"))[0].data == {"n": 0}  # nothing was written
        with pytest.raises(SessionNotFound):
            await store.driver.rewrite_events("nope", [RewrittenRow(1, "{}", None)])


async def test_rewrite_events_is_optional_for_a_driver_and_says_so() -> None:
    class Minimal(StorageDriver):
        pass

    for name in list(Minimal.__abstractmethods__):
        setattr(Minimal, name, lambda *a, **k: None)
    Minimal.__abstractmethods__ = frozenset()
    with pytest.raises(StoreError, match="not supported by Minimal"):
        await Minimal().rewrite_events("s", [])


async def test_export_keeps_ciphertext_unless_asked_and_import_needs_the_same_keys(
    tmp_path: Path,
) -> None:
    source_url = sealed(f"sqlite:///{tmp_path / 'a.db'}")
    secret = {"text": "the secret plan", "$sealed": "a key of its own"}
    async with await open_store(source_url) as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        appended = await store.append(
            "s",
            [
                EventDraft(type="x.future", data=secret, raw={"k": "raw secret"}),
                EventDraft(type="x.future", data={"n": 1}),
            ],
        )
        as_stored, plain = io.StringIO(), io.StringIO()
        await export_sessions(store, ["s"], as_stored)
        await export_sessions(store, ["s"], plain, decrypt=True)
    exported = as_stored.getvalue()
    assert "the secret plan" not in exported and "raw secret" not in exported
    assert exported.count("g.k2026.") == 3  # data and raw of the first event, data of the second
    assert "the secret plan" in plain.getvalue() and "raw secret" in plain.getvalue()
    for export in (as_stored, plain):
        target_url = sealed(f"sqlite:///{tmp_path / f'b{id(export)}.db'}")
        async with await open_store(target_url) as target:
            for _ in range(2):  # importing twice adds nothing
                await import_sessions(target, export.getvalue().splitlines())
            assert dumped(await target.read("s")) == dumped(appended)
    # Another keyring cannot take the sealed export: the key id is named.
    keys = tmp_path / "other.keys"
    keys.write_text(key_text("other"))
    async with await open_store(f"sqlite:///{tmp_path / 'c.db'}?keys=file:{keys}") as target:
        with pytest.raises(StoreKeyError, match="'k2026'"):
            await import_sessions(target, as_stored.getvalue().splitlines())


def test_db_rekey_turns_sealing_on_for_a_store_with_data(tmp_path: Path) -> None:
    """The CLI as a user runs it: a plain store, then ``db rekey`` with the options."""
    url = f"sqlite:///{tmp_path / 's.db'}"

    async def fill() -> None:
        async with await open_store(url) as store:
            await store.create_session(SessionRecord(id="s", agent="mock"))
            await store.append("s", [EventDraft(type="x.future", data={"t": "plain " * 30})])
            await store.save_snapshot("s", 1, {"t": "state " * 30}, 1)

    asyncio.run(fill())
    command = [sys.executable, "-m", "sandbox_agent", "db", "rekey", "--store", sealed(url)]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["events_rewritten"], summary["snapshots_rewritten"]) == (1, 1)
    with sqlite3.connect(tmp_path / "s.db") as db:
        data = db.execute("SELECT data FROM events").fetchone()[0]
        state = db.execute("SELECT state FROM snapshots").fetchone()[0]
    assert data.startswith('{"$sealed":"1.zg.k2026.') and state.startswith('{"$sealed":"1.zg.')
    unknown = subprocess.run(
        [*command, "--to", "k1999"], capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 1 and "'k1999' is not among" in unknown.stderr


def test_a_store_without_the_primitive_is_a_clear_rekey_error() -> None:
    async def go() -> None:
        store = await open_store("memory://")
        driver = store.driver

        class NoRewrite(type(driver)):  # type: ignore[misc]
            rewrite_events = StorageDriver.rewrite_events

        bare = EventStore(NoRewrite(), sealer=Sealer("zlib"))
        await bare.create_session(SessionRecord(id="s", agent="mock"))
        await EventStore(bare.driver).append(
            "s", [EventDraft(type="x.future", data={"t": "x" * 500})]
        )
        with pytest.raises(StoreError, match="not supported by NoRewrite"):
            await rekey(bare)

    asyncio.run(go())
