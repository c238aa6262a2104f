"""Amp end to end: the real ``amp`` CLI through our real server, against the fake Amp server.

Amp's agent loop runs on Amp's own server, so these tests run ``tests/helpers/fake_amp.py`` on
127.0.0.1 in its place (the CLI talks to nothing else); the CLI runs the tools for real. The server
process gets ``AMP_URL`` (the fake), ``AMP_API_KEY``, a clean ``HOME`` and ``NO_COLOR``.

Covered: a plain turn, a tool turn whose command really ran, a continued thread (history on the
fake's side), a resumed session after a server restart, permission rules (a rule's refusal is a
failed tool result; ``bypass`` runs it), a cancel, an image attachment; and the shared adapter
contract on the real CLI. Amp has no interactive approval in execute mode, so there is no
``once``/``reject`` reply to test.

Run: ``.venv/bin/pytest -m agents tests/test_agents_amp_e2e.py``.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentSessionConfig, AgentSettings, EventSink
from sandbox_agent.agents.amp import AmpAgent
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.server import ServerProcess, events_of, running, stream_turn, wait_for

from agent_contract import AgentContract, SessionHarness, stream_violations
from helpers.acp_client import AcpClient, answer_to, chunk_text, updates
from helpers.agent_env import AGENTS_DIR, require_agent
from helpers.fake_amp import FakeAmp

pytestmark = pytest.mark.agents

AMP_KEY = "sgamp_fake_key"
TURN_TIMEOUT = 60.0


def amp_env(fake: FakeAmp, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "AMP_URL": fake.url,
        "AMP_API_KEY": AMP_KEY,
        "NO_COLOR": "1",
        "SANDBOX_AGENT_AGENTS_DIR": str(AGENTS_DIR),
    }


@pytest.fixture
def fake() -> Iterator[FakeAmp]:
    require_agent("amp")
    with FakeAmp() as amp:
        yield amp


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def server(fake: FakeAmp, tmp_path: Path) -> Iterator[ServerProcess]:
    env = amp_env(fake, tmp_path / "home")
    args = ["--no-token", "--root", str(tmp_path)]  # the workspace lies inside the root
    with running(
        sqlite_url(tmp_path / "store.db"), tmp_path / "server.log", env=env, args=args
    ) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TURN_TIMEOUT) as c:
        yield c


def create(client: httpx.Client, session_id: str, workspace: Path, **body: Any) -> None:
    response = client.post(
        f"/v1/sessions/{session_id}",
        json={"agent": "amp", "directory": str(workspace), **body},
    )
    assert response.status_code == 200, response.text


def items(events: list[dict[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
    found = [e["data"]["item"] for e in events if e["type"] == "item.completed"]
    return [i for i in found if kind is None or i["kind"] == kind]


def assistant_texts(events: list[dict[str, Any]]) -> list[str]:
    return [
        p["text"]
        for i in items(events, "message")
        if i["role"] == "assistant"
        for p in i["content"]
        if p["type"] == "text"
    ]


def check_turn(events: list[dict[str, Any]], reason: str = "completed") -> None:
    """One user item from the client, no unparsed line, the turn ended with ``reason``."""
    users = [i for i in items(events, "message") if i["role"] == "user"]
    assert len(users) == 1, users
    assert not [e for e in events if e["type"] == "agent.unparsed"], events
    assert events[-1]["type"] == "turn.ended", events[-1]
    assert events[-1]["data"]["reason"] == reason, events[-1]


def turn(client: httpx.Client, session_id: str, prompt: str) -> list[dict[str, Any]]:
    events = stream_turn(client, session_id, prompt)
    check_turn(events)
    return events


def thread_of(client: httpx.Client, session_id: str) -> str:
    events = events_of(client, session_id)
    natives = {e["native_session_id"] for e in events if e["source"] == "agent"}
    assert len(natives) == 1, natives
    (thread,) = natives
    assert isinstance(thread, str) and thread.startswith("T-")
    return thread


def test_plain_turn(client: httpx.Client, fake: FakeAmp, workspace: Path) -> None:
    create(client, "plain", workspace)
    events = turn(client, "plain", "Say hello")
    assert assistant_texts(events) == ["Hello from fake Amp. The thread has 1 message(s)."]
    thread = thread_of(client, "plain")
    assert [m["role"] for m in fake.messages(thread)] == ["user", "assistant"]
    assert fake.messages(thread)[0]["content"] == [{"type": "text", "text": "Say hello"}]
    check_stream(events_of(client, "plain"))


def test_tool_turn_runs_the_command(client: httpx.Client, workspace: Path) -> None:
    create(client, "tool", workspace)
    events = turn(client, "tool", "Please CMD<<echo made-by-amp > made.txt; echo done>>")
    assert (workspace / "made.txt").read_text() == "made-by-amp\n"
    (call,) = items(events, "tool_call")
    (result,) = items(events, "tool_result")
    assert call["content"][0]["name"] == "shell_command"
    assert json.loads(call["content"][0]["arguments"])["command"].startswith("echo made-by-amp")
    assert result["parent_id"] == call["item_id"]
    assert result["status"] == "completed"
    assert json.loads(result["content"][0]["output"]) == {"output": "done\n", "exitCode": 0}
    assert assistant_texts(events)[-1].startswith("Tool result received")
    check_stream(events_of(client, "tool"))


def test_continued_thread_carries_history(
    client: httpx.Client, fake: FakeAmp, workspace: Path
) -> None:
    create(client, "cont", workspace)
    turn(client, "cont", "first")
    second = turn(client, "cont", "second")
    # user + assistant of turn 1, then this user message: the same thread, continued
    assert assistant_texts(second) == ["Hello from fake Amp. The thread has 3 message(s)."]
    thread = thread_of(client, "cont")
    assert len(fake.threads) == 1
    assert len(fake.messages(thread)) == 4
    check_stream(events_of(client, "cont"))


def test_resumed_after_a_server_restart(fake: FakeAmp, tmp_path: Path, workspace: Path) -> None:
    env = amp_env(fake, tmp_path / "home")
    store = sqlite_url(tmp_path / "store.db")
    args = ["--no-token", "--root", str(tmp_path)]
    server = ServerProcess(store, tmp_path / "server.log", env=env, args=args).start()
    try:
        with httpx.Client(base_url=server.url, timeout=TURN_TIMEOUT) as c:
            create(c, "res", workspace)
            turn(c, "res", "before the restart")
            thread = thread_of(c, "res")
        server.stop()
        server.start()
        with httpx.Client(base_url=server.url, timeout=TURN_TIMEOUT) as c:
            events = turn(c, "res", "after the restart")
            assert assistant_texts(events) == ["Hello from fake Amp. The thread has 3 message(s)."]
            assert thread_of(c, "res") == thread
            stored = events_of(c, "res")
            resumed = [e for e in stored if e["type"] == "session.resumed"]
            assert [r["data"]["native_resume"] for r in resumed] == [True]
            check_stream(stored)
        assert len(fake.messages(thread)) == 4
    finally:
        server.stop()
        server.kill()


RULES = [
    {"tool": "shell_command", "action": "reject", "matches": {"command": "*forbidden*"}},
    {"tool": "shell_command", "action": "ask", "matches": {"command": "*asked*"}},
]


@pytest.mark.parametrize("marker", ["forbidden", "asked"])
def test_permission_rules_refuse_and_bypass_runs(
    client: httpx.Client, tmp_path: Path, workspace: Path, marker: str
) -> None:
    settings = tmp_path / "home" / ".config" / "amp" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"amp.permissions": RULES}))

    create(client, "rules", workspace)
    events = turn(client, "rules", f"CMD<<touch {marker}-default>>")
    assert not (workspace / f"{marker}-default").exists()
    (result,) = items(events, "tool_result")
    assert result["status"] == "failed"
    assert result["content"][0]["output"].startswith("Tool rejected by plugin")
    assert not [e for e in events if e["type"].startswith("permission.")]

    create(client, "bypass", workspace, permissionMode="bypass")
    events = turn(client, "bypass", f"CMD<<touch {marker}-bypass>>")
    assert (workspace / f"{marker}-bypass").exists()
    (result,) = items(events, "tool_result")
    assert result["status"] == "completed"
    check_stream(events_of(client, "rules"))
    check_stream(events_of(client, "bypass"))


def test_cancel_then_a_new_prompt(client: httpx.Client, fake: FakeAmp, workspace: Path) -> None:
    create(client, "cancel", workspace)
    response = client.post("/v1/sessions/cancel/messages", json={"message": "SLOW please"})
    assert response.status_code == 204, response.text
    deadline = time.monotonic() + TURN_TIMEOUT
    while "Working on it slowly." not in assistant_texts(events_of(client, "cancel")):
        assert time.monotonic() < deadline, "the agent never started answering"
        time.sleep(0.1)
    started = time.monotonic()
    assert client.post("/v1/sessions/cancel/cancel").status_code == 204
    assert time.monotonic() - started < 15
    stored = events_of(client, "cancel")
    assert (stored[-1]["type"], stored[-1]["data"]["reason"]) == ("turn.ended", "cancelled")
    time.sleep(1.5)
    assert len(events_of(client, "cancel")) == len(stored), "events after the cancel"
    thread = thread_of(client, "cancel")
    assert any(
        isinstance(r.get("ws_in"), dict) and r["ws_in"].get("method") == "client_cancel"
        for r in fake.requests
    )
    # the session takes a new prompt, on the same thread
    events = turn(client, "cancel", "after the cancel")
    assert assistant_texts(events) == ["Hello from fake Amp. The thread has 3 message(s)."]
    assert thread_of(client, "cancel") == thread
    check_stream(events_of(client, "cancel"))


def png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0\xff\0\0")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_an_image_attachment_reaches_amp(
    client: httpx.Client, fake: FakeAmp, workspace: Path
) -> None:
    (workspace / "dot.png").write_bytes(png_1x1())
    create(client, "image", workspace)
    body = {"message": "what is this", "attachments": [{"path": "dot.png", "mime": "image/png"}]}
    response = client.post("/v1/sessions/image/messages", json=body)
    assert response.status_code == 204, response.text
    events = wait_for(client, "image", "turn.ended", timeout=TURN_TIMEOUT)
    assert events[-1]["data"]["reason"] == "completed"
    (user,) = fake.messages(thread_of(client, "image"))[:1]
    kinds = [b["type"] for b in user["content"]]
    assert kinds == ["text", "image"]
    assert base64.b64decode(user["content"][1]["source"]["data"]) == png_1x1()


# -- the shared adapter contract, on the real CLI -----------------------------------------------
class PatientHarness(SessionHarness):
    """An amp turn is a new CLI process (1-3 s, more on a busy machine): wait longer."""

    async def wait_for(
        self, predicate: Any, *, after: int = 0, seconds: float = TURN_TIMEOUT
    ) -> Any:
        return await super().wait_for(predicate, after=after, seconds=seconds)


class TestAmpContract(AgentContract):
    plain_prompt = "Say hello"
    long_prompt = "SLOW please"

    @pytest.fixture(autouse=True)
    def _fake(self, fake: FakeAmp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        env = amp_env(fake, tmp_path / "home")
        monkeypatch.setenv("HOME", env["HOME"])
        self.settings = AgentSettings(
            agents_dir=AGENTS_DIR,
            log_dir=tmp_path / "logs",
            extra_env={k: env[k] for k in ("AMP_URL", "AMP_API_KEY", "NO_COLOR")},
        )
        self.directory = tmp_path

    def make_adapter(self, sink: EventSink) -> AmpAgent:
        return AmpAgent(sink, self.settings)

    @pytest.fixture
    async def harness(self) -> Any:
        harness = PatientHarness()
        config = AgentSessionConfig(session_id="s1", agent="amp", directory=str(self.directory))
        await harness.create(self.make_adapter, config)
        yield harness
        await harness.adapter.stop()
        assert stream_violations(harness.events, lifecycle=False) == []


def test_amp_answers_an_acp_client(client: httpx.Client, workspace: Path) -> None:
    """``native:amp`` on the ACP endpoint (amp has no ACP command of its own): a prompt
    answered as chunks, then a tool turn whose call and result reach the client. Amp asks no
    permission in execute mode, so there is none to answer here."""
    acp = AcpClient(client, "nat", "native:amp")
    initialized = acp.request("initialize", protocolVersion=1)
    assert initialized["result"]["agentCapabilities"]["loadSession"] is True
    session = acp.request("session/new", cwd=str(workspace), mcpServers=[])["result"]["sessionId"]
    assert session.startswith("amp-"), session  # amp's thread id comes with its first turn
    hello = [{"type": "text", "text": "Say hello"}]
    asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=hello)
    envelopes = acp.until(answer_to(asked))
    assert envelopes[-1]["result"] == {"stopReason": "end_turn"}
    assert answer.result(timeout=TURN_TIMEOUT)["result"] == {"stopReason": "end_turn"}
    assert updates(envelopes, "agent_message_chunk")
    text = chunk_text(envelopes)
    assert text == "Hello from fake Amp. The thread has 1 message(s)."
    assert assistant_texts(events_of(client, "acp-nat")) == [text]

    prompt = [{"type": "text", "text": "Please CMD<<echo made-by-amp > made.txt; echo done>>"}]
    asked, answer = acp.request_later("session/prompt", sessionId=session, prompt=prompt)
    assert answer.result(timeout=TURN_TIMEOUT)["result"] == {"stopReason": "end_turn"}
    assert (workspace / "made.txt").read_text() == "made-by-amp\n"
    envelopes = acp.until(answer_to(asked))
    [call] = updates(envelopes, "tool_call")
    assert call["title"] == "shell_command"
    assert call["rawInput"]["command"].startswith("echo made-by-amp")
    [done] = updates(envelopes, "tool_call_update")
    assert done["toolCallId"] == call["toolCallId"] and done["status"] == "completed"
    assert json.loads(done["content"][0]["content"]["text"]) == {"output": "done\n", "exitCode": 0}
    # The stream from its start: both turns' chunks, this one's answer last.
    assert chunk_text(envelopes).endswith(
        'Tool result received: {"output": "done\\n", "exitCode": 0}'
    )
    check_stream(events_of(client, "acp-nat"))
