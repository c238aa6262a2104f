"""The persistence mirror: the local copy equals the server's stream, whatever the network did.

A TCP proxy between the SDK and a real server resets every connection at random moments while
long mock turns stream; the SDK reconnects with ``Last-Event-ID`` and the local store ends up
holding exactly the server's stream (no gap, no duplicate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent import SandboxAgent
from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import assert_same_stream, server_events
from sandbox_agent.testing.faults import CuttingProxy
from sandbox_agent.testing.server import ServerProcess

TURNS = ("markdown", "tool", "markdown")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sdk-mirror")
    proc = ServerProcess(f"sqlite:///{tmp / 'server.db'}", tmp / "server.log", mock_delay_ms=4)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.kill()


async def _mirror_through_cuts(
    server: ServerProcess, store_url: str, cuts: list[list[float]]
) -> tuple[str, int]:
    """Run ``TURNS`` through a proxy that cuts at ``cuts[turn]`` seconds into each turn;
    returns the session id and how many reconnects the mirror made."""
    proxy = await CuttingProxy(server.port).start()
    store = await open_store(store_url)
    try:
        async with await SandboxAgent.connect(proxy.url, store=store) as sdk:
            session = await sdk.create_session(agent="mock")
            for prompt, delays in zip(TURNS, cuts, strict=True):
                await session.send(prompt)  # requests are not cut, only the streams

                async def cutter(delays: list[float] = delays) -> None:
                    for delay in sorted(delays):
                        await asyncio.sleep(delay)
                        proxy.cut()

                cutting = asyncio.create_task(cutter())
                result = await session.wait()
                cutting.cancel()
                assert result.end_reason == "completed"
            local = [e async for e in session.events(follow=False)]
            assert_same_stream(local, await server_events(server.url, session.id, include_raw=True))
            return session.id, session.mirror.reconnects
    finally:
        await store.close()
        await proxy.close()


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(
        st.lists(st.floats(min_value=0.0, max_value=0.08), max_size=4),
        min_size=len(TURNS),
        max_size=len(TURNS),
    )
)
def test_the_local_copy_equals_the_server_stream_whatever_the_cuts(
    server: ServerProcess, cuts: list[list[float]]
) -> None:
    asyncio.run(_mirror_through_cuts(server, "memory://", cuts))


def test_a_cut_stream_is_resumed_into_sqlite_without_gap_or_duplicate(
    server: ServerProcess, tmp_path: Path
) -> None:
    cuts = [[0.005, 0.02, 0.04], [0.01], [0.0, 0.03, 0.06]]
    _, reconnects = asyncio.run(
        _mirror_through_cuts(server, f"sqlite:///{tmp_path / 'local.db'}", cuts)
    )
    assert reconnects >= 1


async def test_events_follow_the_mirror_live(server: ServerProcess) -> None:
    async with await SandboxAgent.connect(server.url) as sdk:
        session = await sdk.create_session(agent="mock")
        seen: list[str] = []

        async def follow() -> None:
            async for event in session.events():
                seen.append(event.type)
                if event.type == "turn.ended":
                    return

        follower = asyncio.create_task(follow())
        await session.prompt("markdown")
        await asyncio.wait_for(follower, 10)
        assert seen[0] == "session.started" and seen.count("turn.ended") == 1
        assert seen.count("item.delta") >= 8
