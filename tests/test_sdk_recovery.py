"""Recovery: a backend killed mid-turn resumes its mirror; a lost sandbox is restored by
replay into the same local session."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_agent import SandboxAgent, SandboxAgentError
from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay.restore import HEADER
from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.consistency import assert_same_stream, server_events
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess

BACKEND = Path(__file__).with_name("sdk_backend.py")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "server.log")
    try:
        yield proc
    finally:
        proc.kill()


async def _wait_local(store_url: str, session_id: str, events: int, timeout: float = 20) -> int:
    """Poll the backend's store (another process writes it) until it holds ``events``."""
    deadline = time.monotonic() + timeout
    async with await open_store(store_url) as store:
        while time.monotonic() < deadline:
            record = await store.get_session(session_id)
            if record is not None and record.last_sequence >= events:
                return record.last_sequence
            await asyncio.sleep(0.01)
    raise AssertionError(f"the backend stored fewer than {events} events in {timeout}s")


async def test_a_backend_killed_mid_turn_is_resumed_by_a_new_one_without_loss_or_double(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.mock_delay_ms = 40
    server.start()
    store_url = f"sqlite:///{tmp_path / 'backend.db'}"
    backend = await asyncio.create_subprocess_exec(
        sys.executable, str(BACKEND), server.url, store_url, "bk", "markdown"
    )
    try:
        stored = await _wait_local(store_url, "bk", 6)
    finally:
        backend.kill()  # SIGKILL, mid-turn
        await backend.wait()
    async with await open_store(store_url) as store:
        before = await store.read("bk")
    assert not any(e.type == "turn.ended" for e in before), "killed too late"
    assert len(before) >= stored

    async with await SandboxAgent.connect(server.url, store=store_url) as sdk:
        session = await sdk.resume_session("bk")
        result = await session.wait()  # the turn that was running when the backend died
        assert result.end_reason == "completed"
        assert "End of markdown demo." in result.text
        assert (await session.prompt(OK_PROMPT)).text == "OK"
        local = [e async for e in session.events(follow=False)]
    assert_same_stream(local, await server_events(server.url, "bk", include_raw=True))
    assert (await _state_anomalies(store_url, "bk")) == []


async def _state_anomalies(store_url: str, session_id: str) -> list[object]:
    from sandbox_agent.replay import state_at

    async with await open_store(store_url) as store:
        return list((await state_at(store, session_id)).anomalies)


async def _lose_sandbox(server: ServerProcess, tmp_path: Path) -> None:
    """Stop the server and start a new one on the same port with an empty store."""
    server.stop()
    server.store_url = f"sqlite:///{tmp_path / 'new-sandbox.db'}"
    server.start()


def _check_continued(local: list[UniversalEvent], remote: list[UniversalEvent]) -> int:
    """The local stream is one stream: 1..N, one session.started, a session.resumed
    {sandbox_replaced}, then the new server's stream (without its session.started) with
    local sequences continuing. Returns the sequence of the session.resumed."""
    assert [e.sequence for e in local] == list(range(1, len(local) + 1))
    assert [e.type for e in local].count("session.started") == 1
    assert len({e.event_id for e in local}) == len(local)
    resumed = [e for e in local if e.type == "session.resumed"]
    assert len(resumed) == 1
    mark = resumed[0]
    assert mark.data["reason"] == "sandbox_replaced" and mark.data["native_resume"] is False
    assert remote[0].type == "session.started"
    after = [e for e in local if e.sequence > mark.sequence]
    assert [e.event_id for e in after] == [e.event_id for e in remote[1:]]
    assert [e.sequence - mark.sequence + 1 for e in after] == [e.sequence for e in remote[1:]]
    for mine, theirs in zip(after, remote[1:], strict=True):
        assert mine.model_dump(exclude={"sequence"}) == theirs.model_dump(exclude={"sequence"})
    return mark.sequence


async def test_a_lost_sandbox_is_restored_by_replay_into_the_same_local_session(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.mock_delay_ms = 0
    server.start()
    store: EventStore = await open_store("memory://")
    try:
        async with await SandboxAgent.connect(server.url, store=store) as sdk:
            session = await sdk.create_session("lost", agent="mock", title="Lost")
            assert (await session.prompt("echo remember the blue whale")).text == (
                "remember the blue whale"
            )
            assert (await session.prompt(OK_PROMPT)).text == "OK"
            ended = await sdk.create_session("ended-before", agent="mock")
            await ended.terminate()
            async for event in ended.events():
                if event.type == "session.ended":
                    break
            await _lose_sandbox(server, tmp_path)
            with pytest.raises(SandboxAgentError) as refused:
                await ended.prompt("hello?")  # a terminated session is not brought back
            assert refused.value.status == 400

            result = await session.prompt("what did I ask you to remember?")
            # The mock echoes the whole prompt: the replay text came first.
            assert result.text.startswith(HEADER)
            assert "User: echo remember the blue whale" in result.text
            assert "Assistant: remember the blue whale" in result.text
            assert result.text.endswith("what did I ask you to remember?")
            assert (await session.prompt(OK_PROMPT)).text == "OK"  # replayed only once
            local = [e async for e in session.events(follow=False)]
            # The new server went on numbering items and turns: one clean stream.
            state = await session.state()
            assert state.anomalies == []
            assert len({item.item_id for item in state.items}) == len(state.items)
            turn_ids = [turn.turn_id for turn in state.turns]
            assert len(turn_ids) == 4 and len(set(turn_ids)) == 4, turn_ids
        mark = _check_continued(local, await server_events(server.url, "lost", include_raw=True))
        resumed = local[mark - 1]
        assert resumed.data["replayed_events"] == 4  # two prompts and two answers
        record = await store.get_session("lost")
        assert record is not None and record.init["title"] == "Lost"
    finally:
        await store.close()


async def test_a_restore_owed_to_the_next_prompt_survives_a_backend_restart(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.mock_delay_ms = 0
    server.start()
    store_url = f"sqlite:///{tmp_path / 'backend.db'}"
    async with await SandboxAgent.connect(server.url, store=store_url) as sdk:
        session = await sdk.create_session("owed", agent="mock")
        await session.prompt("echo the password is swordfish")
    await _lose_sandbox(server, tmp_path)
    async with await SandboxAgent.connect(server.url, store=store_url) as sdk:
        await sdk.resume_session("owed")  # restores the remote session, no prompt yet
    async with await SandboxAgent.connect(server.url, store=store_url) as sdk:
        session = await sdk.get_session("owed")
        result = await session.prompt("and now?")
        assert result.text.startswith(HEADER) and "swordfish" in result.text
        local = [e async for e in session.events(follow=False)]
    _check_continued(local, await server_events(server.url, "owed", include_raw=True))
