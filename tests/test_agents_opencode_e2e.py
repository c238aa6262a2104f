"""OpenCode end to end: a real ``sandbox-agent server`` process running the real ``opencode serve``
against the fake LLM on 127.0.0.1. Run with ``.venv/bin/pytest -m agents
tests/test_agents_opencode_e2e.py``.

Each test has its own ``HOME`` (OpenCode's SQLite database lives there; two servers must never
share one at once) and its own workspace with ``opencode.json`` (the session's ``directory``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from sandbox_agent.testing.consistency import check_store, check_stream
from sandbox_agent.testing.server import ServerProcess, events_of, wait_for

from helpers.acp_client import (
    AcpClient,
    answer_to,
    asks_permission,
    assert_loaded_after_restart,
    chunk_text,
    selected,
    updates,
)
from helpers.agent_env import offline_env, prepare_workspace, require_agent
from helpers.fake_llm import FakeLLM

pytestmark = pytest.mark.agents

SAW = re.compile(r"I saw (\d+) input message")
TURN_TIMEOUT = 60.0


@dataclass
class Env:
    server: ServerProcess
    workspace: Path
    llm: FakeLLM

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=TURN_TIMEOUT)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    require_agent("opencode")
    with FakeLLM() as llm:
        workspace = prepare_workspace(tmp_path / "ws", llm.url)
        server = ServerProcess(
            f"sqlite:///{tmp_path / 'store.db'}",
            tmp_path / "server.log",
            env=offline_env(llm.url, tmp_path / "home"),
            args=["--no-token", "--root", str(tmp_path)],  # the workspace lies inside the root
        )
        server.start()
        try:
            yield Env(server, workspace, llm)
        finally:
            try:
                server.stop(timeout=30)
            finally:
                server.kill()


def ask_for_bash(workspace: Path) -> None:
    """The project config makes every bash command ask (OpenCode's ``permission`` key)."""
    config = json.loads((workspace / "opencode.json").read_text())
    config["permission"] = {"bash": "ask"}
    (workspace / "opencode.json").write_text(json.dumps(config, indent=2))


def create(client: httpx.Client, session_id: str, workspace: Path, **body: Any) -> str:
    response = client.post(
        f"/v1/sessions/{session_id}",
        json={"agent": "opencode", "directory": str(workspace), **body},
    )
    assert response.status_code == 200, response.text
    native = response.json().get("nativeSessionId")
    assert isinstance(native, str) and native.startswith("ses_"), response.json()
    return native


def stream_turn(client: httpx.Client, session_id: str, message: str) -> list[dict[str, Any]]:
    """POST messages/stream: this turn's events (the server's keep-alive pings skipped)."""
    path = f"/v1/sessions/{session_id}/messages/stream"
    with connect_sse(client, "POST", path, json={"message": message}) as source:
        assert source.response.status_code == 200, source.response.read()
        return [json.loads(sse.data) for sse in source.iter_sse() if sse.data.strip()]


def completed_items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        e["data"]["item"]
        for e in events
        if e["type"] == "item.completed" and e["data"]["item"]["kind"] == kind
    ]


def assistant_text(events: list[dict[str, Any]]) -> str:
    items = [i for i in completed_items(events, "message") if i["role"] == "assistant"]
    return "\n".join(p["text"] for i in items for p in i["content"] if p["type"] == "text")


def saw(events: list[dict[str, Any]]) -> int:
    found = SAW.search(assistant_text(events))
    assert found, assistant_text(events)
    return int(found.group(1))


def ended(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"].get("reason") for e in events if e["type"] == "turn.ended"]


def no_unparsed(events: list[dict[str, Any]]) -> None:
    assert [e for e in events if e["type"] == "agent.unparsed"] == []


def wait_turn_end(client: httpx.Client, session_id: str, after: int) -> list[dict[str, Any]]:
    return wait_for(client, session_id, "turn.ended", after=after, timeout=TURN_TIMEOUT)


def test_plain_turn_then_history_carried(env: Env) -> None:
    with env.client() as client:
        create(client, "plain", env.workspace)
        first = stream_turn(client, "plain", "Say hello")
        assert ended(first) == ["completed"]
        assert "Hello from fake LLM" in assistant_text(first)
        second = stream_turn(client, "plain", "Say hello again")
        assert ended(second) == ["completed"]
        assert saw(second) > saw(first)
        events = events_of(client, "plain")
        # Modes come live from the running server (GET /agent): its primary agents + custom.
        modes = client.get("/v1/agents/opencode/modes")
        assert modes.status_code == 200, modes.text
        ids = [m["id"] for m in modes.json()["modes"]]
        assert {"build", "plan", "custom"} <= set(ids)
        assert "title" not in ids  # a hidden agent
        assert client.get("/v1/agents/opencode/models").status_code == 200
    check_stream(events)
    no_unparsed(events)
    # One user item per prompt (OpenCode's echo of the prompt is not a second one).
    users = [i for i in completed_items(events, "message") if i["role"] == "user"]
    assert [u["content"][0]["text"] for u in users] == ["Say hello", "Say hello again"]
    # The text streamed as deltas from OpenCode, not only the normaliser's synthetic one.
    deltas = [e for e in events if e["type"] == "item.delta" and not e["synthetic"]]
    assert deltas


def test_tool_turn_runs_the_command(env: Env) -> None:
    with env.client() as client:
        create(client, "tool", env.workspace)
        events = stream_turn(client, "tool", "CMD<<echo data > made_by_tool.txt>>")
        assert ended(events) == ["completed"]
        stored = events_of(client, "tool")
    assert (env.workspace / "made_by_tool.txt").read_text().strip() == "data"
    calls = completed_items(events, "tool_call")
    assert calls[0]["content"][0]["name"] == "bash"
    results = completed_items(events, "tool_result")
    assert results[0]["status"] == "completed"
    assert "Tool result received" in assistant_text(events)
    check_stream(stored)
    no_unparsed(stored)


def test_resume_after_server_restart(env: Env) -> None:
    with env.client() as client:
        native = create(client, "resume", env.workspace)
        first = stream_turn(client, "resume", "Say hello")
        assert ended(first) == ["completed"]
    env.server.stop(timeout=30)
    env.server.start()
    with env.client() as client:
        second = stream_turn(client, "resume", "Say hello again")
        assert ended(second) == ["completed"]
        assert saw(second) > saw(first)  # the history is OpenCode's own
        events = events_of(client, "resume")
        info = client.get("/v1/sessions/resume").json()
    assert info["nativeSessionId"] == native
    resumed = [e for e in events if e["type"] == "session.resumed"]
    assert resumed and resumed[0]["data"]["native_resume"] is True
    check_stream(events)
    no_unparsed(events)


def _permission_turn(env: Env, session_id: str, reply: str, target: str) -> list[dict[str, Any]]:
    ask_for_bash(env.workspace)
    with env.client() as client:
        create(client, session_id, env.workspace)
        before = events_of(client, session_id)[-1]["sequence"]
        sent = client.post(
            f"/v1/sessions/{session_id}/messages",
            json={"message": f"CMD<<echo data > {target}>>"},
        )
        assert sent.status_code == 204, sent.text
        events = wait_for(client, session_id, "permission.requested", before, TURN_TIMEOUT)
        request = next(e for e in events if e["type"] == "permission.requested")
        assert request["data"]["action"] == "bash"
        assert not (env.workspace / target).exists()
        answer = client.post(
            f"/v1/sessions/{session_id}/permissions/{request['data']['permission_id']}/reply",
            json={"reply": reply},
        )
        assert answer.status_code == 204, answer.text
        wait_turn_end(client, session_id, before)
        stored = events_of(client, session_id)
    check_stream(stored)
    no_unparsed(stored)
    assert ended(stored) == ["completed"]
    return stored


def test_permission_once_runs_the_command(env: Env) -> None:
    events = _permission_turn(env, "perm-once", "once", "allowed.txt")
    assert (env.workspace / "allowed.txt").read_text().strip() == "data"
    resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
    assert resolved == ["accept"]
    assert completed_items(events, "tool_result")[0]["status"] == "completed"


def test_permission_reject_blocks_the_command(env: Env) -> None:
    events = _permission_turn(env, "perm-reject", "reject", "refused.txt")
    time.sleep(0.5)
    assert not (env.workspace / "refused.txt").exists()
    resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
    assert resolved == ["reject"]
    assert completed_items(events, "tool_result")[0]["status"] == "failed"


def test_directories_keep_their_own_config(env: Env, tmp_path: Path) -> None:
    """One shared server, two directories: only the one whose opencode.json asks does ask."""
    asking = prepare_workspace(tmp_path / "asking", env.llm.url)
    ask_for_bash(asking)
    with env.client() as client:
        create(client, "free", env.workspace)
        create(client, "asks", asking)
        free = stream_turn(client, "free", "CMD<<echo data > free.txt>>")
        assert ended(free) == ["completed"]
        assert "permission.requested" not in [e["type"] for e in free]
        before = events_of(client, "asks")[-1]["sequence"]
        sent = client.post("/v1/sessions/asks/messages", json={"message": "CMD<<echo x > a.txt>>"})
        assert sent.status_code == 204
        events = wait_for(client, "asks", "permission.requested", before, TURN_TIMEOUT)
        request = next(e for e in events if e["type"] == "permission.requested")
        path = f"/v1/sessions/asks/permissions/{request['data']['permission_id']}/reply"
        assert client.post(path, json={"reply": "once"}).status_code == 204
        wait_turn_end(client, "asks", before)
        for session_id in ("free", "asks"):
            stored = events_of(client, session_id)
            check_stream(stored)
            no_unparsed(stored)
    assert (env.workspace / "free.txt").exists()
    assert (asking / "a.txt").exists()


def test_cancel_then_a_new_prompt(env: Env) -> None:
    with env.client() as client:
        create(client, "cancel", env.workspace)
        before = events_of(client, "cancel")[-1]["sequence"]
        sent = client.post("/v1/sessions/cancel/messages", json={"message": "SLOW please"})
        assert sent.status_code == 204
        wait_for(client, "cancel", "item.delta", before, TURN_TIMEOUT)
        started = time.monotonic()
        assert client.post("/v1/sessions/cancel/cancel").status_code == 204
        assert time.monotonic() - started < 20
        events = events_of(client, "cancel", offset=before)
        assert ended(events) == ["cancelled"]
        assert events[-1]["type"] == "turn.ended"
        time.sleep(1.5)  # the aborted turn's late events must not leak after the cancel
        assert events_of(client, "cancel", offset=before) == events
        after = stream_turn(client, "cancel", "Say hello")
        assert ended(after) == ["completed"]
        assert "Hello from fake LLM" in assistant_text(after)
        stored = events_of(client, "cancel")
    check_stream(stored)
    no_unparsed(stored)
    assert ended(stored) == ["cancelled", "completed"]
    assert "error" not in [e["type"] for e in stored]


def test_bypass_runs_without_asking(env: Env) -> None:
    """permissionMode bypass: the session's allow-all ruleset beats the project's "ask"."""
    ask_for_bash(env.workspace)
    with env.client() as client:
        create(client, "bypass", env.workspace, permissionMode="bypass")
        events = stream_turn(client, "bypass", "CMD<<echo data > bypassed.txt>>")
        assert ended(events) == ["completed"]
        stored = events_of(client, "bypass")
    assert (env.workspace / "bypassed.txt").read_text().strip() == "data"
    requested = [e for e in stored if e["type"] == "permission.requested"]
    assert requested == [], "OpenCode asked despite the allow-all session ruleset"
    check_stream(stored)
    no_unparsed(stored)


def _opencode_serve_pids(server: ServerProcess) -> list[int]:
    """The ``opencode serve`` processes this test's server started (its children)."""
    assert server.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.proc.pid and b" serve " in cmdline:
            found.append(int(entry.name))
    return found


def test_opencode_server_crash_ends_the_session_and_a_message_resumes_it(env: Env) -> None:
    with env.client() as client:
        create(client, "crash", env.workspace)
        first = stream_turn(client, "crash", "Say hello")
        assert ended(first) == ["completed"]
        before = events_of(client, "crash")[-1]["sequence"]
        pids = _opencode_serve_pids(env.server)
        assert len(pids) == 1, pids
        os.killpg(pids[0], signal.SIGKILL)  # its whole group: the CLI and what it started
        events = wait_for(client, "crash", "session.ended", before, TURN_TIMEOUT)
        errors = [e["data"] for e in events if e["type"] == "error"]
        assert errors and errors[0]["code"] == "opencode_server"
        assert events[-1]["data"]["reason"] == "error"
        second = stream_turn(client, "crash", "Say hello again")
        assert ended(second) == ["completed"]
        assert saw(second) > saw(first)  # a new opencode serve, the same native session
        stored = events_of(client, "crash")
    resumed = [e["data"]["reason"] for e in stored if e["type"] == "session.resumed"]
    assert resumed == ["reopened"]
    check_stream(stored)
    no_unparsed(stored)


def test_session_mcp_server_is_started_and_offered(env: Env, tmp_path: Path) -> None:
    """The session's ``mcp`` map reaches OpenCode (``POST /mcp``): the server is started and its
    tool is offered to the model."""
    marker = tmp_path / "mcp-marker.txt"
    script = Path(__file__).parent / "fixtures" / "agents" / "opencode-mcp-server.py"
    mcp = {
        "marker": {
            "type": "local",
            "command": [sys.executable, str(script)],
            "env": {"MCP_MARKER": str(marker)},
        }
    }
    with env.client() as client:
        create(client, "mcp", env.workspace, mcp=mcp)
        events = stream_turn(client, "mcp", "Say hello")
        assert ended(events) == ["completed"]
        stored = events_of(client, "mcp")
    check_stream(stored)
    no_unparsed(stored)
    assert "tools/list" in marker.read_text().split()
    offered = {
        tool.get("function", {}).get("name")
        for request in env.llm.requests
        if isinstance(request.get("body"), dict)
        for tool in request["body"].get("tools") or []
    }
    assert any(name and "ping" in name for name in offered), offered


def test_opencode_serve_answers_an_acp_client(env: Env) -> None:
    """``native:opencode`` on the ACP endpoint: our OpenCode adapter presented as ACP (no
    ``opencode acp`` involved): a prompt streamed back as chunks, then a bash command the ACP
    client refuses."""
    target = env.workspace / "acp_refused.txt"
    ask_for_bash(env.workspace)
    with env.client() as client:
        acp = AcpClient(client, "nat", "native:opencode")
        initialized = acp.request("initialize", protocolVersion=1)
        assert initialized["result"]["agentCapabilities"]["loadSession"] is True
        created = acp.request("session/new", cwd=str(env.workspace), mcpServers=[])
        session = created["result"]["sessionId"]
        assert session.startswith("ses_"), created
        hello = [{"type": "text", "text": "Say hello"}]
        asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=hello)
        envelopes = acp.until(answer_to(asked))
        assert envelopes[-1]["result"] == {"stopReason": "end_turn"}
        assert answer.result(timeout=TURN_TIMEOUT)["result"] == {"stopReason": "end_turn"}
        assert updates(envelopes, "agent_message_chunk")
        text = chunk_text(envelopes)
        assert "Hello from fake LLM" in text
        assert assistant_text(events_of(client, "acp-nat")) == text

        prompt = [{"type": "text", "text": f"CMD<<echo data > {target.name}>>"}]
        asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=prompt)
        permission = acp.until(asks_permission)[-1]
        assert permission["params"]["sessionId"] == session
        assert permission["params"]["toolCall"]["title"] == "bash"
        acp.answer(permission["id"], selected("reject_once"))
        assert answer.result(timeout=TURN_TIMEOUT)["result"] == {"stopReason": "end_turn"}
        envelopes = acp.until(answer_to(asked))
        # The request names the call the client was told of; OpenCode fills its input in later.
        call_id = permission["params"]["toolCall"]["toolCallId"]
        [call] = [u for u in updates(envelopes, "tool_call") if u["toolCallId"] == call_id]
        assert call["title"] == "bash"
        later = [u for u in updates(envelopes, "tool_call_update") if u["toolCallId"] == call_id]
        assert [u["rawInput"]["command"] for u in later if "rawInput" in u] == [
            f"echo data > {target.name}"
        ]
        assert [u["status"] for u in later if "status" in u] == ["failed"]
        assert not target.exists()
        events = events_of(client, "acp-nat")
    resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
    assert resolved == ["reject"]
    check_stream(events)


def test_a_fork_at_the_end_forks_the_session_and_one_before_it_replays(env: Env) -> None:
    """``POST .../fork``: at the source's end OpenCode forks its own session (``POST
    /session/{id}/fork``) into a new one, leaving the source's alone; at an earlier point a
    fresh OpenCode session gets the replay of the conversation up to there."""
    with env.client() as client:
        native = create(client, "src", env.workspace)
        first = stream_turn(client, "src", "Remember the word zebra-42")
        stream_turn(client, "src", "Remember the word yak-17")
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "same"})
        assert answer.status_code == 201, answer.text
        info = answer.json()
        assert info["forkedFrom"]["nativeResume"] is True
        assert info["nativeSessionId"].startswith("ses_") and info["nativeSessionId"] != native
        asked = len(env.llm.requests)
        assert ended(stream_turn(client, "same", "Which words?")) == ["completed"]
        sent = json.dumps([r["body"] for r in env.llm.requests[asked:]])
        # The history came from OpenCode's own forked session: no replay text in the prompt.
        assert "zebra-42" in sent and "yak-17" in sent and "Previous conversation" not in sent
        stream = events_of(client, "same")
        assert stream[-1]["native_session_id"] == info["nativeSessionId"]
        # The source goes on in its own session, which does not know the fork's turn.
        asked = len(env.llm.requests)
        stream_turn(client, "src", "Say hello")
        sent = json.dumps([r["body"] for r in env.llm.requests[asked:]])
        assert "Which words?" not in sent and "yak-17" in sent
        source = events_of(client, "src")
        assert source[-1]["native_session_id"] == native

        at = next(e for e in first if e["type"] == "turn.ended")["sequence"]
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "early", "at": at})
        assert answer.status_code == 201, answer.text
        assert answer.json()["forkedFrom"]["nativeResume"] is False
        asked = len(env.llm.requests)
        stream_turn(client, "early", "Which words?")
        sent = json.dumps([r["body"] for r in env.llm.requests[asked:]])
        assert "zebra-42" in sent and "yak-17" not in sent and "Previous conversation" in sent
        early = events_of(client, "early")
    for events in (stream, source, early):
        check_stream(events)
        no_unparsed(events)


def test_a_bypass_fork_keeps_running_without_asking(env: Env) -> None:
    """The copy OpenCode makes does not take its source's ruleset: a ``bypass`` fork is given
    it again, so the project's "ask" does not stop it."""
    ask_for_bash(env.workspace)
    with env.client() as client:
        create(client, "free", env.workspace, permissionMode="bypass")
        assert ended(stream_turn(client, "free", "Say hello")) == ["completed"]
        answer = client.post("/v1/sessions/free/fork", json={"sessionId": "free-fork"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["forkedFrom"]["nativeResume"] is True
        events = stream_turn(client, "free-fork", "CMD<<echo forked > forked.txt>>")
        assert ended(events) == ["completed"]
        stored = events_of(client, "free-fork")
    assert (env.workspace / "forked.txt").read_text().strip() == "forked"
    assert not [e for e in stored if e["type"] == "permission.requested"]
    check_stream(stored)
    no_unparsed(stored)


def turn_requests(llm: FakeLLM, after: int) -> list[dict[str, Any]]:
    """OpenCode's requests for its turns (with tools; not the title's) among the fake LLM's
    requests after the first ``after`` (its log is the module's: it holds the earlier tests'
    requests too)."""
    return [
        r
        for r in llm.requests[after:]
        if r["path"] == "/v1/chat/completions" and (r.get("body") or {}).get("tools")
    ]


def user_texts(request: dict[str, Any]) -> list[str]:
    """The user's words in a Chat Completions request (the history OpenCode sent)."""
    texts = []
    for message in request["body"]["messages"]:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts += [p["text"] for p in parts or [] if p.get("type") == "text"]
    return texts


def test_native_opencode_acp_session_is_loaded_after_a_restart(env: Env) -> None:
    """``native:opencode`` on the ACP endpoint across a SIGKILL of the server: the endpoint
    gives the new adapter ``initialize`` and ``session/load`` of the session, and OpenCode goes
    on with its own session (the same session id, the first turn's words in the second
    turn's request)."""
    start = len(env.llm.requests)
    with env.client() as client:
        acp = AcpClient(client, "nat-restart", "native:opencode")
        assert acp.request("initialize", protocolVersion=1)["result"]["agentCapabilities"][
            "loadSession"
        ]
        created = acp.request("session/new", cwd=str(env.workspace), mcpServers=[])
        session = created["result"]["sessionId"]
        assert session.startswith("ses_"), created
        hello = [{"type": "text", "text": "Say hello"}]
        first = acp.request("session/prompt", sessionId=session, prompt=hello)
        assert first["result"] == {"stopReason": "end_turn"}, first
        first_text = assistant_text(events_of(client, "acp-nat-restart"))
        assert "Hello from fake LLM" in first_text
        [asked] = turn_requests(env.llm, start)
        assert asked["headers"]["x-session-id"] == session  # the ACP session is OpenCode's
    before = len(env.llm.requests)

    env.server.kill()  # SIGKILL: opencode serve dies with it (pdeathsig)
    env.server.start()

    with env.client() as client:
        acp.client = client  # the same ACP client (its request ids go on) on the new process
        again = [{"type": "text", "text": "Say hello again"}]
        second = acp.request("session/prompt", sessionId=session, prompt=again)
        assert second["result"] == {"stopReason": "end_turn"}, second
        events = events_of(client, "acp-nat-restart")
        assert_loaded_after_restart(events, session, str(env.workspace))
        text = assistant_text(events)
        assert text.startswith(first_text + "\n"), text
        second_text = text.removeprefix(first_text + "\n")
        assert "Hello from fake LLM" in second_text
        assert int(SAW.findall(second_text)[0]) > int(SAW.findall(first_text)[0])
        # The client's stream holds both turns' words (not the restore's exchanges).
        envelopes = acp.until(answer_to(second["id"]))
        assert chunk_text(envelopes) == first_text + second_text
        assert not any(str(e.get("id", "")).startswith("_restore_") for e in envelopes)
        check_stream(events)
    # OpenCode went on with its own session: the second turn's request names it and carries
    # the first turn's words.
    [resumed] = turn_requests(env.llm, before)
    assert resumed["headers"]["x-session-id"] == session
    assert user_texts(resumed)[-2:] == ["Say hello", "Say hello again"]
    env.server.stop(timeout=30)
    check_store(env.server.store_url)
