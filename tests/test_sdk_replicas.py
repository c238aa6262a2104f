"""Several backend replicas on one Postgres store: every replica lists, reads and follows every
session; mirrors of one session never duplicate an event, and a second restore is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox_agent import SandboxAgent
from sandbox_agent.events import UniversalEvent
from sandbox_agent.sdk import MirrorConflict, Session
from sandbox_agent.testing.consistency import assert_same_stream, server_events
from sandbox_agent.testing.databases import drop_schema, new_schema_name, pg_url, require_postgres
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[str]:
    require_postgres()
    schema = new_schema_name()
    try:
        yield pg_url(schema)
    finally:
        await drop_schema(schema)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "log", mock_delay_ms=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


async def _local(session: Session) -> list[UniversalEvent]:
    return [e async for e in session.events(follow=False)]


async def test_a_replica_follows_every_event_of_a_session_another_replica_mirrors(
    server: ServerProcess, pg: str
) -> None:
    async with (
        await SandboxAgent.connect(server.url, store=pg) as writer,
        await SandboxAgent.connect(server.url, store=pg) as reader,
    ):
        session = await writer.create_session("shared", agent="mock")
        assert [r.id for r in (await reader.list_sessions()).items] == ["shared"]
        followed: list[UniversalEvent] = []

        async def follow() -> None:
            watched = await reader.get_session("shared")  # no request: the store knows it
            async for event in watched.events():
                followed.append(event)
                if [e.type for e in followed].count("turn.ended") == 2:
                    return

        follower = asyncio.create_task(follow())
        await session.prompt("markdown")
        await session.prompt(OK_PROMPT)
        await asyncio.wait_for(follower, 15)  # LISTEN/NOTIFY woke it for each event
        local = await _local(session)
        assert_same_stream(local, await server_events(server.url, "shared", include_raw=True))
        assert followed == local


async def test_a_second_mirror_of_one_session_is_refused_and_stores_each_event_once(
    server: ServerProcess, pg: str
) -> None:
    async with (
        await SandboxAgent.connect(server.url, store=pg) as one,
        await SandboxAgent.connect(server.url, store=pg) as two,
    ):
        first = await one.create_session("twice", agent="mock")
        second = await two.resume_session("twice")  # a second mirror of the same stream
        await first.prompt("markdown")
        assert (await second.prompt(OK_PROMPT)).text == "OK"
        await first.prompt("tool")
        remote = await server_events(server.url, "twice", include_raw=True)
        for _ in range(200):
            if len(await _local(first)) == len(remote):
                break
            await asyncio.sleep(0.02)
        assert_same_stream(await _local(first), remote)
        assert first.mirror.error() is None and second.mirror.error() is None
        # One writer: the other mirror's appends were refused and it says so.
        mirrors = (first.mirror, second.mirror)
        assert sorted(m.standby for m in mirrors) == [False, True], [m.refused for m in mirrors]
        standby = next(m for m in mirrors if m.standby)
        assert standby.refused >= 1
        # Once refused, it wrote nothing: the writer stored every later event. (Before the
        # refusal both may store the same batch, the second append finding it stored, so
        # ``appended`` can count an event for both; the store holds it once: same_stream.)
        assert standby.took_over == 0
        assert first.mirror.appended + second.mirror.appended >= len(remote)


async def test_a_second_replica_restoring_the_same_lost_session_is_refused(
    server: ServerProcess, pg: str, tmp_path: Path
) -> None:
    async with (
        await SandboxAgent.connect(server.url, store=pg) as one,
        await SandboxAgent.connect(server.url, store=pg) as two,
    ):
        first = await one.create_session("contested", agent="mock")
        await first.prompt("echo keep this")
        second = await two.get_session("contested")
        server.stop()
        server.store_url = f"sqlite:///{tmp_path / 'new-sandbox.db'}"
        server.start()

        outcomes = await asyncio.gather(
            first.ensure_remote(), second.ensure_remote(), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, MirrorConflict)]
        assert len(refused) == 1, outcomes
        assert refused[0].status == 409 and refused[0].name == "mirror_conflict"
        assert "another replica" in refused[0].detail
        winner = first if outcomes[0] is None else second
        result = await winner.prompt("go on")
        assert "keep this" in result.text
        local = await _local(winner)
        assert [e.type for e in local].count("session.resumed") == 1
        assert [e.sequence for e in local] == list(range(1, len(local) + 1))
