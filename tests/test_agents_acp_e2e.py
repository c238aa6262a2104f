"""ACP agents end to end: the real ``sandbox-agent server`` process, the real ACP agent CLI
(``claude-agent-acp``, ``opencode acp``) and the fake LLM on 127.0.0.1.

Run with ``.venv/bin/pytest -m agents tests/test_agents_acp_e2e.py``. Scenarios per agent: a
plain turn, a tool turn whose command really ran, a second turn with history carried, a resumed
session after a server restart (``session/load``), a permission answered ``once`` and one
answered ``reject`` (the command ran / did not run), a cancel (SLOW prompt) and a cancel while a
permission is pending (answered ``cancelled`` to the agent, recorded as a rejection), and the
session's MCP servers reaching the agent (``session/new {mcpServers}``). The shared adapter
contract runs too. Every stream passes the replay invariant checker. ``acp:codex`` (codex-acp)
is not installed here, so it has no test.

What makes each agent ask for a permission: claude-agent-acp in its ``default`` mode asks before
a Bash command that writes a file; ``opencode acp`` asks when its config says ``bash: ask``. The
tool turn runs claude-agent-acp in its ``bypassPermissions`` mode (``agentMode``, which the
adapter applies with ``session/set_mode``), and opencode as configured (bash allowed).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentSessionConfig, AgentSettings, EventSink
from sandbox_agent.agents.acp import AcpAgent
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import ServerProcess, events_of, wait_for

from agent_contract import AgentContract, SessionHarness, stream_violations
from helpers import fake_llm
from helpers.agent_env import AGENTS_DIR, offline_env, prepare_workspace, require_agent
from helpers.fake_llm import FakeLLM

pytestmark = pytest.mark.agents

TURN_TIMEOUT = 60.0
#: The server process itself (generous: the test machine may be busy).
START_TIMEOUT = 90.0


@dataclass
class Setup:
    agent: str
    server: ServerProcess
    client: httpx.Client
    workspace: Path
    llm: FakeLLM


@pytest.fixture(params=["acp:claude", "acp:opencode"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    agent: str = request.param
    require_agent(agent)
    with FakeLLM() as llm:
        workspace = prepare_workspace(tmp_path / "ws", llm.url)
        env = offline_env(llm.url, tmp_path / "home")
        env["SANDBOX_AGENT_DATA_DIR"] = str(tmp_path / "data")
        # Else claude may defer MCP tools behind ToolSearch, which the fake LLM cannot use.
        env["ENABLE_TOOL_SEARCH"] = "false"
        args = ["--no-token", "--root", str(tmp_path)]  # the workspace must lie inside the root
        server = ServerProcess(
            f"sqlite:///{tmp_path / 's.db'}", tmp_path / "server.log", env=env, args=args
        ).start(timeout=START_TIMEOUT)
        try:
            with httpx.Client(base_url=server.url, timeout=TURN_TIMEOUT) as client:
                yield Setup(agent, server, client, workspace, llm)
        finally:
            server.stop(timeout=30)
            server.kill()


def create(s: Setup, session_id: str, **body: Any) -> dict[str, Any]:
    response = s.client.post(
        f"/v1/sessions/{session_id}",
        json={"agent": s.agent, "directory": str(s.workspace), **body},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def send(s: Setup, session_id: str, message: str) -> int:
    """Post a message; the sequence before it."""
    before = len(events_of(s.client, session_id))
    response = s.client.post(f"/v1/sessions/{session_id}/messages", json={"message": message})
    assert response.status_code == 204, response.text
    return before


def turn(s: Setup, session_id: str, message: str) -> list[dict[str, Any]]:
    """One whole turn; its events (after the prompt was recorded)."""
    before = send(s, session_id, message)
    return wait_for(s.client, session_id, "turn.ended", after=before, timeout=TURN_TIMEOUT)


def assistant_text(events: list[dict[str, Any]]) -> str:
    return "\n".join(
        p["text"]
        for e in events
        if e["type"] == "item.completed"
        and e["data"]["item"]["role"] == "assistant"
        and e["data"]["item"]["kind"] == "message"
        for p in e["data"]["item"]["content"]
        if p["type"] == "text"
    )


def ended_reason(events: list[dict[str, Any]]) -> str:
    return str(next(e for e in events if e["type"] == "turn.ended")["data"]["reason"])


def checked(s: Setup, session_id: str) -> list[dict[str, Any]]:
    events = events_of(s.client, session_id)
    check_stream(events)
    assert [e for e in events if e["type"] == "agent.unparsed"] == []
    return events


def seen(text: str) -> int:
    """N of the fake LLM's "I saw N input message(s)"."""
    match = re.search(r"I saw (\d+) input", text)
    assert match, text
    return int(match.group(1))


def test_plain_turn_and_history(setup: Setup) -> None:
    s = setup
    created = create(s, "plain")
    assert created.get("nativeSessionId")
    first = turn(s, "plain", "Say hello")
    assert ended_reason(first) == "completed"
    assert "Hello from fake LLM" in assistant_text(first)
    assert any(e["type"] == "item.delta" for e in first)
    second = turn(s, "plain", "Say hello again")
    assert ended_reason(second) == "completed"
    assert seen(assistant_text(second)) > seen(assistant_text(first))
    checked(s, "plain")


def test_tool_turn_runs_the_command(setup: Setup) -> None:
    s = setup
    # Modes where the agent runs tools without asking.
    mode = {"acp:claude": "bypassPermissions", "acp:opencode": "build"}[s.agent]
    create(s, "tool", agentMode=mode)
    events = turn(s, "tool", "CMD<<echo tool-ran > tool.txt>>")
    assert ended_reason(events) == "completed"
    assert (s.workspace / "tool.txt").read_text().strip() == "tool-ran"
    kinds = [e["data"]["item"]["kind"] for e in events if e["type"] == "item.completed"]
    assert "tool_call" in kinds and "tool_result" in kinds
    assert "Tool result received" in assistant_text(events)
    assert not any(e["type"] == "permission.requested" for e in events)
    checked(s, "tool")


@pytest.mark.parametrize("reply", ["once", "reject"])
def test_permission(setup: Setup, reply: str) -> None:
    s = setup
    if s.agent == "acp:opencode":
        # opencode asks for bash only when its config says so (read when the agent starts).
        config = json.loads((s.workspace / "opencode.json").read_text())
        (s.workspace / "opencode.json").write_text(
            json.dumps({**config, "permission": {"bash": "ask"}})
        )
    create(s, "perm")
    target = s.workspace / f"perm-{reply}.txt"
    before = send(s, "perm", f"CMD<<echo data > perm-{reply}.txt>>")
    events = wait_for(s.client, "perm", "permission.requested", after=before, timeout=TURN_TIMEOUT)
    request = next(e for e in events if e["type"] == "permission.requested")["data"]
    assert not target.exists()
    response = s.client.post(
        f"/v1/sessions/perm/permissions/{request['permission_id']}/reply", json={"reply": reply}
    )
    assert response.status_code == 204, response.text
    events = wait_for(s.client, "perm", "turn.ended", after=before, timeout=TURN_TIMEOUT)
    assert ended_reason(events) == "completed"
    resolved = [e for e in events if e["type"] == "permission.resolved"]
    assert [e["data"]["status"] for e in resolved] == [{"once": "accept"}.get(reply, "reject")]
    if reply == "once":
        assert target.read_text().strip() == "data"
    else:
        assert not target.exists()
    checked(s, "perm")


def test_cancel_then_a_new_prompt(setup: Setup) -> None:
    s = setup
    create(s, "cancel")
    before = send(s, "cancel", "SLOW please")
    wait_for(s.client, "cancel", "item.delta", after=before, timeout=TURN_TIMEOUT)
    started = time.monotonic()
    response = s.client.post("/v1/sessions/cancel/cancel")
    assert response.status_code == 204, response.text
    events = wait_for(s.client, "cancel", "turn.ended", after=before, timeout=TURN_TIMEOUT)
    assert ended_reason(events) == "cancelled"
    assert time.monotonic() - started < 20
    after = turn(s, "cancel", "Say hello")
    assert ended_reason(after) == "completed"
    assert "Hello from fake LLM" in assistant_text(after)
    checked(s, "cancel")


def test_cancel_while_a_permission_is_pending(setup: Setup) -> None:
    s = setup
    if s.agent == "acp:opencode":
        config = json.loads((s.workspace / "opencode.json").read_text())
        (s.workspace / "opencode.json").write_text(
            json.dumps({**config, "permission": {"bash": "ask"}})
        )
    create(s, "pending")
    before = send(s, "pending", "CMD<<echo data > pending.txt>>")
    wait_for(s.client, "pending", "permission.requested", after=before, timeout=TURN_TIMEOUT)
    response = s.client.post("/v1/sessions/pending/cancel")
    assert response.status_code == 204, response.text
    events = wait_for(s.client, "pending", "turn.ended", after=before, timeout=TURN_TIMEOUT)
    assert ended_reason(events) == "cancelled"
    # ACP wants pending requests answered "cancelled" on cancel; recorded as a rejection.
    (resolved,) = [e for e in events if e["type"] == "permission.resolved"]
    assert resolved["data"]["status"] == "reject"
    assert resolved["data"]["metadata"]["reason"] == "cancelled"
    assert not (s.workspace / "pending.txt").exists()
    after = turn(s, "pending", "Say hello")
    assert ended_reason(after) == "completed"
    checked(s, "pending")


def test_resume_after_a_server_restart(setup: Setup) -> None:
    s = setup
    created = create(s, "resume")
    first = turn(s, "resume", "Say hello")
    assert ended_reason(first) == "completed"
    s.server.stop(timeout=30)
    s.server.start(timeout=START_TIMEOUT)
    second = turn(s, "resume", "Say hello after the restart")
    assert ended_reason(second) == "completed"
    # Carried natively: the agent's history reached the LLM, and nothing was replayed twice.
    assert seen(assistant_text(second)) > seen(assistant_text(first))
    events = checked(s, "resume")
    resumed = [e for e in events if e["type"] == "session.resumed"]
    assert resumed and resumed[0]["data"]["native_resume"] is True
    assert events[-1]["native_session_id"] == created["nativeSessionId"]
    answers = [t for t in assistant_text(events).split("\n") if "Hello from fake LLM" in t]
    assert len(answers) == 2, answers


def test_session_mcp_servers_reach_the_agent(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup
    script = Path(__file__).parent / "fixtures" / "agents" / "claude-mcp-server.py"
    mcp = {"fixture": {"type": "local", "command": [sys.executable, str(script)]}}
    # The fake LLM calls the MCP tool (as each agent names it) where it would call the shell.
    tool = {"acp:claude": "mcp__fixture__shout", "acp:opencode": "fixture_shout"}[s.agent]
    monkeypatch.setattr(fake_llm, "SHELL_TOOL_NAMES", [tool])
    monkeypatch.setattr(fake_llm, "build_args", lambda schema, name, command: {"text": "quiet"})
    mode = {"acp:claude": "bypassPermissions", "acp:opencode": "build"}[s.agent]
    create(s, "mcp", mcp=mcp, agentMode=mode)
    events = turn(s, "mcp", "CMD<<shout>>")
    assert ended_reason(events) == "completed"
    results = [
        e["data"]["item"]
        for e in events
        if e["type"] == "item.completed" and e["data"]["item"]["kind"] == "tool_result"
    ]
    assert results and "QUIET" in results[-1]["content"][0]["output"], results
    checked(s, "mcp")


# -- the shared adapter contract, on the adapter in process --------------------------------
class PatientHarness(SessionHarness):
    """A busy machine makes the agents slower than the contract's default wait."""

    async def wait_for(
        self, predicate: Any, *, after: int = 0, seconds: float = TURN_TIMEOUT
    ) -> Any:
        return await super().wait_for(predicate, after=after, seconds=seconds)


class _AcpContract(AgentContract):
    agent = ""
    plain_prompt = "Say hello"
    long_prompt = "SLOW please"

    @pytest.fixture(autouse=True)
    def _agent(self, tmp_path: Path) -> Iterator[None]:
        require_agent(self.agent)
        with FakeLLM() as llm:
            env = offline_env(llm.url, tmp_path / "home")
            self.settings = AgentSettings(
                agents_dir=AGENTS_DIR, log_dir=tmp_path / "logs", extra_env=env
            )
            self.directory = prepare_workspace(tmp_path / "ws", llm.url)
            yield

    def make_adapter(self, sink: EventSink) -> AcpAgent:
        return AcpAgent(sink, self.settings, self.agent)

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SessionHarness]:
        harness = PatientHarness()
        config = AgentSessionConfig(
            session_id="s1", agent=self.agent, directory=str(self.directory)
        )
        await harness.create(self.make_adapter, config)
        yield harness
        await harness.adapter.stop()
        assert stream_violations(harness.events, lifecycle=False) == []


class TestAcpClaudeContract(_AcpContract):
    agent = "acp:claude"


class TestAcpOpenCodeContract(_AcpContract):
    agent = "acp:opencode"
