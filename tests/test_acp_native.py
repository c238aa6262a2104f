"""Our native adapters behind the ACP endpoint (``native:<agent>``, docs/acp.md), through a real
server process with the mock adapter (``native:mock``): prompts answered at the turn's end with
the agent's words as ``session/update`` chunks, tool calls, permission requests answered by the
client, cancel, the agent choice, and the universal events each server's stream holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents.acp_native import NativeAcpPeer
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import EventDraft
from sandbox_agent.testing.consistency import check_store
from sandbox_agent.testing.server import ServerProcess, events_of, problem
from test_acp_endpoint import post, prompt, rpc

from helpers.fake_npm import path_without_agents


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("acp-native")
    (directory / "agents").mkdir()
    env = {  # no real agent, whatever this machine has installed
        "SANDBOX_AGENT_AGENTS_DIR": str(directory / "agents"),
        "PATH": path_without_agents(),
        "SANDBOX_AGENT_TOKEN": "",
    }
    process = ServerProcess(
        f"sqlite:///{directory / 'server.db'}", directory / "server.log", env=env
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
    check_store(process.store_url)  # every stream passes the replay check


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def start(client: httpx.Client, server_id: str, cwd: Path) -> str:
    r = post(
        client, server_id, rpc(1, "initialize", protocolVersion=1), params={"agent": "native:mock"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["agentCapabilities"]["loadSession"] is True
    r = post(client, server_id, rpc(2, "session/new", cwd=str(cwd), mcpServers=[]))
    assert r.status_code == 200, r.text
    session: str = r.json()["result"]["sessionId"]
    return session


def frames_until(
    client: httpx.Client, server_id: str, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The envelopes of the server's stream from its start up to the first one ``done``
    accepts (which the stream is sure to hold: a stuck test fails by its timeout)."""
    envelopes: list[dict[str, Any]] = []
    headers = {"Accept": "text/event-stream"}
    with client.stream("GET", f"/v1/acp/{server_id}", headers=headers, timeout=20) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data:"):
                envelopes.append(json.loads(line.removeprefix("data:").strip()))
                if done(envelopes[-1]):
                    return envelopes
    raise AssertionError(f"the stream ended first: {envelopes}")


def answer_to(request_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("id") == request_id and "method" not in e


def updates(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["params"]["update"] for e in frames if e.get("method") == "session/update"]


def test_a_prompt_is_answered_at_the_end_of_its_turn_with_the_words_as_chunks(
    client: httpx.Client, tmp_path: Path
) -> None:
    session = start(client, "n-echo", tmp_path)
    assert session == "mock-mock-" + session.removeprefix("mock-mock-")  # the mock's native id
    r = post(client, "n-echo", prompt(3, session, "echo hello there"))
    assert r.status_code == 200, r.text
    assert r.json() == {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}
    frames = frames_until(client, "n-echo", answer_to(3))
    chunks = [u for u in updates(frames) if u["sessionUpdate"] == "agent_message_chunk"]
    assert "".join(c["content"]["text"] for c in chunks) == "hello there"
    events = events_of(client, "acp-n-echo")
    said = [
        e["data"]["item"]["content"][0]["text"]
        for e in events
        if e["type"] == "item.completed" and e["data"]["item"]["role"] == "assistant"
    ]
    assert said == ["hello there"]
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == ["completed"]


def test_a_tool_call_and_its_result_are_tool_call_updates(
    client: httpx.Client, tmp_path: Path
) -> None:
    session = start(client, "n-tool", tmp_path)
    r = post(client, "n-tool", prompt(3, session, "tool"))
    assert r.json()["result"] == {"stopReason": "end_turn"}
    frames = frames_until(client, "n-tool", answer_to(3))
    kinds = [(u["sessionUpdate"], u.get("status")) for u in updates(frames)]
    assert ("tool_call", "in_progress") in kinds and ("tool_call_update", "failed") in kinds
    events = events_of(client, "acp-n-tool")
    items = [e["data"]["item"]["kind"] for e in events if e["type"] == "item.completed"]
    assert "tool_call" in items and "tool_result" in items


def test_permission_requests_go_to_the_client_and_its_answers_to_the_agent(
    client: httpx.Client, tmp_path: Path
) -> None:
    session = start(client, "n-perm", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        turn = pool.submit(post, client, "n-perm", prompt(3, session, "permission"))
        asked: list[dict[str, Any]] = []

        def both_asked(envelope: dict[str, Any]) -> bool:
            if envelope.get("method") == "session/request_permission":
                asked.append(envelope)
            return len(asked) == 2

        frames_until(client, "n-perm", both_asked)
        assert [o["kind"] for o in asked[0]["params"]["options"]] == [
            "allow_once",
            "allow_always",
            "reject_once",
        ]
        for request, option in zip(asked, ("allow_once", "reject_once"), strict=True):
            outcome = {"outcome": {"outcome": "selected", "optionId": option}}
            answer = {"jsonrpc": "2.0", "id": request["id"], "result": outcome}
            assert post(client, "n-perm", answer).status_code == 202
        assert turn.result(timeout=20).json()["result"] == {"stopReason": "end_turn"}
    events = events_of(client, "acp-n-perm")
    resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
    assert sorted(resolved) == ["accept", "reject"]  # the endpoint's record of the answers


def test_a_cancel_ends_the_prompt_cancelled(client: httpx.Client, tmp_path: Path) -> None:
    session = start(client, "n-cancel", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        # The mock's permission turn waits for answers: it runs until cancelled.
        turn = pool.submit(post, client, "n-cancel", prompt(3, session, "permission"))
        frames_until(client, "n-cancel", lambda e: e.get("method") == "session/request_permission")
        cancel = {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session}}
        assert post(client, "n-cancel", cancel).status_code == 202
        assert turn.result(timeout=20).json()["result"] == {"stopReason": "cancelled"}
    events = events_of(client, "acp-n-cancel")
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == ["cancelled"]


def test_the_agent_choice(client: httpx.Client) -> None:
    r = post(client, "n-bad", rpc(1, "initialize"), params={"agent": "native:nope"})
    problem(r, 400, "unsupported_agent")
    # No agent CLI on this server: a native adapter needs its CLI as any session does.
    for agent in ("native:claude", "amp"):
        r = post(client, f"n-{agent[-3:]}", rpc(1, "initialize"), params={"agent": agent})
        assert problem(r, 404, "agent_not_installed")["agent"] in ("claude", "amp")
    listed = json.dumps(client.get("/v1/acp").json())
    assert "n-bad" not in listed and "n-ude" not in listed


def test_after_a_restart_the_session_is_loaded_and_goes_on(tmp_path: Path) -> None:
    process = ServerProcess(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log")
    process.start()
    try:
        with process.client() as client:
            session = start(client, "n-restart", tmp_path)
            assert post(client, "n-restart", prompt(3, session, "echo one")).is_success
        process.kill()  # SIGKILL: the adapter dies with the server
        process.start()
        with process.client() as client:
            # The endpoint gives the new adapter initialize and session/load of that session.
            r = post(client, "n-restart", prompt(4, session, "echo two"))
            assert r.json()["result"] == {"stopReason": "end_turn"}, r.text
            events = events_of(client, "acp-n-restart")
            loads = [
                e["data"]["message"]
                for e in events
                if e["type"] == "acp.message" and e["data"].get("restore")
            ]
            assert [m.get("method") for m in loads if "method" in m] == [
                "initialize",
                "session/load",
            ]
            said = [
                e["data"]["item"]["content"][0]["text"]
                for e in events
                if e["type"] == "item.completed" and e["data"]["item"]["role"] == "assistant"
            ]
            assert said == ["one", "two"]
    finally:
        process.stop()
    check_store(process.store_url)


async def test_a_late_input_and_the_call_a_permission_is_about_reach_the_client(
    tmp_path: Path,
) -> None:
    """What OpenCode's adapter emits (``tests/test_agents_opencode_e2e.py`` runs it for real):
    a call started with an empty input, a permission naming the call (``tool.callID``), the
    input filled in at completion. The client gets the call, a request whose ``toolCallId`` is
    the call's, and the input as a ``tool_call_update``; a permission about a call it was not
    told of names the permission."""
    delivered: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def deliver(envelope: dict[str, Any]) -> None:
        delivered.append(envelope)
        answered.set()

    peer = NativeAcpPeer("mock", AgentSettings(mock_delay_ms=0), str(tmp_path), deliver)
    try:
        await peer.send(rpc(1, "session/new", cwd=str(tmp_path)))
        await asyncio.wait_for(answered.wait(), 30)
        session_id = delivered.pop()["result"]["sessionId"]

        def call(event_type: str, arguments: str) -> EventDraft:
            part = {"type": "tool_call", "name": "bash", "arguments": arguments, "call_id": "c1"}
            item = {"item_id": "i1", "kind": "tool_call", "role": "assistant", "content": [part]}
            return EventDraft(type=event_type, data={"item": item})

        def permission(permission_id: str, call_id: str) -> EventDraft:
            data = {
                "permission_id": permission_id,
                "action": "bash",
                "status": "requested",
                "metadata": {"tool": {"callID": call_id}, "patterns": ["ls"]},
            }
            return EventDraft(type="permission.requested", data=data)

        command = json.dumps({"command": "ls"})
        drafts = [call("item.started", "{}"), permission("p1", "c1"), permission("p2", "c9")]
        await peer._emitted(peer._sessions[session_id], [*drafts, call("item.completed", command)])
        started, asked, other, late = delivered
        assert started["params"]["update"] == {
            "sessionUpdate": "tool_call",
            "toolCallId": "c1",
            "title": "bash",
            "kind": "other",
            "status": "in_progress",
            "rawInput": {},
        }
        assert asked["method"] == "session/request_permission"
        assert asked["params"]["toolCall"] == {
            "toolCallId": "c1",
            "title": "bash",
            "rawInput": {"tool": {"callID": "c1"}, "patterns": ["ls"]},
        }
        assert other["params"]["toolCall"]["toolCallId"] == "p2"
        assert late["params"]["update"] == {
            "sessionUpdate": "tool_call_update",
            "toolCallId": "c1",
            "rawInput": {"command": "ls"},
        }
    finally:
        await peer.close()
