"""The drivers say ``StoreUnavailable`` when the database cannot be reached or written, never
a driver library's own error nor a bare ``StoreError`` (issue #15, item 2): Postgres behind the
kit's ``CuttingProxy`` while it is down (connections refused and reset), SQLite on a small tmpfs
that is full (``small_disk``, skipped with the reason where it cannot be mounted). Either store
takes appends again once the database answers, its stream numbered without a gap."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, StoreError, StoreUnavailable, open_store
from sandbox_agent.testing.databases import (
    drop_schema,
    new_schema_name,
    pg_base_url,
    pg_url,
    require_postgres,
    sqlite_url,
)
from sandbox_agent.testing.faults import CuttingProxy, fill_disk, small_disk


def _item(n: int) -> EventDraft:
    return EventDraft(type="item.started", data={"item": {"item_id": f"i{n}"}})


@pytest.mark.postgres
async def test_postgres_behind_a_proxy_that_is_down_raises_store_unavailable_everywhere() -> None:
    require_postgres()
    target = urlsplit(pg_base_url())
    schema = new_schema_name()
    try:
        async with CuttingProxy(target.port or 5432, target.hostname or "127.0.0.1") as proxy:
            url = pg_url(schema).replace(target.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
            async with await open_store(url) as store:
                await store.create_session(SessionRecord(id="s", agent="mock"))
                await store.append("s", [_item(0)])
                proxy.down()
                calls: dict[str, Callable[[], Any]] = {
                    "append": lambda: store.append("s", [_item(1)]),
                    "read": lambda: store.read("s"),
                    "get_session": lambda: store.get_session("s"),
                    "list_sessions": lambda: store.list_sessions(),
                    "create_session": lambda: store.create_session(
                        SessionRecord(id="t", agent="mock")
                    ),
                }
                for name, call in calls.items():
                    with pytest.raises(StoreUnavailable):
                        await call()
                        pytest.fail(f"{name} did not fail")
                proxy.up()
                await store.append("s", [_item(2)])
                assert [e.data["item"]["item_id"] for e in await store.read("s")] == ["i0", "i2"]
    finally:
        await drop_schema(schema)


async def test_sqlite_on_a_full_disk_raises_store_unavailable_then_appends_again() -> None:
    with small_disk() as disk:
        async with await open_store(sqlite_url(disk / "store.db")) as store:
            await store.create_session(SessionRecord(id="s", agent="mock"))
            await store.append("s", [_item(0)])
            filler = fill_disk(disk)
            # More than the WAL's free pages: the WAL must grow on the full disk.
            big = {"item_id": "i0", "delta": os.urandom(64 * 1024).hex()}
            with pytest.raises(StoreUnavailable) as raised:
                for _ in range(50):
                    await store.append("s", [EventDraft(type="item.delta", data=big)])
            assert "full" in str(raised.value) or "I/O" in str(raised.value)
            assert isinstance(raised.value, StoreError)
            written = await store.read("s")
            filler.unlink()
            await store.append("s", [_item(99)])
            events = await store.read("s")
            assert events[: len(written)] == written and len(events) == len(written) + 1
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
