"""The real ``codex app-server`` through a real sandbox-agent server, against the fake LLM.

Every test starts ``sandbox-agent server`` (a subprocess on 127.0.0.1 over a SQLite store) with
the offline environment of ``helpers.agent_env`` (``CODEX_HOME`` with the fake provider), talks
HTTP to it, and checks the stored stream with the replay invariant checker. Run with
``.venv/bin/pytest -m agents tests/test_agents_codex_e2e.py``.

``TMPDIR`` points away from the test's ``CODEX_HOME`` (which lives under ``/tmp``): Codex refuses
to set up its sandbox helper under the temporary directory, and every sandboxed command would
fail.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentSessionConfig, AgentSettings, EventSink
from sandbox_agent.agents.codex import CodexAgent
from sandbox_agent.testing.consistency import check_store, check_stream
from sandbox_agent.testing.server import events_of

from agent_contract import AgentContract, SessionHarness, stream_violations
from helpers.acp_client import (
    AcpClient,
    answer_to,
    asks_permission,
    assert_loaded_after_restart,
    chunk_text,
    selected,
    updates,
)
from helpers.agent_env import AGENTS_DIR, offline_env, require_agent
from helpers.agent_server import (
    AgentServer,
    PatientHarness,
    last_sequence,
    send,
    turn,
    wait_event,
)
from helpers.fake_llm import FakeLLM

pytestmark = pytest.mark.agents


class Codex(AgentServer):
    """A server process with the codex environment, and the test's workspace."""

    def __init__(self, tmp_path: Path, llm: FakeLLM) -> None:
        super().__init__(tmp_path, llm, "codex")


@pytest.fixture
def codex(tmp_path: Path) -> Iterator[Codex]:
    require_agent("codex")
    with FakeLLM() as llm:
        setup = Codex(tmp_path, llm)
        setup.server.start()
        try:
            yield setup
        finally:
            try:
                setup.server.stop()
            finally:
                setup.server.kill()


def assistant_texts(events: list[dict[str, Any]]) -> list[str]:
    texts = []
    for event in events:
        item = event["data"].get("item") if event["type"] == "item.completed" else None
        if item and item["kind"] == "message" and item["role"] == "assistant":
            texts += [p["text"] for p in item["content"] if p["type"] == "text"]
    return texts


def seen(text: str) -> int:
    """N of the fake LLM's "I saw N input message(s)": how much history the agent sent."""
    return int(text.split("I saw ")[1].split()[0])


def check(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    """The whole stream, checked; no agent.unparsed in it."""
    events = events_of(client, session_id)
    check_stream(events)
    unparsed = [e for e in events if e["type"] == "agent.unparsed"]
    assert unparsed == [], unparsed
    return events


def ended(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["type"] == "turn.ended")["data"]


def test_plain_turn_then_second_turn_carries_history(codex: Codex) -> None:
    with codex.client() as client:
        created = codex.create(client, "plain")
        thread = created["nativeSessionId"]
        assert thread

        first = turn(client, "plain", "Say hello")
        assert ended(first)["reason"] == "completed"
        [text] = assistant_texts(first)
        assert text.startswith("Hello from fake LLM. I saw ")
        seen_first = seen(text)
        # The prompt is recorded once, by the session layer (codex's userMessage is ignored).
        users = [
            e
            for e in first
            if e["type"] == "item.completed" and e["data"]["item"]["role"] == "user"
        ]
        assert len(users) == 1 and users[0]["source"] == "client"
        deltas = [e for e in first if e["type"] == "item.delta"]
        assert deltas and all(not e["synthetic"] for e in deltas)

        second = turn(client, "plain", "Say hello again")
        assert ended(second)["reason"] == "completed"
        [text] = assistant_texts(second)
        # History carried natively: more input messages than the first turn saw.
        assert seen(text) > seen_first

        events = check(client, "plain")
        assert {e["native_session_id"] for e in events} == {thread}


def test_tool_turn_runs_the_command(codex: Codex) -> None:
    with codex.client() as client:
        codex.create(client, "tool")
        events = turn(client, "tool", "CMD<<echo codex-data > tool_ok.txt>>")
        assert ended(events)["reason"] == "completed"
        assert (codex.workspace / "tool_ok.txt").read_text() == "codex-data\n"
        completed = [e["data"]["item"] for e in events if e["type"] == "item.completed"]
        calls = [i for i in completed if i["kind"] == "tool_call"]
        results = [i for i in completed if i["kind"] == "tool_result"]
        assert calls and calls[0]["content"][0]["name"] == "commandExecution"
        assert "tool_ok.txt" in calls[0]["content"][0]["arguments"]
        assert results and results[0]["status"] == "completed"
        assert results[0]["parent_id"] == calls[0]["item_id"]
        assert any("Tool result received" in t for t in assistant_texts(events))
        check(client, "tool")


@pytest.mark.parametrize(("reply", "runs"), [("once", True), ("reject", False)])
def test_permission(codex: Codex, reply: str, runs: bool) -> None:
    target = codex.workspace / f"escalated_{reply}.txt"
    with codex.client() as client:
        codex.create(client, "perm")
        before = send(client, "perm", f"ESCALATE CMD<<echo escalated > {target.name}>>")
        events = wait_event(client, "perm", "permission.requested", before)
        [asked] = [e["data"] for e in events if e["type"] == "permission.requested"]
        assert asked["action"] == "commandExecution"
        assert target.name in asked["metadata"]["command"]
        assert not target.exists()

        response = client.post(
            f"/v1/sessions/perm/permissions/{asked['permission_id']}/reply",
            json={"reply": reply},
        )
        assert response.status_code == 204, response.text
        events = wait_event(client, "perm", "turn.ended", before)
        assert ended(events)["reason"] == "completed"
        [resolved] = [e for e in events if e["type"] == "permission.resolved"]
        assert resolved["data"]["status"] == ("accept" if reply == "once" else "reject")
        assert resolved["source"] == "client"
        assert target.exists() is runs
        if not runs:
            assert any("rejected by user" in t for t in assistant_texts(events))
        check(client, "perm")


def test_plan_mode_asks_before_any_write(codex: Codex) -> None:
    target = codex.workspace / "planned.txt"
    with codex.client() as client:
        codex.create(client, "plan", agentMode="plan", permissionMode="plan")
        before = send(client, "plan", f"CMD<<echo planned > {target.name}>>")
        events = wait_event(client, "plan", "permission.requested", before)
        [asked] = [e["data"] for e in events if e["type"] == "permission.requested"]
        response = client.post(
            f"/v1/sessions/plan/permissions/{asked['permission_id']}/reply",
            json={"reply": "reject"},
        )
        assert response.status_code == 204, response.text
        events = wait_event(client, "plan", "turn.ended", before)
        assert ended(events)["reason"] == "completed"
        assert not target.exists()
        check(client, "plan")
    # Agent mode plan: the prompt reached the model with the plan prefix.
    bodies = [json.dumps(r.get("body")) for r in codex.llm.requests]
    assert any("Make a plan before acting." in b and target.name in b for b in bodies)


def test_bypass_runs_without_asking(codex: Codex) -> None:
    target = codex.workspace / "bypassed.txt"
    with codex.client() as client:
        codex.create(client, "bypass", permissionMode="bypass")
        # No ESCALATE: under approvalPolicy "never" codex itself refuses a request to escalate.
        events = turn(client, "bypass", f"CMD<<echo free > {target.name}>>")
        assert ended(events)["reason"] == "completed"
        assert not [e for e in events if e["type"] == "permission.requested"]
        assert target.read_text() == "free\n"
        check(client, "bypass")


def test_session_mcp_servers_reach_the_thread(codex: Codex) -> None:
    # /bin/true is no MCP server: codex reports that it failed to start, which shows that the
    # session's mcp map reached the thread's config.
    mcp = {"broken": {"type": "local", "command": "/bin/true", "timeoutMs": 5000}}
    with codex.client() as client:
        codex.create(client, "mcp", mcp=mcp)
        events = turn(client, "mcp", "Say hello")
        assert ended(events)["reason"] == "completed"
        statuses = [
            p
            for e in events_of(client, "mcp")
            if e["type"] == "item.completed"
            for p in e["data"]["item"]["content"]
            if p["type"] == "status"
        ]
        [failed] = [p for p in statuses if p["label"] == "mcp.startup.failed"]
        assert json.loads(failed["detail"])["name"] == "broken"
        check(client, "mcp")


def test_cancel_then_new_prompt(codex: Codex) -> None:
    with codex.client() as client:
        codex.create(client, "cancel")
        before = send(client, "cancel", "SLOW please")
        wait_event(client, "cancel", "item.delta", before)
        started = time.monotonic()
        response = client.post("/v1/sessions/cancel/cancel")
        assert response.status_code == 204, response.text
        assert time.monotonic() - started < 20
        events = events_of(client, "cancel", offset=before)
        ends = [e for e in events if e["type"] == "turn.ended"]
        assert [e["data"]["reason"] for e in ends] == ["cancelled"]
        # The interrupted message is closed, with what had streamed.
        closed = [
            e["data"]["item"]
            for e in events
            if e["type"] == "item.completed" and e["data"]["item"]["role"] == "assistant"
        ]
        assert closed and closed[0]["status"] == "failed"
        assert closed[0]["content"][0]["text"].startswith("slow0")

        after = turn(client, "cancel", "Say hello")
        assert ended(after)["reason"] == "completed"
        assert assistant_texts(after)[0].startswith("Hello from fake LLM.")
        time.sleep(1)  # nothing late from the cancelled turn
        events = check(client, "cancel")
        assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == [
            "cancelled",
            "completed",
        ]


def test_resume_after_server_restart(codex: Codex) -> None:
    with codex.client() as client:
        created = codex.create(client, "resume")
        thread = created["nativeSessionId"]
        first = turn(client, "resume", "Say hello")
        [text] = assistant_texts(first)
        seen_first = seen(text)

    codex.server.stop()
    codex.server.start()

    with codex.client() as client:
        events = events_of(client, "resume")
        resumed = [e for e in events if e["type"] == "session.resumed"]
        assert resumed and resumed[-1]["data"]["native_resume"] is True
        second = turn(client, "resume", "What did I ask before?")
        assert ended(second)["reason"] == "completed"
        [text] = assistant_texts(second)
        assert seen(text) > seen_first
        events = check(client, "resume")
        assert events[-1]["native_session_id"] == thread


def app_server_pid(server_pid: int) -> int:
    """The pid of the server's ``codex app-server`` child (the leader of its process group)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server_pid and b"app-server" in cmdline:
            return int(entry.name)
    raise AssertionError("no codex app-server child")


def test_app_server_death_ends_sessions_and_next_message_resumes(codex: Codex) -> None:
    with codex.client() as client:
        codex.create(client, "a")
        codex.create(client, "b")
        first = turn(client, "a", "Say hello")
        [text] = assistant_texts(first)
        seen_first = seen(text)
        before_a, before_b = last_sequence(client, "a"), last_sequence(client, "b")

        assert codex.server.proc is not None
        os.killpg(app_server_pid(codex.server.proc.pid), signal.SIGKILL)
        for session_id, before in (("a", before_a), ("b", before_b)):
            events = wait_event(client, session_id, "session.ended", before)
            [error] = [e for e in events if e["type"] == "error"]
            assert error["data"]["code"] == "server_exit"
            [end] = [e for e in events if e["type"] == "session.ended"]
            assert end["data"]["reason"] == "error"

        # The next message starts a new app-server and resumes the thread there.
        second = turn(client, "a", "Say hello again")
        assert ended(second)["reason"] == "completed"
        [text] = assistant_texts(second)
        assert seen(text) > seen_first
        events = check(client, "a")
        assert [e["data"]["reason"] for e in events if e["type"] == "session.resumed"] == [
            "reopened"
        ]
        check(client, "b")


# -- the shared adapter contract, in-process, on the real app-server --------------------------
class TestCodexContract(AgentContract):
    plain_prompt = "Say hello"
    long_prompt = "SLOW please"

    @pytest.fixture(autouse=True)
    async def _codex(self, tmp_path: Path) -> AsyncIterator[None]:
        require_agent("codex")
        with FakeLLM() as llm:
            env = offline_env(llm.url, tmp_path / "home")
            tmpdir = tmp_path / "tmpdir"
            tmpdir.mkdir()
            env["TMPDIR"] = str(tmpdir)
            self.settings = AgentSettings(
                agents_dir=AGENTS_DIR, log_dir=tmp_path / "logs", extra_env=env
            )
            self.directory = tmp_path / "ws"
            self.directory.mkdir()
            try:
                yield
            finally:
                await self.settings.shared.stop_all()

    def make_adapter(self, sink: EventSink) -> CodexAgent:
        return CodexAgent(sink, self.settings)

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SessionHarness]:
        harness = PatientHarness()
        config = AgentSessionConfig(session_id="s1", agent="codex", directory=str(self.directory))
        await harness.create(self.make_adapter, config)
        yield harness
        await harness.adapter.stop()
        assert stream_violations(harness.events, lifecycle=False) == []


def test_codex_app_server_answers_an_acp_client(codex: Codex) -> None:
    """``native:codex`` on the ACP endpoint: our codex adapter presented as ACP (no codex-acp
    involved): a prompt streamed back as chunks, then an escalation the ACP client allows."""
    target = codex.workspace / "acp_escalated.txt"
    with codex.client() as client:
        acp = AcpClient(client, "nat", "native:codex")
        initialized = acp.request("initialize", protocolVersion=1)
        assert initialized["result"]["agentCapabilities"]["loadSession"] is True
        created = acp.request("session/new", cwd=str(codex.workspace), mcpServers=[])
        session = created["result"]["sessionId"]
        hello = [{"type": "text", "text": "Say hello"}]
        asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=hello)
        envelopes = acp.until(answer_to(asked))
        assert envelopes[-1]["result"] == {"stopReason": "end_turn"}
        assert answer.result(timeout=60)["result"] == {"stopReason": "end_turn"}
        # Codex streams its answer: several chunks, which make the stored message.
        assert len(updates(envelopes, "agent_message_chunk")) > 1
        text = chunk_text(envelopes)
        assert text.startswith("Hello from fake LLM. I saw ")
        assert assistant_texts(events_of(client, "acp-nat")) == [text]

        prompt = [{"type": "text", "text": f"ESCALATE CMD<<echo escalated > {target.name}>>"}]
        asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=prompt)
        permission = acp.until(asks_permission)[-1]
        assert permission["params"]["sessionId"] == session
        assert permission["params"]["toolCall"]["title"] == "commandExecution"
        assert not target.exists(), "it waits for the answer"
        acp.answer(permission["id"], selected("allow_once"))
        assert answer.result(timeout=60)["result"] == {"stopReason": "end_turn"}
        assert target.read_text() == "escalated\n"
        envelopes = acp.until(answer_to(asked))
        # The request names the call the client was told of.
        call_id = permission["params"]["toolCall"]["toolCallId"]
        [call] = [u for u in updates(envelopes, "tool_call") if u["toolCallId"] == call_id]
        assert target.name in json.dumps(call["rawInput"])
        later = [u for u in updates(envelopes, "tool_call_update") if u["toolCallId"] == call_id]
        assert [u["status"] for u in later if "status" in u] == ["completed"]
        events = events_of(client, "acp-nat")
        assert [e["data"]["status"] for e in events if e["type"] == "permission.resolved"] == [
            "accept"
        ]
        check_stream(events)


def test_a_fork_at_the_end_forks_the_thread_and_one_before_it_replays(codex: Codex) -> None:
    """``POST .../fork``: at the source's end codex forks its own thread (``thread/fork``)
    into a new one, leaving the source's alone; at an earlier point a fresh thread gets the
    replay of the conversation up to there."""
    with codex.client() as client:
        thread = codex.create(client, "src")["nativeSessionId"]
        first = turn(client, "src", "Remember the word zebra-42")
        turn(client, "src", "Remember the word yak-17")
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "same"})
        assert answer.status_code == 201, answer.text
        info = answer.json()
        assert info["forkedFrom"]["nativeResume"] is True
        assert info["nativeSessionId"] not in (None, thread)
        asked = len(codex.llm.requests)
        assert ended(turn(client, "same", "Which words?"))["reason"] == "completed"
        sent = json.dumps([r["body"] for r in codex.llm.requests[asked:]])
        # The history came from codex's own forked thread: no replay text in the prompt.
        assert "zebra-42" in sent and "yak-17" in sent and "Previous conversation" not in sent
        stream = check(client, "same")
        assert stream[-1]["native_session_id"] == info["nativeSessionId"]
        # The source goes on in its own thread, which does not know the fork's turn.
        asked = len(codex.llm.requests)
        turn(client, "src", "Say hello")
        sent = json.dumps([r["body"] for r in codex.llm.requests[asked:]])
        assert "Which words?" not in sent and "yak-17" in sent
        assert check(client, "src")[-1]["native_session_id"] == thread

        at = next(e for e in first if e["type"] == "turn.ended")["sequence"]
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "early", "at": at})
        assert answer.status_code == 201, answer.text
        assert answer.json()["forkedFrom"]["nativeResume"] is False
        asked = len(codex.llm.requests)
        turn(client, "early", "Which words?")
        sent = json.dumps([r["body"] for r in codex.llm.requests[asked:]])
        assert "zebra-42" in sent and "yak-17" not in sent and "Previous conversation" in sent
        check(client, "early")


def test_a_fork_of_a_thread_without_turns_starts_a_new_thread(codex: Codex) -> None:
    """A thread with no turn yet has nothing saved for ``thread/fork``: the fork gets a new
    thread (no native resume), and works."""
    with codex.client() as client:
        thread = codex.create(client, "empty")["nativeSessionId"]
        answer = client.post("/v1/sessions/empty/fork", json={"sessionId": "empty-fork"})
        assert answer.status_code == 201, answer.text
        info = answer.json()
        assert info["forkedFrom"]["nativeResume"] is False
        assert info["nativeSessionId"] not in (None, thread)
        assert ended(turn(client, "empty-fork", "Say hello"))["reason"] == "completed"
        check(client, "empty-fork")


def turn_requests(llm: FakeLLM, after: int) -> list[dict[str, Any]]:
    """The Responses API requests of codex's turns among the fake LLM's requests after the
    first ``after`` (its log is the module's: it holds the earlier tests' requests too)."""
    return [r for r in llm.requests[after:] if r["path"] == "/v1/responses"]


def user_texts(request: dict[str, Any]) -> list[str]:
    """The user's words in a Responses API request's input (the history codex sent)."""
    return [
        part["text"]
        for item in request["body"].get("input") or []
        if item.get("type") == "message" and item.get("role") == "user"
        for part in item.get("content") or []
        if part.get("type") == "input_text"
    ]


def test_native_codex_acp_session_is_loaded_after_a_restart(codex: Codex) -> None:
    """``native:codex`` on the ACP endpoint across a SIGKILL of the server: the endpoint gives
    the new adapter ``initialize`` and ``session/load`` of the session, and codex goes on with
    its own thread (the same thread id, the first turn's words in the second turn's input)."""
    start = len(codex.llm.requests)
    with codex.client() as client:
        acp = AcpClient(client, "nat-restart", "native:codex")
        assert acp.request("initialize", protocolVersion=1)["result"]["agentCapabilities"][
            "loadSession"
        ]
        created = acp.request("session/new", cwd=str(codex.workspace), mcpServers=[])
        session = created["result"]["sessionId"]
        hello = [{"type": "text", "text": "Say hello"}]
        first = acp.request("session/prompt", sessionId=session, prompt=hello)
        assert first["result"] == {"stopReason": "end_turn"}, first
        [first_text] = assistant_texts(events_of(client, "acp-nat-restart"))
        assert first_text.startswith("Hello from fake LLM. I saw ")
        [asked] = turn_requests(codex.llm, start)
        assert asked["headers"]["thread-id"] == session  # the ACP session is codex's thread
    before = len(codex.llm.requests)

    codex.server.kill()  # SIGKILL: the app-server dies with it (pdeathsig)
    codex.server.start()

    with codex.client() as client:
        acp.client = client  # the same ACP client (its request ids go on) on the new process
        again = [{"type": "text", "text": "What did I ask before?"}]
        second = acp.request("session/prompt", sessionId=session, prompt=again)
        assert second["result"] == {"stopReason": "end_turn"}, second
        events = events_of(client, "acp-nat-restart")
        assert_loaded_after_restart(events, session, str(codex.workspace))
        texts = assistant_texts(events)
        assert texts[0] == first_text and len(texts) == 2, texts
        assert seen(texts[1]) > seen(first_text)  # history carried
        # The client's stream holds both turns' words (not the restore's exchanges).
        envelopes = acp.until(answer_to(second["id"]))
        assert chunk_text(envelopes) == "".join(texts)
        assert not any(str(e.get("id", "")).startswith("_restore_") for e in envelopes)
        check_stream(events)
    # Codex resumed its own thread: the second turn's request names it and carries the first
    # turn's words.
    [resumed] = turn_requests(codex.llm, before)
    assert resumed["headers"]["thread-id"] == session
    assert user_texts(resumed)[-2:] == ["Say hello", "What did I ask before?"]
    codex.server.stop()
    check_store(codex.server.store_url)
