"""The kit's HTTP faults: ``FaultyTransport`` under the SDK drops requests, loses answers and
cuts streams; the SDK's mirror still ends up holding the server's stream."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sandbox_agent import SandboxAgent
from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import assert_consistent
from sandbox_agent.testing.faults import FaultyTransport
from sandbox_agent.testing.server import ServerProcess, events_of

SSE = r"/events/sse$"


async def test_a_stream_cut_after_some_bytes_is_resumed_by_the_mirror(
    sandbox_server: ServerProcess,
) -> None:
    transport = FaultyTransport().cut_response(SSE, after_bytes=700, times=3)
    async with (
        await open_store("memory://") as store,
        await SandboxAgent.connect(sandbox_server.url, store=store, transport=transport) as sdk,
    ):
        session = await sdk.create_session("cut", agent="mock")
        result = await session.prompt("markdown")
        assert result.end_reason == "completed"
        await assert_consistent(store, sandbox_server.url, "cut")
        assert session.mirror is not None and session.mirror.reconnects >= 1
    assert transport.faults[0] == ("cut", "GET", "/v1/sessions/cut/events/sse")
    assert ("POST", "/v1/sessions/cut/messages") in transport.requests


async def test_streams_cut_at_a_chosen_moment_are_resumed_by_the_mirror(
    sandbox_server: ServerProcess,
) -> None:
    sandbox_server.mock_delay_ms = 5
    sandbox_server.restart()
    transport = FaultyTransport()
    async with (
        await open_store("memory://") as store,
        await SandboxAgent.connect(sandbox_server.url, store=store, transport=transport) as sdk,
    ):
        session = await sdk.create_session("moment", agent="mock")
        await session.send("markdown")
        cuts = 0
        while cuts == 0:  # the mirror's stream is open while the turn runs
            await asyncio.sleep(0.02)
            cuts = transport.cut_streams()
        assert (await session.wait()).end_reason == "completed"
        await assert_consistent(store, sandbox_server.url, "moment")
        assert session.mirror is not None and session.mirror.reconnects >= 1


async def test_a_dropped_request_is_not_applied_and_a_lost_answer_is(
    sandbox_server: ServerProcess,
) -> None:
    transport = FaultyTransport()
    async with (
        await open_store("memory://") as store,
        await SandboxAgent.connect(sandbox_server.url, store=store, transport=transport) as sdk,
    ):
        session = await sdk.create_session("drops", agent="mock")
        transport.drop("/messages$", method="POST")
        with pytest.raises(httpx.ConnectError, match="dropped by FaultyTransport"):
            await session.send("echo one")
        with sandbox_server.client() as client:
            assert [e["type"] for e in events_of(client, "drops")] == ["session.started"]

        transport.lose_response("/messages$", method="POST")
        with pytest.raises(httpx.ReadError, match="lost by FaultyTransport"):
            await session.send("echo two")
        result = await session.wait()  # the server took it: its turn runs and is mirrored
        assert result.text == "two"
        await assert_consistent(store, sandbox_server.url, "drops")

        transport.drop(times=None)
        transport.clear()  # planned faults forgotten: requests go through again
        assert (await session.prompt("echo three")).text == "three"
    assert [kind for kind, _, _ in transport.faults] == ["drop", "lose"]
