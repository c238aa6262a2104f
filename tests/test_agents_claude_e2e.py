"""The real ``claude`` CLI through a real sandbox-agent server, against the fake LLM.

Every test starts ``sandbox-agent server`` (a subprocess on 127.0.0.1 over a SQLite store) with
the offline environment of ``helpers.agent_env`` (``ANTHROPIC_BASE_URL`` at the fake LLM, a clean
``HOME``), talks HTTP to it, and checks the stored stream with the replay invariant checker. Run
with ``.venv/bin/pytest -m agents tests/test_agents_claude_e2e.py``.

The permission tests use ``CMD<<echo hi > out.txt>>``: in claude's default permission mode an
output redirection needs approval, so claude asks through ``can_use_tool``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentError, AgentSessionConfig, AgentSettings, EventSink
from sandbox_agent.agents.claude import ClaudeAgent
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import events_of
from sandbox_agent.testing.skills import git_skill_repo, skill_text

from agent_contract import AgentContract, SessionHarness, stream_violations
from helpers import fake_llm
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

WRITE_PROMPT = "CMD<<echo hi > out.txt>>"


class Claude(AgentServer):
    """A server process with the claude environment, and the test's workspace."""

    def __init__(self, tmp_path: Path, llm: FakeLLM) -> None:
        # Claude 2.1.332 defers MCP tools and ExitPlanMode behind ToolSearch, which the fake LLM
        # cannot use; off, every tool is offered to the model directly.
        super().__init__(tmp_path, llm, "claude", {"ENABLE_TOOL_SEARCH": "false"})


@pytest.fixture
def claude(tmp_path: Path) -> Iterator[Claude]:
    require_agent("claude")
    with FakeLLM() as llm:
        setup = Claude(tmp_path, llm)
        setup.server.start()
        try:
            yield setup
        finally:
            try:
                setup.server.stop()
            finally:
                setup.server.kill()


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        e["data"]["item"]
        for e in events
        if e["type"] == "item.completed" and e["data"]["item"]["kind"] == kind
    ]


def assistant_texts(events: list[dict[str, Any]]) -> list[str]:
    return [
        p["text"]
        for item in items(events, "message")
        if item["role"] == "assistant"
        for p in item["content"]
        if p["type"] == "text"
    ]


def turn_reasons(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["reason"] for e in of_type(events, "turn.ended")]


def check(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    """The whole stored stream, checked: invariants hold and nothing was unparsed."""
    events = events_of(client, session_id)
    check_stream(events)
    assert of_type(events, "agent.unparsed") == []
    return events


def test_plain_turn_streams_text_and_ends(claude: Claude) -> None:
    with claude.client() as client:
        created = claude.create(client, "plain")
        native = created["nativeSessionId"]
        assert native, "the native session id is known when the session is created"
        events = turn(client, "plain", "Say hello")
        assert assistant_texts(events) == ["Hello from fake LLM. I saw 2 input message(s)."]
        assert turn_reasons(events) == ["completed"]
        deltas = of_type(events, "item.delta")
        assert len(deltas) > 1 and not any(d["synthetic"] for d in deltas)
        stream = check(client, "plain")
        assert stream[0]["type"] == "session.started"
        assert stream[0]["native_session_id"] == native
        assert {e["native_session_id"] for e in stream} == {native}


def test_tool_turn_runs_the_command(claude: Claude) -> None:
    # A read inside the workspace needs no approval; the token proves the command ran.
    token = uuid.uuid4().hex
    (claude.workspace / "marker.txt").write_text(token)
    with claude.client() as client:
        claude.create(client, "tool")
        events = turn(client, "tool", "CMD<<cat marker.txt>>")
        (call,) = items(events, "tool_call")
        part = call["content"][0]
        assert part["name"] == "Bash"
        assert json.loads(part["arguments"])["command"] == "cat marker.txt"
        (result,) = items(events, "tool_result")
        assert result["status"] == "completed"
        assert result["content"][0]["call_id"] == part["call_id"]
        assert token in result["content"][0]["output"]
        assert result["parent_id"] == call["item_id"]
        assert f"Tool result received: {token}" in assistant_texts(events)
        assert of_type(events, "permission.requested") == []
        assert turn_reasons(events) == ["completed"]
        check(client, "tool")


def test_second_turn_carries_the_history(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "two")
        first = turn(client, "two", "Say hello")
        second = turn(client, "two", "Say hello again")
        assert assistant_texts(first) == ["Hello from fake LLM. I saw 2 input message(s)."]
        # Two user messages and one answer before the new prompt: claude kept the history.
        (text,) = assistant_texts(second)
        seen = int(text.split("I saw ")[1].split(" ")[0])
        assert seen > 2, text
        check(client, "two")


def test_resume_after_a_server_restart(claude: Claude) -> None:
    with claude.client() as client:
        native = claude.create(client, "resumed")["nativeSessionId"]
        (first,) = assistant_texts(turn(client, "resumed", "Say hello"))
    claude.server.stop()
    claude.server.start()
    with claude.client() as client:
        events = events_of(client, "resumed")
        (resumed,) = of_type(events, "session.resumed")
        assert resumed["data"]["reason"] == "server_restart"
        assert resumed["data"]["native_resume"] is True
        (text,) = assistant_texts(turn(client, "resumed", "Say hello again"))
        assert int(text.split("I saw ")[1].split(" ")[0]) > 2, (first, text)
        stream = check(client, "resumed")
        assert stream[-1]["native_session_id"] == native


def permission_turn(claude: Claude, client: httpx.Client, session_id: str, reply: str) -> None:
    claude.create(client, session_id)
    before = send(client, session_id, WRITE_PROMPT)
    events = wait_event(client, session_id, "permission.requested", before)
    (requested,) = of_type(events, "permission.requested")
    data = requested["data"]
    assert data["action"] == "Bash"
    assert data["metadata"]["input"]["command"] == "echo hi > out.txt"
    assert not (claude.workspace / "out.txt").exists(), "it waits for the answer"
    response = client.post(
        f"/v1/sessions/{session_id}/permissions/{data['permission_id']}/reply",
        json={"reply": reply},
    )
    assert response.status_code == 204, response.text
    events = wait_event(client, session_id, "turn.ended", before)
    (resolved,) = of_type(events, "permission.resolved")
    assert resolved["data"]["status"] == {"once": "accept", "reject": "reject"}[reply]
    (result,) = items(events, "tool_result")
    assert result["status"] == ("completed" if reply == "once" else "failed")
    assert turn_reasons(events) == ["completed"]
    check(client, session_id)


def test_permission_answered_once_runs_the_command(claude: Claude) -> None:
    with claude.client() as client:
        permission_turn(claude, client, "perm-once", "once")
    assert (claude.workspace / "out.txt").read_text().strip() == "hi"


def test_permission_rejected_does_not_run_the_command(claude: Claude) -> None:
    with claude.client() as client:
        permission_turn(claude, client, "perm-reject", "reject")
    assert not (claude.workspace / "out.txt").exists()


def test_cancel_interrupts_the_turn_and_the_session_goes_on(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "cancel")
        before = send(client, "cancel", "SLOW")
        wait_event(client, "cancel", "item.delta", before)
        started = time.monotonic()
        response = client.post("/v1/sessions/cancel/cancel")
        assert response.status_code == 204, response.text
        assert time.monotonic() - started < 15
        events = events_of(client, "cancel", offset=before)
        assert turn_reasons(events) == ["cancelled"]
        assert events[-1]["type"] == "turn.ended", "nothing follows the cancelled turn"
        # What streamed before the interrupt is kept as the (partial) message.
        (partial,) = assistant_texts(events)
        assert partial.startswith("slow0")
        after = last_sequence(client, "cancel")
        time.sleep(1.0)
        assert last_sequence(client, "cancel") == after, "nothing arrives after the cancel"
        events = turn(client, "cancel", "Say hello")
        assert turn_reasons(events) == ["completed"]
        assert assistant_texts(events)[0].startswith("Hello from fake LLM")
        check(client, "cancel")


def test_plan_mode_neither_asks_nor_writes(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "plan", permissionMode="plan")
        events = turn(client, "plan", WRITE_PROMPT)
        assert of_type(events, "permission.requested") == []
        (result,) = items(events, "tool_result")
        assert result["status"] == "failed"
        check(client, "plan")
    assert not (claude.workspace / "out.txt").exists()


def test_accept_edits_mode_writes_without_asking(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "edits", permissionMode="acceptEdits")
        events = turn(client, "edits", WRITE_PROMPT)
        assert of_type(events, "permission.requested") == []
        check(client, "edits")
    assert (claude.workspace / "out.txt").exists()


def processes_naming(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (claude's carries the native session id)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_terminate_stops_the_process(claude: Claude) -> None:
    with claude.client() as client:
        native = claude.create(client, "term")["nativeSessionId"]
        turn(client, "term", "Say hello")
        assert processes_naming(native), "one claude process runs for the session"
        response = client.post("/v1/sessions/term/terminate")
        assert response.status_code == 204, response.text
        events = check(client, "term")
        assert events[-1]["type"] == "session.ended"
        assert events[-1]["data"]["reason"] == "terminated"
        assert processes_naming(native) == []


# -- questions: the fake LLM, scripted in this process, calls claude's question tools --------
QUESTIONS = {
    "questions": [
        {
            "question": "Which database should we use?",
            "header": "Database",
            "options": [
                {"label": "Postgres", "description": "A server"},
                {"label": "SQLite", "description": "A file"},
            ],
            "multiSelect": False,
        }
    ]
}


def script_tool(monkeypatch: pytest.MonkeyPatch, tool: str, tool_input: dict[str, Any]) -> None:
    """Make ``CMD<<...>>`` call ``tool`` with ``tool_input`` instead of the shell tool."""
    monkeypatch.setattr(fake_llm, "SHELL_TOOL_NAMES", [tool])
    monkeypatch.setattr(fake_llm, "build_args", lambda schema, name, command: tool_input)


def question_turn(
    claude: Claude, client: httpx.Client, session_id: str, answer: list[list[str]] | None
) -> list[dict[str, Any]]:
    before = send(client, session_id, "CMD<<ask>>")
    events = wait_event(client, session_id, "question.requested", before)
    (requested,) = of_type(events, "question.requested")
    question_id = requested["data"]["question_id"]
    url = f"/v1/sessions/{session_id}/questions/{question_id}"
    if answer is None:
        response = client.post(f"{url}/reject")
    else:
        response = client.post(f"{url}/reply", json={"answers": answer})
    assert response.status_code == 204, response.text
    events = wait_event(client, session_id, "turn.ended", before)
    assert of_type(events, "permission.requested") == []
    assert turn_reasons(events) == ["completed"]
    check(client, session_id)
    return events


def test_ask_user_question_is_answered(claude: Claude, monkeypatch: pytest.MonkeyPatch) -> None:
    script_tool(monkeypatch, "AskUserQuestion", QUESTIONS)
    with claude.client() as client:
        claude.create(client, "ask")
        events = question_turn(claude, client, "ask", [["SQLite"]])
        (requested,) = of_type(events, "question.requested")
        assert requested["data"]["prompt"] == "Which database should we use?"
        assert requested["data"]["options"] == ["Postgres", "SQLite"]
        (resolved,) = of_type(events, "question.resolved")
        assert resolved["data"]["status"] == "answered"
        assert resolved["data"]["response"] == "SQLite"
        (result,) = items(events, "tool_result")
        assert result["status"] == "completed"
        # Claude gave the model the answer to its question.
        assert "SQLite" in result["content"][0]["output"]


def test_ask_user_question_rejected(claude: Claude, monkeypatch: pytest.MonkeyPatch) -> None:
    script_tool(monkeypatch, "AskUserQuestion", QUESTIONS)
    with claude.client() as client:
        claude.create(client, "ask-reject")
        events = question_turn(claude, client, "ask-reject", None)
        (resolved,) = of_type(events, "question.resolved")
        assert resolved["data"]["status"] == "rejected"
        (result,) = items(events, "tool_result")
        assert result["status"] == "failed"


def test_exit_plan_mode_approved(claude: Claude, monkeypatch: pytest.MonkeyPatch) -> None:
    script_tool(monkeypatch, "ExitPlanMode", {"plan": "1. Write the file."})
    with claude.client() as client:
        claude.create(client, "plan-exit", permissionMode="plan")
        events = question_turn(claude, client, "plan-exit", [["approve"]])
        (requested,) = of_type(events, "question.requested")
        assert requested["data"]["options"] == ["approve", "reject"]
        assert "1. Write the file." in requested["data"]["prompt"]
        (result,) = items(events, "tool_result")
        assert result["status"] == "completed"


def test_exit_plan_mode_rejected(claude: Claude, monkeypatch: pytest.MonkeyPatch) -> None:
    script_tool(monkeypatch, "ExitPlanMode", {"plan": "1. Write the file."})
    with claude.client() as client:
        claude.create(client, "plan-keep", permissionMode="plan")
        events = question_turn(claude, client, "plan-keep", [["reject"]])
        (result,) = items(events, "tool_result")
        assert result["status"] == "failed"
        assert "rejected the plan" in result["content"][0]["output"]


# -- lifecycle edges --------------------------------------------------------------------------
def test_a_crash_ends_the_session_and_a_new_message_resumes_it(claude: Claude) -> None:
    with claude.client() as client:
        native = claude.create(client, "crash")["nativeSessionId"]
        turn(client, "crash", "Say hello")
        before = last_sequence(client, "crash")
        pids = processes_naming(native)
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        events = wait_event(client, "crash", "session.ended", before)
        error, ended = of_type(events, "error")[0], of_type(events, "session.ended")[0]
        assert error["data"]["code"] == "process_exit"
        assert ended["data"]["reason"] == "error"
        assert ended["data"]["terminated_by"] == "agent"
        assert ended["data"]["exit_code"] == -signal.SIGKILL
        # The session reopens on the next message, in a new process that resumed the history.
        events = turn(client, "crash", "Say hello again")
        (text,) = assistant_texts(events)
        assert int(text.split("I saw ")[1].split(" ")[0]) > 2, text
        assert [e["data"]["reason"] for e in of_type(events, "session.resumed")] == ["reopened"]
        stream = check(client, "crash")
        assert stream[-1]["native_session_id"] == native


def test_restart_before_any_message_starts_afresh(claude: Claude) -> None:
    with claude.client() as client:
        native = claude.create(client, "fresh")["nativeSessionId"]
    claude.server.stop()
    claude.server.start()
    with claude.client() as client:
        (resumed,) = of_type(events_of(client, "fresh"), "session.resumed")
        # Claude saved nothing before the first prompt, so there was nothing to resume.
        assert resumed["data"]["native_resume"] is False
        events = turn(client, "fresh", "Say hello")
        assert assistant_texts(events) == ["Hello from fake LLM. I saw 2 input message(s)."]
        stream = check(client, "fresh")
        assert stream[-1]["native_session_id"] not in (None, native)


def test_a_lost_native_session_is_restored_by_replay(claude: Claude, tmp_path: Path) -> None:
    """Claude's own transcript is gone after the restart (a wiped HOME): the server starts a
    fresh claude session and puts the replay of the conversation before the next prompt."""
    with claude.client() as client:
        native = claude.create(client, "wiped")["nativeSessionId"]
        turn(client, "wiped", "Remember the word zebra-42")
    claude.server.stop()
    transcripts = list((tmp_path / "home" / ".claude" / "projects").rglob(f"{native}.jsonl"))
    assert transcripts, "claude keeps its transcript under HOME"
    for path in transcripts:
        path.unlink()
    claude.server.start()
    with claude.client() as client:
        (resumed,) = of_type(events_of(client, "wiped"), "session.resumed")
        assert resumed["data"]["native_resume"] is False
        assert resumed["data"]["replayed_events"] == 2  # the prompt and the answer
        asked = len(claude.llm.requests)
        events = turn(client, "wiped", "Which word?")
        assert turn_reasons(events) == ["completed"]
        # The user item holds what the user typed; the agent got the replay first.
        (user,) = [i for i in items(events, "message") if i["role"] == "user"]
        assert [p["text"] for p in user["content"]] == ["Which word?"]
        sent = json.dumps([r["body"] for r in claude.llm.requests[asked:]])
        assert "zebra-42" in sent and "Which word?" in sent
        stream = check(client, "wiped")
        assert stream[-1]["native_session_id"] not in (None, native)


def test_bypass_writes_without_asking(claude: Claude) -> None:
    # offline_env sets IS_SANDBOX=1, without which claude refuses bypass as root.
    with claude.client() as client:
        claude.create(client, "bypass", permissionMode="bypass")
        events = turn(client, "bypass", WRITE_PROMPT)
        assert of_type(events, "permission.requested") == []
        check(client, "bypass")
    assert (claude.workspace / "out.txt").exists()


def test_always_answers_the_next_request_at_once(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "always")
        before = send(client, "always", WRITE_PROMPT)
        events = wait_event(client, "always", "permission.requested", before)
        (requested,) = of_type(events, "permission.requested")
        permission_id = requested["data"]["permission_id"]
        response = client.post(
            f"/v1/sessions/always/permissions/{permission_id}/reply", json={"reply": "always"}
        )
        assert response.status_code == 204, response.text
        wait_event(client, "always", "turn.ended", before)
        (claude.workspace / "out.txt").unlink()
        events = turn(client, "always", WRITE_PROMPT)
        (resolved,) = of_type(events, "permission.resolved")
        assert resolved["data"]["status"] == "accept_for_session"
        assert resolved["synthetic"] is True
        check(client, "always")
    assert (claude.workspace / "out.txt").exists()


# -- the shared adapter contract, in-process, on the real CLI -------------------------------
class TestClaudeContract(AgentContract):
    plain_prompt = "Say hello"
    long_prompt = "SLOW please"

    @pytest.fixture(autouse=True)
    async def _claude(self, tmp_path: Path) -> AsyncIterator[None]:
        require_agent("claude")
        with FakeLLM() as llm:
            env = offline_env(llm.url, tmp_path / "home")
            self.settings = AgentSettings(
                agents_dir=AGENTS_DIR, log_dir=tmp_path / "logs", extra_env=env
            )
            self.directory = tmp_path / "ws"
            self.directory.mkdir()
            yield

    def make_adapter(self, sink: EventSink) -> ClaudeAgent:
        return ClaudeAgent(sink, self.settings)

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SessionHarness]:
        harness = PatientHarness()
        config = AgentSessionConfig(session_id="s1", agent="claude", directory=str(self.directory))
        await harness.create(self.make_adapter, config)
        yield harness
        await harness.adapter.stop()
        assert stream_violations(harness.events, lifecycle=False) == []


def test_session_mcp_server_tools_are_offered_and_run(
    claude: Claude, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Path(__file__).parent / "fixtures" / "agents" / "claude-mcp-server.py"
    mcp = {"fixture": {"type": "local", "command": [sys.executable, str(script)]}}
    script_tool(monkeypatch, "mcp__fixture__shout", {"text": "quiet words"})
    with claude.client() as client:
        claude.create(client, "mcp", mcp=mcp)
        before = send(client, "mcp", "CMD<<shout>>")
        events = wait_event(client, "mcp", "permission.requested", before)
        (requested,) = of_type(events, "permission.requested")
        assert requested["data"]["action"] == "mcp__fixture__shout"
        permission_id = requested["data"]["permission_id"]
        response = client.post(
            f"/v1/sessions/mcp/permissions/{permission_id}/reply", json={"reply": "once"}
        )
        assert response.status_code == 204, response.text
        events = wait_event(client, "mcp", "turn.ended", before)
        (call,) = items(events, "tool_call")
        assert call["content"][0]["name"] == "mcp__fixture__shout"
        (result,) = items(events, "tool_result")
        assert result["content"][0]["output"] == "QUIET WORDS"
        check(client, "mcp")


def test_cancel_while_a_permission_waits(claude: Claude) -> None:
    with claude.client() as client:
        claude.create(client, "cancel-perm")
        before = send(client, "cancel-perm", WRITE_PROMPT)
        wait_event(client, "cancel-perm", "permission.requested", before)
        response = client.post("/v1/sessions/cancel-perm/cancel")
        assert response.status_code == 204, response.text
        events = events_of(client, "cancel-perm", offset=before)
        # Claude withdrew its request on the interrupt: the daemon resolved it.
        (resolved,) = of_type(events, "permission.resolved")
        assert resolved["data"]["status"] == "reject"
        assert resolved["data"]["metadata"]["reason"] == "withdrawn"
        assert resolved["source"] == "daemon"
        assert turn_reasons(events) == ["cancelled"]
        events = turn(client, "cancel-perm", "Say hello")
        assert turn_reasons(events) == ["completed"]
        check(client, "cancel-perm")
    assert not (claude.workspace / "out.txt").exists()


async def test_bypass_as_root_without_is_sandbox_fails_start_with_claudes_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_agent("claude")
    if os.geteuid() != 0:
        pytest.skip("claude refuses bypass only as root")
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    with FakeLLM() as llm:
        env = offline_env(llm.url, tmp_path / "home")
        del env["IS_SANDBOX"]
        settings = AgentSettings(agents_dir=AGENTS_DIR, log_dir=tmp_path / "logs", extra_env=env)
        (tmp_path / "ws").mkdir()
        directory = str(tmp_path / "ws")
        config = AgentSessionConfig(
            session_id="s1", agent="claude", permission_mode="bypass", directory=directory
        )
        harness = SessionHarness()
        with pytest.raises(AgentError, match="cannot be used with root"):
            await harness.create(lambda sink: ClaudeAgent(sink, settings), config)
        assert harness.adapter_drafts == []


def test_a_skill_from_a_local_git_repository_is_offered_to_the_model(
    claude: Claude, tmp_path: Path
) -> None:
    # A description no prompt of claude's own holds: seen by the model only through the skill.
    description = f"Explains the quokka protocol {uuid.uuid4().hex}"
    url = git_skill_repo(
        tmp_path / "team-skills.git", {"skills/quokka": skill_text("quokka", description)}
    )
    with claude.client() as client:
        claude.create(client, "skill", skills={"sources": [{"type": "git", "source": url}]})
        (skill,) = client.get("/v1/sessions/skill").json()["installedSkills"]
        link = claude.workspace / ".claude" / "skills" / "quokka"
        assert skill["name"] == "quokka" and str(link) in skill["links"]
        events = turn(client, "skill", "Say hello")
        assert turn_reasons(events) == ["completed"]
        check(client, "skill")
    # Claude 2.x lists the project's skills (.claude/skills) to the model in a reminder of
    # the conversation: "The following skills are available for use with the Skill tool".
    seen = [r for r in claude.llm.requests if description in json.dumps(r.get("body"))]
    assert seen, "the model was never told of the skill"
    messages = json.dumps(seen[0]["body"]["messages"])
    assert f"- quokka: {description}" in messages
    assert "available for use with the Skill tool" in messages


def test_a_fork_at_the_end_forks_claudes_session_and_one_before_it_replays(
    claude: Claude, tmp_path: Path
) -> None:
    """``POST .../fork``: at the source's end claude forks its own transcript (``--resume
    --fork-session``) under a new id, leaving the source's alone; at an earlier point a fresh
    claude session gets the replay of the conversation up to there."""
    with claude.client() as client:
        native = claude.create(client, "src")["nativeSessionId"]
        first = turn(client, "src", "Remember the word zebra-42")
        turn(client, "src", "Remember the word yak-17")
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "same"})
        assert answer.status_code == 201, answer.text
        info = answer.json()
        assert info["forkedFrom"]["nativeResume"] is True
        assert info["nativeSessionId"] not in (None, native)
        asked = len(claude.llm.requests)
        assert turn_reasons(turn(client, "same", "Which words?")) == ["completed"]
        sent = json.dumps([r["body"] for r in claude.llm.requests[asked:]])
        # The history came from claude's own forked transcript: no replay text in the prompt.
        assert "zebra-42" in sent and "yak-17" in sent and "Previous conversation" not in sent
        stream = check(client, "same")
        assert stream[-1]["native_session_id"] == info["nativeSessionId"]
        transcripts = tmp_path / "home" / ".claude" / "projects"
        assert list(transcripts.rglob(f"{info['nativeSessionId']}.jsonl"))
        # The source goes on in its own claude session, which does not know the fork's turn.
        asked = len(claude.llm.requests)
        turn(client, "src", "Say hello")
        sent = json.dumps([r["body"] for r in claude.llm.requests[asked:]])
        assert "Which words?" not in sent
        assert check(client, "src")[-1]["native_session_id"] == native

        at = of_type(first, "turn.ended")[0]["sequence"]
        answer = client.post("/v1/sessions/src/fork", json={"sessionId": "early", "at": at})
        assert answer.status_code == 201, answer.text
        assert answer.json()["forkedFrom"]["nativeResume"] is False
        asked = len(claude.llm.requests)
        turn(client, "early", "Which words?")
        sent = json.dumps([r["body"] for r in claude.llm.requests[asked:]])
        assert "zebra-42" in sent and "yak-17" not in sent and "Previous conversation" in sent
        check(client, "early")


def test_claude_stream_json_answers_an_acp_client(claude: Claude) -> None:
    """``native:claude`` on the ACP endpoint: our claude adapter presented as ACP (no
    claude-agent-acp involved): a prompt, then a permission request answered by the client."""
    headers = {"Content-Type": "application/json"}

    def rpc(client: httpx.Client, message: dict[str, Any], **params: str) -> httpx.Response:
        return client.post(
            "/v1/acp/nat", content=json.dumps(message), headers=headers, params=params
        )

    def request(n: int, method: str, **params: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": n, "method": method, "params": params}

    with claude.client() as client:
        r = rpc(client, request(1, "initialize", protocolVersion=1), agent="native:claude")
        assert r.status_code == 200, r.text
        r = rpc(client, request(2, "session/new", cwd=str(claude.workspace), mcpServers=[]))
        session = r.json()["result"]["sessionId"]
        hello = [{"type": "text", "text": "Say hello"}]
        r = rpc(client, request(3, "session/prompt", sessionId=session, prompt=hello))
        assert r.json()["result"] == {"stopReason": "end_turn"}, r.text
        events = events_of(client, "acp-nat")
        assert assistant_texts(events) == ["Hello from fake LLM. I saw 2 input message(s)."]
        write = [{"type": "text", "text": WRITE_PROMPT}]
        with ThreadPoolExecutor(1) as pool:
            turn_done = pool.submit(
                rpc, client, request(4, "session/prompt", sessionId=session, prompt=write)
            )
            asked = None
            calls = []
            with client.stream(
                "GET", "/v1/acp/nat", headers={"Accept": "text/event-stream"}
            ) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        envelope = json.loads(line.removeprefix("data:").strip())
                        update = envelope.get("params", {}).get("update", {})
                        if update.get("sessionUpdate") == "tool_call":
                            calls.append(update["toolCallId"])
                        if envelope.get("method") == "session/request_permission":
                            asked = envelope
                            break
            assert asked is not None
            # The request names the tool call the client was told of (claude's tool_use id).
            assert asked["params"]["toolCall"]["toolCallId"] in calls
            assert not (claude.workspace / "out.txt").exists(), "it waits for the answer"
            outcome = {"outcome": {"outcome": "selected", "optionId": "allow_once"}}
            answer = {"jsonrpc": "2.0", "id": asked["id"], "result": outcome}
            assert client.post("/v1/acp/nat", json=answer).status_code == 202
            assert turn_done.result(timeout=60).json()["result"] == {"stopReason": "end_turn"}
        assert (claude.workspace / "out.txt").read_text().strip() == "hi"
        events = events_of(client, "acp-nat")
        assert [e["data"]["status"] for e in of_type(events, "permission.resolved")] == ["accept"]
        check_stream(events)
