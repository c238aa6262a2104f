"""The kit's ``CuttingProxy`` in front of MariaDB: a MySQL store whose connections are cut says
``StoreUnavailable`` (never an asyncmy error), then reconnects, its stream whole."""

from __future__ import annotations

from urllib.parse import urlsplit

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, StoreUnavailable, open_store
from sandbox_agent.testing.consistency import check_events
from sandbox_agent.testing.faults import CuttingProxy


def _item(n: int) -> EventDraft:
    return EventDraft(type="item.started", data={"item": {"item_id": f"i{n}"}})


async def test_a_cut_mysql_connection_is_store_unavailable_then_the_store_reconnects(
    mysql_url: str,
) -> None:
    target = urlsplit(mysql_url)
    async with CuttingProxy(target.port or 3306, target.hostname or "127.0.0.1") as proxy:
        proxied = target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}").geturl()
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
                except StoreUnavailable as exc:
                    assert f"127.0.0.1:{proxy.port}" in str(exc)
                    outcomes.append("unavailable")
            assert outcomes[-1] == "ok", outcomes
            assert proxy.connections > connections  # new connections, through the proxy
            events = await store.read("s")
    async with await open_store(mysql_url) as store:
        assert await store.read("s") == events  # what the proxied store saw is what is stored
    check_events(events)
    assert len(events) == 1 + outcomes.count("ok")
