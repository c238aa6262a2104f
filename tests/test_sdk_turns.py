"""Turns seen from the SDK: ``wait()`` when no turn runs, ``wait(timeout)``, ``turn_running``
against the replayed ``status``, and prompts sent with ``if_idle``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent import SandboxAgent, SandboxAgentError, SandboxAgentSync
from sandbox_agent.sdk import Session
from sandbox_agent.sdk.session import TurnResult
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sdk-turns")
    proc = ServerProcess(f"sqlite:///{tmp / 'server.db'}", tmp / "server.log", mock_delay_ms=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.kill()


@pytest.fixture
async def sdk(server: ServerProcess) -> AsyncIterator[SandboxAgent]:
    async with await SandboxAgent.connect(server.url) as client:
        yield client


async def _answer_all(session: Session, result: TurnResult) -> TurnResult:
    """Answer every pending permission (``once``) until the turn ends."""
    while result.end_reason is None:
        for permission in (await session.state()).pending_permissions.values():
            await session.reply_permission(permission.permission_id, "once")
        result = await session.wait(timeout=10)
    return result


async def test_wait_returns_at_once_when_no_turn_runs(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    empty = await asyncio.wait_for(session.wait(), 5)  # no turn yet: an empty result
    assert empty.events == [] and empty.items == [] and empty.text == ""
    assert empty.end_reason is None and not session.turn_running
    done = await session.prompt(OK_PROMPT)
    # The turn is over: wait() does not block, it gives the last turn's result again.
    again = await asyncio.wait_for(session.wait(), 5)
    assert again.text == "OK" and again.end_reason == "completed"
    assert [e.event_id for e in again.events] == [e.event_id for e in done.events]
    assert (await asyncio.wait_for(session.wait(timeout=5), 5)).text == "OK"


async def test_wait_on_a_handle_reopened_from_the_store_returns_the_last_turn_at_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'backend.db'}"
    async with await SandboxAgent.connect(server.url, store=store) as sdk:
        session = await sdk.create_session("reopened", agent="mock")
        await session.prompt("echo still here")
    async with await SandboxAgent.connect(server.url, store=store) as sdk:
        session = await sdk.resume_session("reopened")
        assert not session.turn_running
        result = await asyncio.wait_for(session.wait(), 5)
        assert result.text == "still here" and result.end_reason == "completed"


async def test_wait_follows_a_sent_prompt_even_before_its_turn_is_stored(
    sdk: SandboxAgent,
) -> None:
    session = await sdk.create_session(agent="mock")
    await session.send("markdown")
    assert session.turn_running  # the prompt was accepted: its turn runs
    result = await asyncio.wait_for(session.wait(), 20)
    assert result.end_reason == "completed" and "End of markdown demo." in result.text
    assert result.events[0].type == "turn.started"
    assert not session.turn_running


async def test_turn_running_is_true_while_a_turn_is_open_and_status_says_what_it_does(
    sdk: SandboxAgent,
) -> None:
    session = await sdk.create_session(agent="mock")
    assert not session.turn_running and (await session.state()).status == "idle"
    await session.send("markdown")
    async for event in session.events():
        if event.type == "item.delta":  # the turn streams: running
            break
    state = await session.state()
    assert session.turn_running and state.status == "running" and state.open_turn is not None
    await session.wait()

    result = await session.prompt("permission")
    assert result.end_reason is None and result.pending_permission is not None
    # Waiting for an answer: the turn is still open, the status says why it does not move.
    state = await session.state()
    assert session.turn_running and state.status == "awaiting_input"
    assert state.open_turn is not None
    result = await _answer_all(session, result)
    assert result.end_reason == "completed"
    assert not session.turn_running and (await session.state()).status == "idle"


async def test_wait_times_out_and_the_next_wait_follows_the_same_turn(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    result = await session.prompt("permission")
    assert result.end_reason is None
    # The mock asks several permissions; wait() stops at each one that is stored, then, with
    # nothing more to come before an answer, times out.
    for _ in range(10):
        try:
            result = await session.wait(timeout=0.3)
        except TimeoutError:
            break
        assert result.end_reason is None
    else:
        pytest.fail("wait(timeout=0.3) never timed out while the turn waited for answers")
    assert session.turn_running and (await session.state()).status == "awaiting_input"
    result = await _answer_all(session, result)
    assert result.end_reason == "completed" and not session.turn_running


class _RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport, keeping the JSON body of every prompt sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.prompts: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/messages"):
            self.prompts.append(json.loads(request.content))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_if_idle_asks_the_server_to_refuse_a_prompt_while_a_turn_runs(
    server: ServerProcess,
) -> None:
    transport = _RecordingTransport()
    async with await SandboxAgent.connect(server.url, transport=transport) as sdk:
        session = await sdk.create_session(agent="mock")
        result = await session.prompt("permission")
        assert result.end_reason is None and session.turn_running
        with pytest.raises(SandboxAgentError) as refused:
            await session.send(OK_PROMPT, if_idle=True)
        assert refused.value.status == 409 and refused.value.name == "turn_in_progress"
        await _answer_all(session, result)
        assert (await session.prompt(OK_PROMPT, if_idle=True)).text == "OK"
    # Only a prompt sent with if_idle carries the field (a server that queues prompts
    # sent while a turn runs refuses these instead).
    assert [body.get("ifIdle") for body in transport.prompts] == [None, True, True]
    assert all("ifIdle" not in body for body in transport.prompts[:1])


def test_the_sync_facade_tells_whether_a_turn_runs_and_waits_with_a_timeout(
    server: ServerProcess,
) -> None:
    with SandboxAgentSync.connect(server.url) as sdk:
        session = sdk.create_session(agent="mock")
        assert not session.turn_running
        assert session.wait(timeout=5).events == []  # no turn: at once
        result = session.prompt("permission")
        assert result.end_reason is None and session.turn_running
        with pytest.raises(TimeoutError):
            for _ in range(10):
                session.wait(timeout=0.3)
        while result.end_reason is None:
            for permission in session.state().pending_permissions.values():
                session.reply_permission(permission.permission_id, "once")
            result = session.wait(timeout=10)
        assert result.end_reason == "completed" and not session.turn_running
        assert session.wait(timeout=5).end_reason == "completed"  # idle: the last turn


async def test_a_prompt_sent_while_a_turn_runs_waits_for_its_own_turn(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    first = await session.prompt("permission")
    assert first.end_reason is None  # waits for its two answers
    await session.send("echo mine")  # what prompt() does first; then it waits, as here
    assert session.queue_id == "q_1"
    second = asyncio.ensure_future(session.wait())
    assert [p["message"] for p in await session.queued()] == ["echo mine"]
    for permission in (await session.state()).pending_permissions.values():
        await session.reply_permission(permission.permission_id, "once")
    result = await asyncio.wait_for(second, 10)
    # Its own turn, not the end of the turn it waited for.
    assert result.text == "mine" and result.end_reason == "completed"
    assert [e.type for e in result.events][:1] == ["turn.started"]
    assert session.queue_id is None and await session.queued() == []


async def test_a_queued_prompt_cancelled_before_it_started_ends_cancelled(
    sdk: SandboxAgent,
) -> None:
    session = await sdk.create_session(agent="mock")
    first = await session.prompt("permission")
    await session.send("echo never")
    assert session.queue_id == "q_1"
    await session.cancel_queued()
    result = await asyncio.wait_for(session.wait(), 10)
    assert result.end_reason == "cancelled" and result.text == ""
    assert [(e.type, e.data["reason"]) for e in result.events] == [("prompt.dequeued", "cancelled")]
    with pytest.raises(SandboxAgentError) as gone:
        await session.cancel_queued("q_1")
    assert gone.value.status == 404 and gone.value.name == "queued_prompt_not_found"
    await _answer_all(session, first)
