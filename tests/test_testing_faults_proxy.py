"""The kit's ``CuttingProxy`` in front of a database: a Postgres store whose connections are
cut says ``StoreUnavailable`` (never a driver's own error), then reconnects, its stream whole."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, StoreUnavailable, open_store
from sandbox_agent.testing.consistency import check_events
from sandbox_agent.testing.databases import (
    drop_schema,
    new_schema_name,
    pg_base_url,
    pg_url,
    require_postgres,
)
from sandbox_agent.testing.faults import CuttingProxy

pytestmark = pytest.mark.postgres


def _item(n: int) -> EventDraft:
    return EventDraft(type="item.started", data={"item": {"item_id": f"i{n}"}})


async def test_a_cut_postgres_connection_is_store_unavailable_then_the_store_reconnects() -> None:
    require_postgres()
    target = urlsplit(pg_base_url())
    schema = new_schema_name()
    direct = pg_url(schema)
    try:
        async with CuttingProxy(target.port or 5432, target.hostname or "127.0.0.1") as proxy:
            proxied = direct.replace(f"@{target.netloc.split('@')[-1]}", f"@127.0.0.1:{proxy.port}")
            async with await open_store(proxied) as store:
                await store.create_session(SessionRecord(id="s", agent="mock"))
                await store.append("s", [EventDraft(type="session.started")])
                assert proxy.cut() >= 1
                connections = proxy.connections
                outcomes = []
                for n in range(3):
                    try:
                        await store.append("s", [_item(n)])
                        outcomes.append("ok")
                    except StoreUnavailable:
                        outcomes.append("unavailable")
                assert outcomes[-1] == "ok", outcomes
                assert proxy.connections > connections  # new connections, through the proxy
                events = await store.read("s")
        async with await open_store(direct) as store:
            assert await store.read("s") == events  # what the proxied store saw is what is stored
        check_events(events)
        assert len(events) == 1 + outcomes.count("ok")
    finally:
        await drop_schema(schema)
