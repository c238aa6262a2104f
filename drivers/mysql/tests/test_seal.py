"""Sealed payloads (``sandbox_agent.store.seal``) over the MySQL driver: ``open_store`` takes
``compress`` and ``keys`` for it, ``rewrite_events`` serves ``db rekey``, and a ciphertext
changed in the table is detected."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mysql_helpers import database_of, drop_database_of, new_database_url, raw_connect

from sandbox_agent.events import EventDraft
from sandbox_agent.store import (
    RewrittenRow,
    SessionNotFound,
    SessionRecord,
    StoreCorrupt,
    StoreError,
    open_store,
)
from sandbox_agent.store.rekey import rekey
from sandbox_agent.testing.strategies import draft_specs, make_draft


def keyring(path: Path, *kids: str) -> str:
    path.write_text("".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}\n" for k in kids))
    return f"compress=zstd&keys=file:{path}"


async def _round_trip(url: str, options: str, specs: list[tuple[object, ...]]) -> None:
    drafts = [make_draft(f"evt_{os.urandom(8).hex()}", spec) for spec in specs]
    async with await open_store(f"{url}?{options}") as store:
        sid = f"s_{os.urandom(6).hex()}"
        await store.create_session(SessionRecord(id=sid, agent="mock"))
        appended = await store.append(sid, drafts)
        assert [e.model_dump() for e in await store.read(sid)] == [e.model_dump() for e in appended]
        assert await store.verify(sid) == []


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=st.lists(draft_specs, max_size=10))
def test_any_stream_sealed_then_read_is_the_same_stream(
    tmp_path: Path, specs: list[tuple[object, ...]]
) -> None:
    options = keyring(tmp_path / "keys", "k1")
    url = new_database_url()
    try:
        asyncio.run(_round_trip(url, options, specs))
    finally:
        asyncio.run(drop_database_of(url))


async def test_a_flipped_byte_in_the_table_is_store_corrupt_and_rekey_rotates(
    mysql_url: str, tmp_path: Path
) -> None:
    options = keyring(tmp_path / "keys", "k1")
    async with await open_store(f"{mysql_url}?{options}") as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        drafts = [EventDraft(type="x.future", data={"n": n, "t": "x" * 200}) for n in range(3)]
        appended = await store.append("s", drafts)
    conn = await raw_connect(database_of(mysql_url))
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT data FROM events WHERE session_id = 's' AND sequence = 2")
            (stored,) = await cur.fetchone()
            header, _, body = json.loads(stored)["$sealed"].rpartition(".")
            raw = bytearray(base64.b64decode(body))
            raw[-1] ^= 0x80
            changed = json.dumps({"$sealed": f"{header}.{base64.b64encode(raw).decode()}"})
            await cur.execute(
                "UPDATE events SET data = %s WHERE session_id = 's' AND sequence = 2", (changed,)
            )
        async with await open_store(f"{mysql_url}?{options}") as store:
            with pytest.raises(StoreCorrupt, match=r"sequence 2, data: .*key id 'k1'"):
                await store.read("s")
            async with conn.cursor() as cur:
                await cur.execute(
                    "UPDATE events SET data = %s WHERE session_id = 's' AND sequence = 2",
                    (stored,),
                )
            assert await store.read("s") == appended
    finally:
        conn.close()
    # A new key, listed last: rekey seals every payload with it, and all still read.
    keys = tmp_path / "keys"
    keys.write_text(keys.read_text() + f"k2:{base64.b64encode(os.urandom(32)).decode()}\n")
    async with await open_store(f"{mysql_url}?{options}") as store:
        summary = await rekey(store)
        assert summary.events_rewritten == 3
        assert await store.read("s") == appended


async def test_rewrite_events_is_atomic_and_names_a_missing_event(mysql_url: str) -> None:
    async with await open_store(mysql_url) as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await store.append("s", [EventDraft(type="x.future", data={"n": n}) for n in range(2)])
        await store.driver.rewrite_events("s", [RewrittenRow(2, '{"n":20}', "[1]")])
        assert [(e.data, e.raw) for e in await store.read("s")] == [
            ({"n": 0}, None),
            ({"n": 20}, [1]),
        ]
        with pytest.raises(StoreError, match="1 of the events to rewrite are not stored"):
            await store.driver.rewrite_events(
                "s", [RewrittenRow(1, '{"n":9}', None), RewrittenRow(5, "{}", None)]
            )
        assert (await store.read("s"))[0].data == {"n": 0}
        with pytest.raises(SessionNotFound):
            await store.driver.rewrite_events("nope", [RewrittenRow(1, "{}", None)])
