"""OpenCode event mapping on recorded ``opencode serve`` streams (no CLI needed).

The fixtures are real ``/event`` payloads (``opencode-serve-perm-*``, from the reference
transcripts) and a real ``/global/event`` stream of two sessions in two directories (a tool turn,
a permission rejected, a cancelled SLOW turn; ``opencode-serve-global-cancel``). Each line is
routed as the server client does (by session, server-wide events ignored) and fed to an adapter
whose REST calls are recorded instead of sent; the stored stream must have zero
``agent.unparsed`` and pass the replay invariant checker.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import AgentSessionConfig, AgentSettings, PermissionReply
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.opencode import OpenCodeAgent, _Turn, parse_models, prompt_parts
from sandbox_agent.agents.opencode_mapping import IGNORED_EVENTS, OpenCodeMapper, session_of
from sandbox_agent.agents.opencode_server import IGNORED_GLOBAL
from sandbox_agent.events import PermissionData, QuestionData
from sandbox_agent.replay import replay
from sandbox_agent.sessions import prompt_drafts

from agent_contract import SessionHarness, stream_violations

FIXTURES = Path(__file__).parent / "fixtures" / "agents"


def payloads(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    out = []
    for line in lines:
        value = json.loads(line)
        out.append(value.get("payload", value))
    return out


class OfflineOpenCode(OpenCodeAgent):
    """The adapter with its REST calls recorded (no server)."""

    IDLE_QUIET = 0.01

    def __init__(self, harness: SessionHarness, native: str, permission_mode: str = "default"):
        super().__init__(harness.sink, AgentSettings())
        self._session = AgentSessionConfig(
            session_id=harness.session_id, agent="opencode", permission_mode=permission_mode
        )
        self.native_session_id = native
        self.calls: list[tuple[str, Any]] = []

    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        pass  # the session and native id are set already; nothing runs

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        self.calls.append((method, path))
        return None

    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        self.calls.append(("permission", (request.permission_id, reply)))

    async def forward_question(
        self, request: QuestionData, answers: list[list[str]] | None
    ) -> None:
        self.calls.append(("question", (request.question_id, answers)))


async def drive(
    name: str,
    native: str,
    prompts: int,
    *,
    replies: dict[str, PermissionReply] | None = None,
    cancel_on: str | None = None,
) -> tuple[SessionHarness, OfflineOpenCode]:
    """Feed the session ``native``'s events of fixture ``name`` through an adapter.

    A user message echo starts a turn (as ``send`` would have); ``replies`` answers permissions
    through the adapter when the stream shows OpenCode got the reply; ``cancel_on`` (an event
    type) starts a cancel at the first such event of the last turn.
    """
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, native)
    await harness.create(lambda sink: adapter)
    turns = 0
    cancel: asyncio.Task[None] | None = None
    for payload in payloads(name):
        session = session_of(payload)
        if session is None:
            assert payload["type"] in IGNORED_GLOBAL | IGNORED_EVENTS, payload["type"]
            continue
        if session != native:
            continue
        props = payload["properties"]
        info = props.get("info") or {}
        is_new_user = (
            payload["type"] == "message.updated"
            and info.get("role") == "user"
            and "summary" not in info
        )
        if is_new_user and adapter._turn is None and turns < prompts:
            turns += 1
            await harness.append(_prompt(harness))
            adapter._turn = _Turn()
            adapter._turn.sent_ms = int(info["time"]["created"])
        if payload["type"] == "permission.replied" and replies is not None:
            await adapter.reply_permission(props["requestID"], replies[props["requestID"]])
        if cancel_on and turns == prompts and payload["type"] == cancel_on and cancel is None:
            cancel = asyncio.create_task(harness.cancel())
            await asyncio.sleep(0)
            await _wait_aborting(adapter)
        await adapter.handle(payload)
        await settle(adapter)
    if cancel is not None:
        await asyncio.wait_for(cancel, 5)
    return harness, adapter


async def settle(adapter: OfflineOpenCode) -> None:
    """Let a turn that saw its idle end (the quiet period after it)."""
    await asyncio.sleep(0)
    turn = adapter._turn
    if turn is not None and turn.finisher is not None:
        await asyncio.wait_for(turn.finisher, 5)


async def _wait_aborting(adapter: OfflineOpenCode) -> None:
    for _ in range(100):
        if adapter._turn is None or adapter._turn.cancelling:
            return
        await asyncio.sleep(0.01)


def _prompt(harness: SessionHarness) -> list[Any]:
    return prompt_drafts("prompt", item_id=harness.normaliser.new_item_id())


def check(harness: SessionHarness) -> list[str]:
    """The stream is clean; returns its event types."""
    events = harness.events
    assert [e for e in events if e.type == "agent.unparsed"] == []
    assert stream_violations(events) == []
    state = replay(events)
    assert state.anomalies == [], state.anomalies
    return [e.type for e in events]


async def test_permission_once_stream() -> None:
    native = "ses_de9478f6fffeRDIhmESdwwKY7e"
    harness, adapter = await drive(
        "opencode-serve-perm-once.events.jsonl",
        native,
        1,
        replies={"per_216b8754e0018J9G5dcrlGaF5N": "once"},
    )
    types = check(harness)
    assert adapter.calls == [("permission", ("per_216b8754e0018J9G5dcrlGaF5N", "once"))]
    assert types.count("turn.ended") == 1 and types[-1] == "turn.ended"
    assert harness.events[-1].data["reason"] == "completed"
    items = [e.data["item"] for e in harness.events if e.type == "item.completed"]
    calls = [i for i in items if i["kind"] == "tool_call"]
    assert calls[0]["content"][0]["name"] == "bash"
    assert json.loads(calls[0]["content"][0]["arguments"]) == {
        "command": "echo data > oc_serve_once.txt"
    }
    results = [i for i in items if i["kind"] == "tool_result"]
    assert results[0]["status"] == "completed"
    assert results[0]["content"][0]["output"] == "(no output)"
    texts = [i for i in items if i["kind"] == "message" and i["role"] == "assistant"]
    assert texts[-1]["content"] == [{"type": "text", "text": "Tool result received: (no output)"}]
    # The user's prompt is recorded once, by the session layer, never echoed as an item.
    assert [i for i in items if i["role"] == "user"] == [items[0]]
    requested = [e for e in harness.events if e.type == "permission.requested"]
    assert requested[0].data["action"] == "bash"
    assert requested[0].data["metadata"]["patterns"] == ["echo data > oc_serve_once.txt"]
    resolved = [e for e in harness.events if e.type == "permission.resolved"]
    assert [(e.data["status"], e.source) for e in resolved] == [("accept", "client")]


async def test_permission_reject_stream() -> None:
    lines = payloads("opencode-serve-perm-reject.events.jsonl")
    native = next(p["properties"]["sessionID"] for p in lines if p["type"] == "session.created")
    asked = next(p["properties"]["id"] for p in lines if p["type"] == "permission.asked")
    harness, adapter = await drive(
        "opencode-serve-perm-reject.events.jsonl", native, 1, replies={asked: "reject"}
    )
    check(harness)
    assert adapter.calls == [("permission", (asked, "reject"))]
    results = [
        e.data["item"]
        for e in harness.events
        if e.type == "item.completed" and e.data["item"]["kind"] == "tool_result"
    ]
    assert results and results[0]["status"] == "failed"
    resolved = [e.data["status"] for e in harness.events if e.type == "permission.resolved"]
    assert resolved == ["reject"]


async def test_permission_answered_elsewhere_is_resolved_once() -> None:
    native = "ses_de9478f6fffeRDIhmESdwwKY7e"
    harness, adapter = await drive("opencode-serve-perm-once.events.jsonl", native, 1)
    check(harness)
    assert adapter.calls == []
    resolved = [e for e in harness.events if e.type == "permission.resolved"]
    assert [(e.data["status"], e.source) for e in resolved] == [("accept", "agent")]


async def test_two_directories_one_stream_with_a_cancel() -> None:
    """The ``/global/event`` recording: ws1's tool turn then a SLOW turn cancelled mid-way;
    ws2's permission (answered by the recorder's own client: resolved with source agent)."""
    lines = payloads("opencode-serve-global-cancel.events.jsonl")
    created = [p["properties"]["sessionID"] for p in lines if p["type"] == "session.created"]
    ws1, ws2 = created
    harness, _ = await drive(
        "opencode-serve-global-cancel.events.jsonl", ws1, 2, cancel_on="session.error"
    )
    types = check(harness)
    ends = [e.data["reason"] for e in harness.events if e.type == "turn.ended"]
    assert ends == ["completed", "cancelled"]
    assert "error" not in types  # the abort's MessageAbortedError is ours
    slow = [
        e.data["item"]
        for e in harness.events
        if e.type == "item.completed" and e.data["item"]["role"] == "assistant"
    ][-1]
    assert slow["content"][0]["text"].startswith("slow0 slow1")
    # Nothing after the session layer's turn.ended{cancelled}: the late idle was swallowed.
    assert types[-1] == "turn.ended"

    harness2, _ = await drive("opencode-serve-global-cancel.events.jsonl", ws2, 1)
    check(harness2)
    statuses = [e.data["status"] for e in harness2.events if e.type == "permission.resolved"]
    assert statuses == ["reject"]


async def test_stale_idle_does_not_end_the_next_turn() -> None:
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, "ses_x")
    await harness.create(lambda sink: adapter)
    await harness.append(_prompt(harness))
    adapter._turn = _Turn()
    idle = {"type": "session.idle", "properties": {"sessionID": "ses_x"}}
    await adapter.handle(idle)  # before the prompt's own user message: a stray one
    assert adapter._turn is not None
    user = {
        "type": "message.updated",
        "properties": {
            "sessionID": "ses_x",
            "info": {"id": "msg_1", "role": "user", "time": {"created": adapter._turn.sent_ms}},
        },
    }
    await adapter.handle(user)
    await adapter.handle(idle)
    await settle(adapter)
    assert adapter._turn is None
    assert [e.type for e in harness.events][-1] == "turn.ended"
    check(harness)


async def test_session_error_ends_the_turn_with_error() -> None:
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, "ses_x")
    await harness.create(lambda sink: adapter)
    await harness.append(_prompt(harness))
    adapter._turn = _Turn()
    error = {
        "type": "session.error",
        "properties": {
            "sessionID": "ses_x",
            "error": {"name": "APIError", "data": {"message": "boom"}},
        },
    }
    await adapter.handle(error)
    await adapter.handle({"type": "session.idle", "properties": {"sessionID": "ses_x"}})
    await settle(adapter)
    types = check(harness)
    assert types[-2:] == ["error", "turn.ended"]
    assert harness.events[-2].data["message"] == "boom"
    assert harness.events[-1].data["reason"] == "error"


async def test_unknown_event_is_unparsed_with_raw() -> None:
    mapper = OpenCodeMapper()
    payload = {"type": "session.brand_new", "properties": {"sessionID": "ses_x"}}
    out = mapper.map(payload)
    assert [d.type for d in out.drafts] == ["agent.unparsed"]
    assert out.drafts[0].raw == payload
    bad = mapper.map({"type": "message.updated", "properties": {"sessionID": "s"}})
    assert [d.type for d in bad.drafts] == ["agent.unparsed"]


async def test_question_is_asked_and_answered() -> None:
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, "ses_x")
    await harness.create(lambda sink: adapter)
    await harness.append(_prompt(harness))
    adapter._turn = _Turn()
    asked = {
        "type": "question.asked",
        "properties": {
            "id": "que_1",
            "sessionID": "ses_x",
            "questions": [
                {
                    "question": "Which colour?",
                    "header": "Colour",
                    "options": [
                        {"label": "Red", "description": "r"},
                        {"label": "Blue", "description": "b"},
                    ],
                }
            ],
        },
    }
    await adapter.handle(asked)
    requested = harness.events[-1]
    assert requested.type == "question.requested"
    assert requested.data["prompt"] == "Which colour?"
    assert requested.data["options"] == ["Red", "Blue"]
    await adapter.reply_question("que_1", [["Blue"]])
    assert adapter.calls == [("question", ("que_1", [["Blue"]]))]
    assert harness.events[-1].data["response"] == "Blue"
    # OpenCode's own echo of the reply changes nothing.
    replied = {
        "type": "question.replied",
        "properties": {"sessionID": "ses_x", "requestID": "que_1", "answers": [["Blue"]]},
    }
    count = len(harness.events)
    await adapter.handle(replied)
    assert len(harness.events) == count
    await harness.append([turn_ended_draft("completed")])
    check(harness)


async def test_bypass_answers_a_stray_permission_at_once() -> None:
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, "ses_x", permission_mode="bypass")
    await harness.create(lambda sink: adapter)
    await harness.append(_prompt(harness))
    adapter._turn = _Turn()
    asked = {
        "type": "permission.asked",
        "properties": {
            "id": "per_1",
            "sessionID": "ses_x",
            "permission": "bash",
            "patterns": ["ls"],
            "metadata": {},
            "always": ["ls *"],
        },
    }
    await adapter.handle(asked)
    assert adapter.calls == [("permission", ("per_1", "once"))]
    assert [e.type for e in harness.events][-2:] == ["permission.requested", "permission.resolved"]
    assert harness.events[-1].synthetic


def test_prompt_parts_and_models() -> None:
    parts = prompt_parts("hi", [])
    assert parts == [{"type": "text", "text": "hi"}]
    body = {
        "providers": [
            {
                "id": "fake",
                "models": {
                    "fake-model": {
                        "id": "fake-model",
                        "name": "Fake",
                        "variants": {"b": {}, "a": {}},
                    }
                },
            },
            {"id": "other", "models": {"m": {"name": "M"}}},
        ],
        "default": {"other": "m"},
    }
    models = parse_models(body)
    assert [m.id for m in models.models] == ["fake/fake-model", "other/m"]
    assert models.models[0].variants == ["a", "b"]
    assert models.default_model == "other/m"
    assert parse_models(None).models == []


@pytest.mark.parametrize(
    "name",
    [
        "opencode-serve-perm-once.events.jsonl",
        "opencode-serve-perm-reject.events.jsonl",
        "opencode-serve-global-cancel.events.jsonl",
    ],
)
def test_every_line_is_mapped_or_ignored(name: str) -> None:
    mapper = OpenCodeMapper()
    for payload in payloads(name):
        if session_of(payload) is None:
            assert payload["type"] in IGNORED_GLOBAL | IGNORED_EVENTS
            continue
        out = mapper.map(payload)
        assert all(d.type != "agent.unparsed" for d in out.drafts), payload


def _ev(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "properties": {"sessionID": "ses_x", **props}}


async def test_idle_before_the_last_parts_keeps_them_in_the_turn() -> None:
    """The stream is not strictly ordered: an idle that overtakes the end of a message waits."""
    harness = SessionHarness()
    adapter = OfflineOpenCode(harness, "ses_x")
    await harness.create(lambda sink: adapter)
    await harness.append(_prompt(harness))
    turn = adapter._turn = _Turn()
    now = {"created": turn.sent_ms}
    text = {"id": "prt_t", "messageID": "msg_a", "sessionID": "ses_x", "type": "text"}
    for payload in [
        _ev("message.updated", info={"id": "msg_u", "role": "user", "time": now}),
        _ev("message.updated", info={"id": "msg_a", "role": "assistant", "time": now}),
        _ev("message.part.updated", part={**text, "text": ""}),
        _ev("session.idle"),
        _ev("message.part.delta", messageID="msg_a", partID="prt_t", field="text", delta="Hi"),
        _ev("message.part.updated", part={**text, "text": "Hi", "time": {"start": 1, "end": 2}}),
        _ev(
            "message.updated",
            info={"id": "msg_a", "role": "assistant", "time": {**now, "completed": 3}},
        ),
        # A part after its message completed still gets its own item.
        _ev(
            "message.part.updated",
            part={**text, "id": "prt_u", "text": "late", "time": {"start": 1, "end": 2}},
        ),
    ]:
        await adapter.handle(payload)
    await settle(adapter)
    types = check(harness)
    assert types[-1] == "turn.ended"
    texts = [
        e.data["item"]["content"][0]["text"]
        for e in harness.events
        if e.type == "item.completed" and e.data["item"]["role"] == "assistant"
    ]
    assert texts == ["Hi", "late"]


def test_mcp_config_translation() -> None:
    from sandbox_agent.agents.errors import InvalidMcpConfig
    from sandbox_agent.agents.mcp import parse_mcp_server
    from sandbox_agent.agents.opencode import mcp_config

    local = mcp_config(
        parse_mcp_server(
            "l",
            {"type": "stdio", "command": ["python3", "-u"], "args": ["srv.py"], "env": {"A": "1"}},
        ),
        {},
    )
    assert local == {
        "type": "local",
        "command": ["python3", "-u", "srv.py"],
        "environment": {"A": "1"},
    }
    remote = mcp_config(
        parse_mcp_server(
            "r",
            {
                "type": "http",
                "url": "http://127.0.0.1:9/mcp",
                "bearerTokenEnvVar": "TOKEN",
                "envHeaders": {"X-Key": "KEY"},
                "timeoutMs": 1500,
            },
        ),
        {"TOKEN": "t", "KEY": "k"},
    )
    assert remote == {
        "type": "remote",
        "url": "http://127.0.0.1:9/mcp",
        "timeout": 1500,
        "headers": {"Authorization": "Bearer t", "X-Key": "k"},
    }
    # What OpenCode could not take is refused by the parse, before any agent sees it.
    with pytest.raises(InvalidMcpConfig, match="type: 'carrier-pigeon'"):
        parse_mcp_server("x", {"type": "carrier-pigeon"})
    with pytest.raises(InvalidMcpConfig, match="command"):
        parse_mcp_server("x", {"type": "local"})
