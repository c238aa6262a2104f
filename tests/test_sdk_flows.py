"""The SDK against a real server process: prompts, answers, cancel, terminate, errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox_agent import SandboxAgent, SandboxAgentError, SandboxAgentSync
from sandbox_agent.events import UniversalEvent
from sandbox_agent.sdk import Session
from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import assert_same_stream, server_events
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess

TOKEN = "sdk-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sdk-flows")
    proc = ServerProcess(
        f"sqlite:///{tmp / 'server.db'}",
        tmp / "server.log",
        args=("--token", TOKEN),
        mock_delay_ms=2,
    ).start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.kill()


@pytest.fixture
async def sdk(server: ServerProcess) -> AsyncIterator[SandboxAgent]:
    async with await SandboxAgent.connect(server.url, token=TOKEN) as client:
        yield client


async def _local(session: Session) -> list[UniversalEvent]:
    return [e async for e in session.events(follow=False)]


async def test_prompt_returns_the_agents_final_text(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    result = await session.prompt(OK_PROMPT)
    assert result.text == "OK"
    assert result.end_reason == "completed"
    assert result.pending_permission is None and result.pending_question is None
    roles = [item.role for item in result.items]
    assert roles[0] == "user" and "assistant" in roles
    assert result.events[-1].type == "turn.ended"


async def test_turns_follow_one_another_and_the_state_counts_them(
    sdk: SandboxAgent, server: ServerProcess
) -> None:
    session = await sdk.create_session("multi-turn", agent="mock")
    texts = [(await session.prompt(f"echo turn {n}")).text for n in range(1, 4)]
    assert texts == ["turn 1", "turn 2", "turn 3"]
    state = await session.state()
    assert len(state.turns) == 3 and state.status == "idle" and state.anomalies == []
    assert_same_stream(
        await _local(session), await server_events(server.url, session.id, TOKEN, include_raw=True)
    )


async def test_permission_requests_wait_for_answers_and_the_turn_then_completes(
    sdk: SandboxAgent,
) -> None:
    session = await sdk.create_session(agent="mock")
    result = await session.prompt("permission")
    answered = []
    while result.end_reason is None:
        pending = result.pending_permission
        assert pending is not None
        await session.reply_permission(pending.permission_id, "once")
        answered.append(pending.permission_id)
        result = await session.wait()
    assert result.end_reason == "completed"
    assert len(answered) == 2
    state = await session.state()
    assert sorted(state.resolved_permissions) == sorted(answered)
    assert state.pending_permissions == {}


async def test_questions_are_answered_or_rejected(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    result = await session.prompt("question")
    first = result.pending_question
    assert first is not None and first.options
    await session.reply_question(first.question_id, [[first.options[0]]])
    result = await session.wait()
    second = result.pending_question
    assert second is not None and second.question_id != first.question_id
    await session.reject_question(second.question_id)
    result = await session.wait()
    assert result.end_reason == "completed"
    resolved = (await session.state()).resolved_questions
    assert resolved[first.question_id].status == "answered"
    assert resolved[second.question_id].status == "rejected"


async def test_cancel_ends_the_running_turn_as_cancelled(server: ServerProcess) -> None:
    async with await SandboxAgent.connect(server.url, token=TOKEN) as sdk:
        session = await sdk.create_session(agent="mock")
        await session.send("markdown")
        await session.cancel()
        result = await session.wait()
        assert result.end_reason == "cancelled"
        assert (await session.prompt(OK_PROMPT)).text == "OK"  # the session goes on


async def test_terminate_ends_the_session_and_later_prompts_are_refused(
    sdk: SandboxAgent,
) -> None:
    session = await sdk.create_session(agent="mock")
    await session.prompt(OK_PROMPT)
    await session.terminate()
    async for event in session.events(after=0):
        if event.type == "session.ended":
            assert event.data["reason"] == "terminated"
            break
    with pytest.raises(SandboxAgentError) as caught:
        await session.prompt(OK_PROMPT)
    assert caught.value.status == 400 and caught.value.name == "invalid_request"
    assert (await session.state()).status == "ended"


async def test_errors_carry_the_status_and_the_problem_details(
    sdk: SandboxAgent, server: ServerProcess
) -> None:
    with pytest.raises(SandboxAgentError) as caught:
        await sdk.get_session("no-such-session")
    assert caught.value.status == 404
    assert caught.value.name == "session_not_found"
    assert caught.value.problem["type"] == "urn:sandbox-agent:error:session_not_found"
    async with await SandboxAgent.connect(server.url, token="wrong") as bad:
        with pytest.raises(SandboxAgentError) as unauthorised:
            await bad.list_agents()
    assert unauthorised.value.status == 401 and unauthorised.value.name == "token_invalid"
    await sdk.create_session("taken", agent="mock")
    with pytest.raises(SandboxAgentError) as taken:
        await sdk.create_session("taken", agent="mock")
    assert taken.value.status == 409


async def test_sessions_are_listed_from_the_local_store_with_their_creation_params(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    async with await SandboxAgent.connect(server.url, token=TOKEN, store=url) as sdk:
        session = await sdk.create_session(
            "listed", agent="mock", agent_mode="plan", title="Listed", permission_mode="default"
        )
        await session.prompt(OK_PROMPT)
        assert [r.id for r in (await sdk.list_sessions()).items] == ["listed"]
        assert any(a["id"] == "mock" for a in await sdk.list_agents())
    async with await open_store(url) as store:
        record = await store.get_session("listed")
        assert record is not None
        assert record.init == {
            "agent": "mock",
            "agentMode": "plan",
            "permissionMode": "default",
            "title": "Listed",
        }
        assert record.last_sequence == len(
            await server_events(server.url, "listed", TOKEN, include_raw=True)
        )


async def test_resume_or_create_creates_once_then_resumes(sdk: SandboxAgent) -> None:
    first = await sdk.resume_or_create_session("roc", agent="mock")
    await first.prompt(OK_PROMPT)
    again = await sdk.resume_or_create_session("roc", agent="mock")
    assert again is first
    async with await SandboxAgent.connect(sdk.base_url, token=TOKEN) as other:
        adopted = await other.resume_or_create_session("roc", agent="mock")
        assert (await adopted.prompt("echo adopted")).text == "adopted"
        assert len((await adopted.state()).turns) == 2  # the whole stream was mirrored


async def test_delete_session_removes_it_on_the_server_and_locally(sdk: SandboxAgent) -> None:
    session = await sdk.create_session(agent="mock")
    await session.prompt(OK_PROMPT)
    await sdk.delete_session(session.id)
    assert await sdk.store.get_session(session.id) is None
    with pytest.raises(SandboxAgentError) as caught:
        await sdk.get_session(session.id)
    assert caught.value.status == 404


async def test_start_runs_an_embedded_server_and_leaves_no_process_behind() -> None:
    sdk = await SandboxAgent.start(mock_delay_ms=0)
    try:
        assert sdk.server is not None and sdk.server.proc is not None
        pid = sdk.server.proc.pid
        assert sdk.base_url.startswith("http://127.0.0.1:")
        session = await sdk.create_session(agent="mock")
        assert (await session.prompt(OK_PROMPT)).text == "OK"
    finally:
        await sdk.close()
    await asyncio.sleep(0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # neither the server nor anything of its process group is left
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_sync_facade_runs_the_same_flows(server: ServerProcess) -> None:
    with SandboxAgentSync.connect(server.url, token=TOKEN) as sdk:
        session = sdk.create_session(agent="mock")
        result = session.prompt(OK_PROMPT)
        assert result.text == "OK"
        events = session.events()
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert session.state().status == "idle"
        assert sdk.list_sessions().items[0].id == session.id
        followed = []
        for event in session.iter_events():
            followed.append(event.type)
            if event.type == "turn.ended":
                break
        assert followed[0] == "session.started"


async def test_a_fork_is_made_on_the_server_and_held_in_the_local_store(
    sdk: SandboxAgent, server: ServerProcess
) -> None:
    source = await sdk.create_session(agent="mock")
    first = await source.prompt("echo the password is swordfish")
    await source.prompt("echo second answer")
    # At the end: the agent forks natively; the local store mirrors the fork from event 1.
    fork = await source.fork("sdk-fork-end")
    origin = fork.record.metadata["forked_from"]
    assert origin["sessionId"] == source.id and origin["nativeResume"] is True
    remote = await server_events(server.url, fork.id, TOKEN, include_raw=True)
    assert_same_stream(await _local(fork), remote)
    assert (await fork.prompt("echo third")).text == "third"
    # Before the end: a fresh agent session, the conversation restored by replay.
    at = first.events[-1].sequence
    earlier = await sdk.fork(source.id, at=at)
    assert earlier.id.startswith(f"{source.id}-fork-")
    assert earlier.record.metadata["forked_from"] == {
        "sessionId": source.id,
        "sequence": at,
        "nativeResume": False,
    }
    said = (await earlier.prompt("what was the password?")).text
    assert "swordfish" in said and "second answer" not in said
    for session in (fork, earlier):
        remote = await server_events(server.url, session.id, TOKEN, include_raw=True)
        assert_same_stream(await _local(session), remote)
    # The source is as it was.
    assert [e.type for e in await _local(source)][-1] == "turn.ended"
    with pytest.raises(SandboxAgentError) as taken:
        await sdk.fork(source.id, fork.id)
    assert taken.value.status == 409


def test_the_sync_facade_forks(server: ServerProcess) -> None:
    with SandboxAgentSync.connect(server.url, token=TOKEN) as sdk:
        session = sdk.create_session(agent="mock")
        session.prompt("echo one")
        fork = session.fork()
        assert fork.prompt("echo two").text == "two"
        assert sdk.fork(session.id, "sync-fork-2").state().resumes[0].reason == "forked"
