"""The ACP adapter on recorded transcripts (no agent CLI needed).

Each recorded ACP session (``tests/fixtures/agents/*acp*.jsonl``, from
``shared/reference/agents/transcripts``) is replayed by a fake agent process
(``acp_replay_agent.py``) to the real ``AcpAgent``, driven as the session layer drives it: the
prompts of the recording, the permission answers of the recording. Every line must be mapped or
deliberately ignored (no ``agent.unparsed``), the stream must pass the replay invariant checker,
and on ``session/load`` the replayed history must not show up again. ``AcpMapper`` cases the
transcripts do not cover are unit-tested below.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import AgentError, AgentSessionConfig, AgentSettings
from sandbox_agent.agents.acp import AcpAgent
from sandbox_agent.agents.acp_mapping import AcpMapper
from sandbox_agent.events import EventDraft, UniversalEvent, new_event_id, utc_now
from sandbox_agent.replay import replay
from sandbox_agent.sessions import Normaliser, prompt_drafts

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
REPLAY_AGENT = FIXTURES / "acp_replay_agent.py"

SESSIONS = [
    "claude-agent-acp-session",
    "claude-code-acp-session",
    "claude-code-acp-native-session",
    "codex-acp-session",
    "codex-acp2-session",
    "opencode-acp-session",
]
LOADS = [name.replace("-session", "-load") for name in SESSIONS]
#: The agent mode each recording's client asked for (``session/set_mode``), if any.
MODES = {"codex-acp2-session": "read-only"}


class Recorder:
    """The session layer in miniature: normalise, number, keep."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.normaliser = Normaliser()
        self.events: list[UniversalEvent] = []
        self.changed = asyncio.Event()

    async def sink(self, drafts: Sequence[EventDraft]) -> None:
        for draft in self.normaliser.normalise(drafts):
            self.events.append(
                draft.to_event(
                    session_id=self.session_id,
                    sequence=len(self.events) + 1,
                    event_id=new_event_id(),
                    time=utc_now(),
                )
            )
        self.changed.set()

    def of_type(self, event_type: str) -> list[UniversalEvent]:
        return [e for e in self.events if e.type == event_type]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _wait(recorder: Recorder, predicate: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            recorder.changed.clear()
            await recorder.changed.wait()


async def _finish_turn(
    agent: AcpAgent, recorder: Recorder, n: int, answers: list[dict[str, Any]]
) -> None:
    """Wait for the n-th ``turn.ended``, answering permissions as the recording did."""
    answered = {e.data["permission_id"] for e in recorder.of_type("permission.resolved")}

    def unanswered() -> list[UniversalEvent]:
        return [
            e
            for e in recorder.of_type("permission.requested")
            if e.data["permission_id"] not in answered
        ]

    def ended() -> bool:
        return len(recorder.of_type("turn.ended")) >= n

    while True:
        await _wait(recorder, lambda: ended() or bool(unanswered()))
        if ended():
            return
        for event in unanswered():
            pid = event.data["permission_id"]
            answered.add(pid)
            option_id = answers.pop(0)["optionId"]
            options = event.data["metadata"]["options"]
            kind = next(o["kind"] for o in options if o["optionId"] == option_id)
            reply = {"allow_once": "once", "allow_always": "always"}.get(kind, "reject")
            await agent.reply_permission(pid, reply)  # type: ignore[arg-type]


async def run_transcript(
    name: str, tmp_path: Path, *, directory: Path = FIXTURES, dies: bool = False
) -> tuple[Recorder, list[dict[str, Any]]]:
    """Replay ``name`` through an ``AcpAgent``; the events and what the adapter sent."""
    recorded_in = _lines(directory / f"{name}.stdin.jsonl")
    log = tmp_path / f"{name}.sent.jsonl"
    command: tuple[str, ...] = (
        sys.executable,
        str(REPLAY_AGENT),
        str(directory / f"{name}.jsonl"),
        str(log),
        *(["--exit"] if dies else []),
    )
    settings = AgentSettings(log_dir=tmp_path / "logs", acp_commands={"replay": command})
    recorder = Recorder("s1")
    await recorder.sink(
        [EventDraft(type="session.started", data={"metadata": {}}, source="daemon")]
    )
    agent = AcpAgent(recorder.sink, settings, "acp:replay")
    resume = next(
        (m["params"]["sessionId"] for m in recorded_in if m.get("method") == "session/load"), None
    )
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    config = AgentSessionConfig(
        session_id="s1",
        agent="acp:replay",
        agent_mode=MODES.get(name, "build"),
        directory=str(workspace),
    )
    answers = [m["result"]["outcome"] for m in recorded_in if "method" not in m]
    try:
        await agent.start(config, resume=resume)
        prompts = [m for m in recorded_in if m.get("method") == "session/prompt"]
        for n, message in enumerate(prompts, 1):
            text = message["params"]["prompt"][0]["text"]
            await recorder.sink(
                prompt_drafts(text, item_id=recorder.normaliser.new_item_id(), turn_id=f"t{n}")
            )
            await agent.send(text)
            await _finish_turn(agent, recorder, n, answers)
    finally:
        await agent.stop()
    sent = _lines(log) if log.exists() else []
    return recorder, sent


def check(recorder: Recorder) -> None:
    state = replay(recorder.events)
    assert state.anomalies == [], state.anomalies
    assert recorder.of_type("agent.unparsed") == []
    assert recorder.of_type("error") == []


def _items(recorder: Recorder, kind: str, role: str | None = None) -> list[dict[str, Any]]:
    return [
        e.data["item"]
        for e in recorder.of_type("item.completed")
        if e.data["item"]["kind"] == kind and (role is None or e.data["item"]["role"] == role)
    ]


def _text(item: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in item["content"] if p["type"] == "text")


@pytest.mark.parametrize("name", SESSIONS)
async def test_a_recorded_session_maps_completely(name: str, tmp_path: Path) -> None:
    recorder, sent = await run_transcript(name, tmp_path)
    check(recorder)
    ended = recorder.of_type("turn.ended")
    assert [e.data["reason"] for e in ended] == ["completed", "completed"]
    assistant = [_text(i) for i in _items(recorder, "message", "assistant")]
    assert any("Hello from fake LLM" in t for t in assistant), assistant
    assert any("Tool result received" in t for t in assistant), assistant
    # The deltas of each message add up to its text.
    for item in _items(recorder, "message", "assistant"):
        deltas = [
            e.data["delta"]
            for e in recorder.of_type("item.delta")
            if e.data["item_id"] == item["item_id"]
        ]
        assert "".join(deltas) == _text(item)
    calls = _items(recorder, "tool_call")
    results = _items(recorder, "tool_result")
    assert len(calls) >= 1 and len(results) >= 1
    call_ids = {p["call_id"] for i in calls for p in i["content"] if p["type"] == "tool_call"}
    assert results[-1]["content"][0]["call_id"] in call_ids
    assert results[-1]["parent_id"] in {i["item_id"] for i in calls}
    assert results[-1]["status"] == "completed"
    # One permission, asked and answered as the recording did.
    requested = recorder.of_type("permission.requested")
    if name.startswith("claude"):
        assert requested[0].data["action"] == "Bash"
    resolved = recorder.of_type("permission.resolved")
    assert len(requested) == 1 and len(resolved) == 1
    recorded = [m for m in _lines(FIXTURES / f"{name}.stdin.jsonl") if "method" not in m]
    ours = [m for m in sent if "method" not in m]
    assert [m["result"] for m in ours] == [m["result"] for m in recorded]
    # What we sent: initialize, session/new, the prompts (same texts).
    methods = [m.get("method") for m in sent if "method" in m]
    assert methods[:2] == ["initialize", "session/new"]
    assert methods.count("session/prompt") == 2


@pytest.mark.parametrize("name", LOADS)
async def test_a_loaded_session_drops_the_replayed_history(name: str, tmp_path: Path) -> None:
    recorder, sent = await run_transcript(name, tmp_path)
    check(recorder)
    assert [m.get("method") for m in sent][:2] == ["initialize", "session/load"]
    assert [e.data["reason"] for e in recorder.of_type("turn.ended")] == ["completed"]
    assistant = [_text(i) for i in _items(recorder, "message", "assistant")]
    # Only the new answer (history was carried: the fake LLM saw more than 2 messages), none
    # of the replayed ones.
    hello = [t for t in assistant if "Hello from fake LLM. I saw " in t]
    assert len(hello) == 1, assistant
    assert "I saw 2 " not in hello[0]
    assert not any("Tool result received" in t for t in assistant), assistant
    assert _items(recorder, "tool_call") == []


# -- AcpMapper cases the recordings lack ---------------------------------------------------
def _update(update: dict[str, Any]) -> dict[str, Any]:
    return {"sessionId": "x", "update": update}


def test_unknown_and_malformed_updates_are_unparsed() -> None:
    mapper = AcpMapper()
    raw = {"method": "session/update"}
    (unknown,) = mapper.update(_update({"sessionUpdate": "brand_new_kind"}), raw)
    assert unknown.type == "agent.unparsed" and unknown.raw == raw
    assert "brand_new_kind" in unknown.data["error"]
    (malformed,) = mapper.update(_update({"sessionUpdate": "tool_call"}), raw)
    assert malformed.type == "agent.unparsed"
    (no_kind,) = mapper.update({"sessionId": "x"}, raw)
    assert no_kind.type == "agent.unparsed"


def test_ignored_updates_emit_nothing() -> None:
    mapper = AcpMapper()
    for kind in ("usage_update", "available_commands_update", "session_info_update"):
        assert mapper.update(_update({"sessionUpdate": kind})) == []


def test_thoughts_messages_and_plans() -> None:
    mapper = AcpMapper()
    drafts = [
        *mapper.update(
            _update(
                {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "Hm"}}
            )
        ),
        *mapper.update(
            _update(
                {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hi"}}
            )
        ),
        *mapper.update(
            _update(
                {
                    "sessionUpdate": "plan",
                    "entries": [{"content": "step", "priority": "high", "status": "pending"}],
                }
            )
        ),
        *mapper.close_all(),
    ]
    types = [d.type for d in drafts]
    assert types == [
        "item.started",
        "item.delta",
        "item.completed",  # the thought, closed by the message
        "item.started",
        "item.delta",
        "item.completed",  # the message, closed by the plan
        "item.completed",  # the plan
    ]
    thought = drafts[2].data["item"]
    assert thought["content"] == [{"type": "reasoning", "text": "Hm", "visibility": "public"}]
    plan = drafts[6].data["item"]
    assert plan["kind"] == "status"
    assert plan["content"][0] == {"type": "status", "label": "plan", "detail": "[pending] step"}


def test_a_failed_edit_with_a_diff() -> None:
    mapper = AcpMapper()
    drafts = mapper.update(
        _update(
            {
                "sessionUpdate": "tool_call",
                "toolCallId": "c1",
                "title": "Edit a.txt",
                "kind": "edit",
                "status": "failed",
                "locations": [{"path": "/w/a.txt"}],
                "content": [
                    {"type": "diff", "path": "/w/a.txt", "oldText": "a\n", "newText": "b\n"}
                ],
            }
        )
    )
    assert [d.type for d in drafts] == ["item.started", "item.completed", "item.completed"]
    call = drafts[1].data["item"]
    assert call["content"][0]["name"] == "edit"
    assert call["content"][1]["path"] == "/w/a.txt"
    assert call["content"][1]["action"] == "write"
    result = drafts[2].data["item"]
    assert result["status"] == "failed" and result["parent_id"] == "c1"
    diff = result["content"][1]
    assert diff["action"] == "patch" and "-a\n+b\n" in diff["diff"]
    # Later updates of a finished call are merged and dropped.
    assert mapper.update(_update({"sessionUpdate": "tool_call_update", "toolCallId": "c1"})) == []


def test_a_message_resumed_after_a_tool_call_gets_a_new_item() -> None:
    mapper = AcpMapper()

    def chunk(text: str) -> list[EventDraft]:
        return mapper.update(
            _update(
                {
                    "sessionUpdate": "agent_message_chunk",
                    "messageId": "m1",
                    "content": {"type": "text", "text": text},
                }
            )
        )

    first = chunk("a")
    mapper.update(_update({"sessionUpdate": "tool_call", "toolCallId": "t", "title": "x"}))
    second = chunk("b")
    assert first[0].data["item"]["native_item_id"] == "m1"
    assert second[0].data["item"]["native_item_id"] == "m1#2"


def test_permission_payload() -> None:
    data = AcpMapper().permission(
        {
            "toolCall": {
                "toolCallId": "t1",
                "title": "rm -rf x",
                "kind": "execute",
                "_meta": {"claudeCode": {"toolName": "Bash"}},
            },
            "options": [{"optionId": "ok", "name": "Allow", "kind": "allow_once"}],
        },
        "p1",
    )
    assert data.action == "Bash" and data.status == "requested"
    assert data.metadata is not None
    assert data.metadata["toolCallId"] == "t1"
    assert data.metadata["options"] == [{"optionId": "ok", "name": "Allow", "kind": "allow_once"}]


# -- requests of the agent, garbage, death: hand-written transcripts -----------------------
def _write_transcript(tmp_path: Path, name: str, lines: list[Any]) -> None:
    """A transcript of one session with one prompt: the agent's ``lines`` during the prompt."""
    session = "sess-1"
    stdin = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {}},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "session/prompt",
            "params": {"sessionId": session, "prompt": [{"type": "text", "text": "go"}]},
        },
    ]
    out = [
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1, "agentCapabilities": {}}},
        {"jsonrpc": "2.0", "id": 2, "result": {"sessionId": session}},
        *lines,
    ]
    (tmp_path / f"{name}.stdin.jsonl").write_text("".join(json.dumps(m) + "\n" for m in stdin))
    (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in out))


def _request(n: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 100 + n, "method": method, "params": params}


async def test_fs_terminal_and_unknown_requests_are_answered(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"  # the session directory (run_transcript)
    workspace.mkdir()
    (workspace / "inside.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "outside.txt").write_text("secret")
    _write_transcript(
        tmp_path,
        "requests",
        [
            _request(1, "fs/read_text_file", {"path": str(workspace / "inside.txt"), "line": 2}),
            _request(2, "fs/read_text_file", {"path": str(tmp_path / "outside.txt")}),
            _request(3, "fs/write_text_file", {"path": "sub/new.txt", "content": "hi"}),
            _request(4, "fs/write_text_file", {"path": "../escape.txt", "content": "x"}),
            _request(5, "terminal/create", {"command": "ls"}),
            _request(6, "brand/new_request", {}),
            {"jsonrpc": "2.0", "method": "brand/new_notification", "params": {}},
            {"jsonrpc": "2.0", "method": "_vendor/extension", "params": {}},
            "this line is not JSON",
            {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "max_tokens"}},
        ],
    )
    recorder, sent = await run_transcript("requests", tmp_path, directory=tmp_path)
    state = replay(recorder.events)
    assert state.anomalies == [], state.anomalies
    answers = {m["id"]: m for m in sent if "method" not in m}
    assert answers[101]["result"] == {"content": "two\nthree\n"}
    assert answers[102]["error"]["code"] == -32602  # outside the directory
    assert answers[103]["result"] == {}
    assert (workspace / "sub" / "new.txt").read_text() == "hi"
    assert answers[104]["error"]["code"] == -32602
    assert not (tmp_path / "escape.txt").exists()
    assert answers[105]["error"]["code"] == -32601  # terminals refused
    assert answers[106]["error"]["code"] == -32601
    errors = sorted(e.data["error"] for e in recorder.of_type("agent.unparsed"))
    assert len(errors) == 3, errors  # the unknown request, the unknown notification, garbage
    assert any("brand/new_request" in e for e in errors)
    assert any("brand/new_notification" in e for e in errors)
    assert any("not JSON" in e for e in errors)
    (ended,) = recorder.of_type("turn.ended")
    assert ended.data["reason"] == "completed"
    assert ended.data["metadata"] == {"stopReason": "max_tokens"}


async def test_an_error_answer_to_the_prompt_ends_the_turn_with_an_error(tmp_path: Path) -> None:
    _write_transcript(
        tmp_path,
        "failing",
        [{"jsonrpc": "2.0", "id": 3, "error": {"code": -32603, "message": "boom"}}],
    )
    recorder, _ = await run_transcript("failing", tmp_path, directory=tmp_path)
    assert replay(recorder.events).anomalies == []
    (error,) = recorder.of_type("error")
    assert error.data["message"] == "boom" and error.data["code"] == "acp_-32603"
    assert [e.data["reason"] for e in recorder.of_type("turn.ended")] == ["error"]


async def test_an_agent_that_dies_mid_turn_ends_the_session(tmp_path: Path) -> None:
    chunk = {"type": "text", "text": "partial"}
    update = {"sessionUpdate": "agent_message_chunk", "messageId": "m", "content": chunk}
    _write_transcript(
        tmp_path,
        "dies",
        [{"jsonrpc": "2.0", "method": "session/update", "params": {"update": update}}],
    )
    recorder, _ = await run_transcript("dies", tmp_path, directory=tmp_path, dies=True)
    assert replay(recorder.events).anomalies == []
    types = [e.type for e in recorder.events]
    assert types[-3:] == ["item.completed", "turn.ended", "session.ended"]
    ended = recorder.events[-1].data
    assert ended["terminated_by"] == "agent" and ended["exit_code"] == 0
    assert recorder.events[-3].data["item"]["content"] == [chunk]


async def test_a_prompt_after_the_agent_died_starts_it_again(tmp_path: Path) -> None:
    chunk = {"type": "text", "text": "partial"}
    update = {"sessionUpdate": "agent_message_chunk", "content": chunk}
    _write_transcript(
        tmp_path,
        "again",
        [{"jsonrpc": "2.0", "method": "session/update", "params": {"update": update}}],
    )
    log = tmp_path / "sent.jsonl"
    command = (sys.executable, str(REPLAY_AGENT), str(tmp_path / "again.jsonl"), str(log), "--exit")
    settings = AgentSettings(log_dir=tmp_path / "logs", acp_commands={"again": command})
    recorder = Recorder("s1")
    await recorder.sink([EventDraft(type="session.started", data={}, source="daemon")])
    agent = AcpAgent(recorder.sink, settings, "acp:again")
    config = AgentSessionConfig(session_id="s1", agent="acp:again", directory=str(tmp_path))
    try:
        await agent.start(config)
        for n in (1, 2):
            if n == 2:  # what the session layer records before reopening
                resumed = {"reason": "reopened", "native_resume": True}
                await recorder.sink([EventDraft(type="session.resumed", data=resumed)])
            item_id = recorder.normaliser.new_item_id()
            await recorder.sink(prompt_drafts("go", item_id=item_id, turn_id=f"t{n}"))
            await agent.send("go")
            await _wait(recorder, lambda: len(recorder.of_type("session.ended")) >= n)  # noqa: B023
    finally:
        await agent.stop()
    assert replay(recorder.events).anomalies == []
    assert [m.get("method") for m in _lines(log)].count("initialize") == 2
    assert len(_items(recorder, "message", "assistant")) == 2


def _new_session_answer(name: str) -> dict[str, Any]:
    return next(m["result"] for m in _lines(FIXTURES / f"{name}.jsonl") if m.get("id") == 2)


def test_modes_and_models_from_the_session_answers() -> None:
    from sandbox_agent.agents.acp import _models_of, _modes_of

    modes, current, option = _modes_of(_new_session_answer("claude-agent-acp-session"))
    assert "plan" in [m.id for m in modes] and current == "default" and option is None
    models, model_option = _models_of(_new_session_answer("claude-agent-acp-session"))
    assert models is not None and models.default_model == "default" and model_option == "model"
    assert "sonnet" in [m.id for m in models.models]
    # opencode offers its modes as a config option only.
    modes, current, option = _modes_of(_new_session_answer("opencode-acp-session"))
    assert [m.id for m in modes] == ["build", "plan"] and current == "build" and option == "mode"
    models, _ = _models_of(_new_session_answer("opencode-acp-session"))
    assert models is not None and models.default_model == "fake/fake-model"


async def test_an_agent_that_cannot_start_a_session_fails_start(tmp_path: Path) -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        raise AssertionError("start() emits nothing")

    missing = AgentSettings(log_dir=tmp_path, acp_commands={"x": ("/nonexistent/acp-agent",)})
    # (a spawn error, or behind setpriv, the process ending at once)
    with pytest.raises(AgentError, match=r"cannot start|did not start"):
        await AcpAgent(sink, missing, "acp:x").start(
            AgentSessionConfig(session_id="s", agent="acp:x", directory=str(tmp_path))
        )
    # An error answer to session/new (claude-agent-acp as root without IS_SANDBOX=1).
    stdin = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {}},
    ]
    out = [
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1, "agentCapabilities": {}}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "exited with code 1"}},
    ]
    (tmp_path / "refuses.stdin.jsonl").write_text("".join(json.dumps(m) + "\n" for m in stdin))
    (tmp_path / "refuses.jsonl").write_text("".join(json.dumps(m) + "\n" for m in out))
    command = (sys.executable, str(REPLAY_AGENT), str(tmp_path / "refuses.jsonl"))
    settings = AgentSettings(log_dir=tmp_path, acp_commands={"refuses": command})
    agent = AcpAgent(sink, settings, "acp:refuses")
    with pytest.raises(AgentError, match="exited with code 1"):
        await agent.start(
            AgentSessionConfig(session_id="s", agent="acp:refuses", directory=str(tmp_path))
        )
    await agent.stop()


def test_mcp_servers_as_acp_sends_them() -> None:
    from sandbox_agent.agents.acp import mcp_servers
    from sandbox_agent.agents.mcp import parse_mcp_servers

    mcp = {
        "local": {
            "type": "local",
            "command": ["python", "srv.py"],
            "args": ["-v"],
            "env": {"A": 1},
        },
        "off": {"type": "local", "command": "x", "enabled": False},
        "remote": {
            "type": "remote",
            "url": "http://127.0.0.1:9/mcp",
            "headers": {"X-Static": "s"},
            "bearerTokenEnvVar": "TOKEN",
            "envHeaders": {"X-Key": "KEY"},
        },
    }
    servers = parse_mcp_servers(mcp)
    env = {"TOKEN": "t0k", "KEY": "k3y"}
    local = {
        "name": "local",
        "command": "python",
        "args": ["srv.py", "-v"],
        "env": [{"name": "A", "value": "1"}],
    }
    assert mcp_servers(servers, env, http=False) == [local]
    remote = {
        "type": "http",
        "name": "remote",
        "url": "http://127.0.0.1:9/mcp",
        "headers": [
            {"name": "X-Static", "value": "s"},
            {"name": "Authorization", "value": "Bearer t0k"},
            {"name": "X-Key", "value": "k3y"},
        ],
    }
    assert mcp_servers(servers, env, http=True) == [local, remote]
    assert mcp_servers(None, env, http=True) == []
