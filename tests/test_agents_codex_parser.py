"""The Codex mapping and adapter on recorded ``codex app-server`` transcripts (no CLI needed).

The transcripts in ``tests/fixtures/agents/codex-appserver-*.jsonl`` are the app-server's raw
stdout (``.stdin.jsonl``: what the driver wrote), recorded against the fake LLM: ``approval``
and ``decline`` (approvalPolicy untrusted, read-only), ``resume`` (``thread/resume`` in a new
process), ``escalate`` (our default policy: on-request + workspace-write, a command asking to
leave the sandbox) and ``interrupt`` (a SLOW reply interrupted, then a new turn).

The adapter tests run ``CodexAgent`` against ``FakeServer``, which answers its requests with the
transcript's answers and records what the adapter sends back; the drafts go through the
session layer's ``Normaliser`` and the stream through the replay invariant checker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import AgentSessionConfig, AgentSettings
from sandbox_agent.agents.codex import PLAN_PREFIX, CodexAgent, mcp_servers
from sandbox_agent.agents.codex_mapping import CodexMapper, is_ignored
from sandbox_agent.agents.codex_server import (
    GLOBAL_NOTIFICATIONS,
    CodexAppServer,
    CodexRpcError,
    thread_of,
)
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import InvalidMcpConfig
from sandbox_agent.agents.mcp import parse_mcp_servers
from sandbox_agent.agents.shared import SharedServers
from sandbox_agent.events import EventDraft, UniversalEvent, utc_now
from sandbox_agent.replay import replay
from sandbox_agent.sessions import Normaliser, prompt_drafts

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
TRANSCRIPTS = ["approval", "decline", "resume", "escalate", "interrupt"]
HANDLED_REQUESTS = {"item/commandExecution/requestApproval", "item/fileChange/requestApproval"}


def lines(name: str, suffix: str = ".jsonl") -> list[dict[str, Any]]:
    path = FIXTURES / f"codex-appserver-{name}{suffix}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_response(message: dict[str, Any]) -> bool:
    return "method" not in message


def is_request(message: dict[str, Any]) -> bool:
    return "method" in message and "id" in message


# -- the mapping, line by line ------------------------------------------------------------
@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_every_line_is_mapped_or_deliberately_ignored(name: str) -> None:
    mapper = CodexMapper()
    mapped = ignored = 0
    for message in lines(name):
        if is_response(message):
            continue  # answers to our own requests
        method = message["method"]
        if is_request(message):
            assert method in HANDLED_REQUESTS
            continue
        if thread_of(message) is None:
            assert method in GLOBAL_NOTIFICATIONS, method
            continue
        drafts = mapper.notification(message)
        assert [d for d in drafts if d.type == "agent.unparsed"] == [], method
        if drafts:
            assert not is_ignored(method), method
            mapped += 1
        else:
            assert is_ignored(method) or _is_user_item(message), method
            ignored += 1
    assert mapped > 0 and ignored > 0


def _is_user_item(message: dict[str, Any]) -> bool:
    item = message["params"].get("item")
    return isinstance(item, dict) and item.get("type") == "userMessage"


def test_unknown_notification_and_item_type_become_unparsed() -> None:
    mapper = CodexMapper()
    [draft] = mapper.notification({"method": "thread/new/thing", "params": {"threadId": "t"}})
    assert draft.type == "agent.unparsed" and draft.raw["method"] == "thread/new/thing"
    assert draft.data["location"] == "codex"
    item = {"type": "hologram", "id": "h1"}
    [draft] = mapper.notification({"method": "item/started", "params": {"item": item}})
    assert draft.type == "agent.unparsed"
    [draft] = mapper.notification({"method": "item/started", "params": {}})
    assert draft.type == "agent.unparsed" and "KeyError" in draft.data["error"]


def test_file_change_and_mcp_items() -> None:
    mapper = CodexMapper()
    change = {
        "type": "fileChange",
        "id": "fc1",
        "status": "completed",
        "changes": [
            {"path": "/w/a.txt", "kind": {"type": "add"}, "diff": "+a"},
            {"path": "/w/b.txt", "kind": {"type": "update", "move_path": None}, "diff": "-b\n+c"},
        ],
    }
    started = mapper.notification({"method": "item/started", "params": {"item": change}})
    assert started[0].data["item"]["kind"] == "tool_call"
    call, result = mapper.notification({"method": "item/completed", "params": {"item": change}})
    assert call.data["item"]["content"][0]["name"] == "fileChange"
    refs = [p for p in result.data["item"]["content"] if p["type"] == "file_ref"]
    assert [(r["path"], r["action"], r["diff"]) for r in refs] == [
        ("/w/a.txt", "write", "+a"),
        ("/w/b.txt", "patch", "-b\n+c"),
    ]
    assert result.data["item"]["parent_id"] == "fc1"

    mcp = {
        "type": "mcpToolCall",
        "id": "m1",
        "server": "docs",
        "tool": "search",
        "arguments": {"q": "x"},
        "status": "failed",
        "result": None,
        "error": {"message": "boom"},
    }
    call, result = mapper.notification({"method": "item/completed", "params": {"item": mcp}})
    assert call.data["item"]["content"][0]["name"] == "docs.search"
    assert result.data["item"]["status"] == "failed"
    assert result.data["item"]["content"][0]["output"] == "boom"


def test_reasoning_deltas_and_failed_turn() -> None:
    mapper = CodexMapper()
    item = {"type": "reasoning", "id": "r1", "summary": [], "content": []}
    mapper.notification({"method": "item/started", "params": {"item": item}})
    [delta] = mapper.notification(
        {"method": "item/reasoning/summaryTextDelta", "params": {"itemId": "r1", "delta": "hm"}}
    )
    assert delta.data["native_item_id"] == "r1" and delta.data["delta"] == "hm"
    done = {**item, "summary": ["hm"], "content": ["secret"]}
    [completed] = mapper.notification({"method": "item/completed", "params": {"item": done}})
    parts = completed.data["item"]["content"]
    assert [(p["text"], p["visibility"]) for p in parts] == [
        ("hm", "public"),
        ("secret", "private"),
    ]

    error = {"message": "rate limited", "codexErrorInfo": "rateLimitExceeded"}
    params = {"threadId": "t", "turnId": "u", "willRetry": True, "error": error}
    # A retried error is a status item: an error event would end a client's messages/stream.
    [retrying] = mapper.notification({"method": "error", "params": params})
    assert retrying.type == "item.completed"
    assert retrying.data["item"]["content"][0]["label"] == "error.retrying"
    turn = {"id": "u", "items": [], "status": "failed", "error": error}
    drafts = mapper.notification({"method": "turn/completed", "params": {"turn": turn}})
    assert [d.type for d in drafts] == ["error", "turn.ended"]
    assert drafts[0].data["code"] == "rateLimitExceeded"
    assert drafts[1].data["reason"] == "error"
    # The final error notification, then the failed turn: one error event, not two.
    final = {**params, "willRetry": False, "turnId": "v"}
    [event] = mapper.notification({"method": "error", "params": final})
    assert event.type == "error" and event.data["details"]["willRetry"] is False
    turn = {**turn, "id": "v"}
    drafts = mapper.notification({"method": "turn/completed", "params": {"turn": turn}})
    assert [d.type for d in drafts] == ["turn.ended"]


# -- the adapter against a fake app-server --------------------------------------------------
@dataclass
class FakeServer:
    """Stands in for ``CodexAppServer``: answers from a transcript, records what it is sent."""

    transcript: list[dict[str, Any]]
    alive: bool = True
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    responses: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[Any, str]] = field(default_factory=list)
    handlers: dict[str, Any] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    models_cache: Any = None

    def __post_init__(self) -> None:
        self._turn_results = iter(
            [m["result"] for m in self.transcript if is_response(m) and "turn" in m["result"]]
        )
        self.thread_result = next(
            m["result"] for m in self.transcript if is_response(m) and "thread" in m["result"]
        )

    @property
    def process(self) -> Any:
        return FakeProcess()

    async def stop(self) -> None:
        self.alive = False

    def register(self, thread_id: str, handler: Any) -> None:
        self.handlers[thread_id] = handler

    def unregister(self, thread_id: str, handler: Any) -> None:
        self.handlers.pop(thread_id, None)

    async def request(self, method: str, params: dict[str, Any], **_: Any) -> Any:
        self.requests.append((method, params))
        if method in self.fail:
            raise CodexRpcError(method, {"message": "no such thread"})
        if method in ("thread/start", "thread/resume"):
            return self.thread_result
        if method == "turn/start":
            return next(self._turn_results)
        return {}

    async def respond(self, request_id: Any, result: dict[str, Any]) -> None:
        self.responses.append((request_id, result))

    async def respond_error(self, request_id: Any, message: str) -> None:
        self.errors.append((request_id, message))


class FakeProcess:
    returncode = 1

    def stderr_tail(self) -> str:
        return "panicked at the fake\n"


class Session:
    """The session layer in small: a normaliser, the stored events, the adapter."""

    def __init__(self, server: FakeServer, **config: Any) -> None:
        self.server = server
        self.normaliser = Normaliser()
        self.events: list[UniversalEvent] = []
        self.shared = SharedServers()
        self.shared._servers["codex"] = server  # type: ignore[assignment]
        self.agent = CodexAgent(self.sink, AgentSettings(shared=self.shared))
        self.config = AgentSessionConfig(
            session_id="s1", agent="codex", directory="/sandbox/ws", **config
        )
        self.turns = 0

    async def sink(self, drafts: Any) -> None:
        for draft in self.normaliser.normalise(drafts):
            self.events.append(
                draft.to_event(
                    session_id="s1",
                    sequence=len(self.events) + 1,
                    event_id=f"evt_{len(self.events) + 1}",
                    time=utc_now(),
                )
            )

    async def start(self, resume: str | None = None) -> None:
        await self.agent.start(self.config, resume=resume)
        started = EventDraft(
            type="session.started",
            data={"metadata": {"agent": "codex"}},
            source="daemon",
            synthetic=True,
            native_session_id=self.agent.native_session_id,
        )
        await self.sink([started])

    async def send(self, text: str) -> None:
        self.turns += 1
        item_id = self.normaliser.new_item_id()
        await self.sink(prompt_drafts(text, item_id=item_id, turn_id=f"turn_{self.turns}"))
        await self.agent.send(text)

    async def deliver(self, messages: list[dict[str, Any]]) -> None:
        """What the app-server's reader would do with these lines."""
        for message in messages:
            if is_response(message):
                continue
            thread = thread_of(message)
            handler = self.server.handlers.get(thread) if thread else None
            if handler is not None:
                handler.deliver(message)
        await self.agent.drained()

    def of_type(self, event_type: str) -> list[UniversalEvent]:
        return [e for e in self.events if e.type == event_type]

    def check(self) -> None:
        state = replay(self.events)
        assert state.anomalies == [], state.anomalies
        assert self.of_type("agent.unparsed") == []


def segments(transcript: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The lines before the first turn/start answer, then the lines of each turn."""
    parts: list[list[dict[str, Any]]] = [[]]
    for message in transcript:
        if is_response(message) and "turn" in message.get("result", {}):
            parts.append([])
        else:
            parts[-1].append(message)
    return parts


def prompts(name: str) -> list[str]:
    return [
        m["params"]["input"][0]["text"]
        for m in lines(name, ".stdin.jsonl")
        if m.get("method") == "turn/start"
    ]


def decisions(name: str) -> list[str]:
    return [
        m["result"]["decision"]
        for m in lines(name, ".stdin.jsonl")
        if "result" in m and "decision" in m["result"]
    ]


REPLIES = {"accept": "once", "acceptForSession": "always", "decline": "reject"}


@pytest.mark.parametrize("name", ["approval", "decline", "escalate", "resume"])
async def test_adapter_replays_transcript(name: str) -> None:
    transcript = lines(name)
    server = FakeServer(transcript)
    session = Session(server, permission_mode="plan" if name != "escalate" else "default")
    await session.start(resume="01a216b8-33d6-7d11-a109-c01911d6fb95" if name == "resume" else None)
    method, params = server.requests[0]
    assert method == ("thread/resume" if name == "resume" else "thread/start")
    assert params["cwd"] == "/sandbox/ws"
    if name != "resume":
        assert (params["approvalPolicy"], params["sandbox"]) == (
            ("on-request", "workspace-write") if name == "escalate" else ("untrusted", "read-only")
        )
    thread = server.thread_result["thread"]["id"]
    assert session.agent.native_session_id == thread

    before, *turns = segments(transcript)
    await session.deliver(before)
    expected = iter(decisions(name))
    for text, messages in zip(prompts(name), turns, strict=True):
        await session.send(text)
        assert server.requests[-1] == (
            "turn/start",
            {"threadId": thread, "input": [{"type": "text", "text": text, "text_elements": []}]},
        )
        for message in messages:
            await session.deliver([message])
            if is_request(message):
                [asked] = [
                    e for e in session.of_type("permission.requested")
                    if e.data["metadata"]["codexRequestId"] == message["id"]
                ]  # fmt: skip
                assert asked.data["action"] == "commandExecution"
                decision = next(expected)
                await session.agent.reply_permission(
                    asked.data["permission_id"],
                    REPLIES[decision],  # type: ignore[arg-type]
                )
                assert server.responses[-1] == (message["id"], {"decision": decision})

    session.check()
    ends = session.of_type("turn.ended")
    assert [e.data["reason"] for e in ends] == ["completed"] * len(turns)
    assert all(e.data["metadata"]["usage"]["total"]["totalTokens"] > 0 for e in ends)
    texts = [
        p["text"]
        for e in session.of_type("item.completed")
        if e.data["item"]["kind"] == "message" and e.data["item"]["role"] == "assistant"
        for p in e.data["item"]["content"]
    ]
    native_texts = [
        m["params"]["item"]["text"]
        for m in transcript
        if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "agentMessage"
    ]
    assert texts == native_texts
    # The prompt is the session layer's user item only; codex's userMessage items are ignored.
    users = [e for e in session.of_type("item.completed") if e.data["item"]["role"] == "user"]
    assert len(users) == len(turns) and all(e.source == "client" for e in users)
    if name in ("approval", "decline", "escalate"):
        [result] = [
            e.data["item"]
            for e in session.of_type("item.completed")
            if e.data["item"]["kind"] == "tool_result"
        ]
        assert result["status"] == ("failed" if name == "decline" else "completed")
        [resolved] = session.of_type("permission.resolved")
        assert resolved.data["status"] == ("reject" if name == "decline" else "accept")


async def test_cancel_swallows_the_interrupted_turn_end() -> None:
    transcript = lines("interrupt")
    server = FakeServer(transcript)
    session = Session(server, agent_mode="plan")
    await session.start()
    before, first, second = segments(transcript)
    await session.deliver(before)
    await session.send("SLOW please")
    # The plan mode prefix goes to codex; the stored user item is the prompt as sent.
    assert server.requests[-1][1]["input"][0]["text"] == PLAN_PREFIX + "SLOW please"
    completed_at = next(i for i, m in enumerate(first) if m.get("method") == "turn/completed")
    await session.deliver(first[:completed_at])

    cancel = asyncio.create_task(session.agent.cancel())
    await asyncio.sleep(0.05)
    assert not cancel.done()  # waits for the turn to end
    method, params = server.requests[-1]
    assert method == "turn/interrupt"
    first_turn = next(
        m["result"]["turn"]["id"] for m in transcript if "turn" in m.get("result", {})
    )
    assert params == {"threadId": _thread(server), "turnId": first_turn}
    await session.deliver(first[completed_at:])
    await asyncio.wait_for(cancel, 5)
    await session.sink([turn_ended_draft("cancelled")])

    await session.send("hi again")
    await session.deliver(second)
    session.check()
    assert [e.data["reason"] for e in session.of_type("turn.ended")] == ["cancelled", "completed"]
    [interrupted, final] = [
        e.data["item"]
        for e in session.of_type("item.completed")
        if e.data["item"]["role"] == "assistant"
    ]
    assert interrupted["status"] == "failed"
    assert interrupted["content"][0]["text"] == "slow0"  # what had streamed
    assert final["status"] == "completed"


async def test_cancel_without_turn_is_a_no_op() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server)
    await session.start()
    await session.agent.cancel()
    assert [m for m, _ in server.requests] == ["thread/start"]


def _thread(server: FakeServer) -> str:
    return str(server.thread_result["thread"]["id"])


async def test_unsupported_requests_are_refused_explicitly() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server)
    await session.start()
    thread = _thread(server)
    request = {
        "id": 41,
        "method": "item/permissions/requestApproval",
        "params": {"threadId": thread, "turnId": "u", "itemId": "i", "permissions": {}},
    }
    await session.deliver([request])
    assert server.errors and server.errors[0][0] == 41
    [refused] = session.of_type("item.completed")
    status = refused.data["item"]["content"][0]
    assert status["label"] == "codex.request.refused"
    assert json.loads(status["detail"])["method"] == "item/permissions/requestApproval"
    session.check()


async def test_app_server_refuses_unroutable_requests() -> None:
    written: list[dict[str, Any]] = []

    class Process:
        returncode = None

        async def write_json(self, message: Any) -> None:
            written.append(message)

    server = CodexAppServer(Process())  # type: ignore[arg-type]
    await server._dispatch({"id": 5, "method": "account/chatgptAuthTokens/refresh", "params": {}})
    await server._dispatch(
        {"id": 6, "method": "execCommandApproval", "params": {"conversationId": "nobody"}}
    )
    assert [(m["id"], m["error"]["code"]) for m in written] == [(5, -32601), (6, -32601)]
    await server._dispatch({"method": "account/rateLimits/updated", "params": {}})
    assert len(written) == 2


async def test_question_round_trip() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server)
    await session.start()
    thread = _thread(server)
    questions = [
        {
            "id": "color",
            "header": "Color",
            "question": "Which colour?",
            "options": [
                {"label": "red", "description": ""},
                {"label": "blue", "description": ""},
            ],
        },
        {"id": "size", "header": "Size", "question": "Which size?", "options": None},
    ]
    for rpc_id in (7, 8):
        params = {
            "threadId": thread,
            "turnId": "u",
            "itemId": f"q{rpc_id}",
            "isBlocking": True,
            "questions": questions,
        }
        await session.deliver(
            [{"id": rpc_id, "method": "item/tool/requestUserInput", "params": params}]
        )
    first, second = session.of_type("question.requested")
    assert first.data["prompt"] == "Which colour?" and first.data["options"] == ["red", "blue"]
    assert len(first.data["metadata"]["questions"]) == 2

    await session.agent.reply_question(first.data["question_id"], [["blue"], ["XL"]])
    assert server.responses[-1] == (
        7,
        {"answers": {"color": {"answers": ["blue"]}, "size": {"answers": ["XL"]}}},
    )
    await session.agent.reject_question(second.data["question_id"])
    assert server.responses[-1] == (8, {"answers": {}})
    resolved = session.of_type("question.resolved")
    assert [(e.data["status"], e.data["response"]) for e in resolved] == [
        ("answered", "blue"),
        ("rejected", None),
    ]
    session.check()


async def test_accept_edits_approves_file_changes_at_once() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server, permission_mode="acceptEdits")
    await session.start()
    thread = _thread(server)
    params = {"threadId": thread, "turnId": "u", "itemId": "fc1", "startedAtMs": 1}
    await session.deliver(
        [{"id": 3, "method": "item/fileChange/requestApproval", "params": params}]
    )
    assert server.responses == [(3, {"decision": "acceptForSession"})]
    [requested] = session.of_type("permission.requested")
    [resolved] = session.of_type("permission.resolved")
    assert requested.data["action"] == "fileChange"
    assert resolved.data["status"] == "accept_for_session" and resolved.synthetic
    # Commands still ask.
    command = {**params, "itemId": "c1", "command": "rm -rf build"}
    await session.deliver(
        [{"id": 4, "method": "item/commandExecution/requestApproval", "params": command}]
    )
    assert len(server.responses) == 1
    assert len(session.of_type("permission.requested")) == 2


async def test_legacy_approval_uses_v1_decisions() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server)
    await session.start()
    params = {"conversationId": _thread(server), "callId": "c1", "command": ["ls"], "cwd": "/"}
    await session.deliver([{"id": 9, "method": "execCommandApproval", "params": params}])
    [asked] = session.of_type("permission.requested")
    await session.agent.reply_permission(asked.data["permission_id"], "always")
    assert server.responses == [(9, {"decision": "approved_for_session"})]


async def test_server_exit_ends_the_session_and_next_send_resumes() -> None:
    transcript = lines("approval")
    server = FakeServer(transcript)
    session = Session(server)
    await session.start()
    thread = _thread(server)
    _, first, _ = segments(transcript)
    await session.send("CMD<<echo data > appserver_ok.txt>>")
    # The app-server dies while waiting on an approval.
    ask_at = next(i for i, m in enumerate(first) if is_request(m))
    await session.deliver(first[: ask_at + 1])
    assert session.of_type("permission.requested")
    server.alive = False
    session.agent.server_exited(server)  # type: ignore[arg-type]
    await session.agent.drained()
    types = [e.type for e in session.events[-4:]]
    assert types[-3:] == ["error", "turn.ended", "session.ended"]
    assert session.of_type("error")[0].data["code"] == "server_exit"
    [ended] = session.of_type("session.ended")
    assert ended.data["reason"] == "error" and ended.data["terminated_by"] == "agent"
    assert "panicked" in ended.data["stderr"]["tail"]
    assert session.of_type("turn.ended")[0].data["reason"] == "error"

    # A new app-server: the next message resumes the thread in it.
    replacement = FakeServer(transcript)
    session.shared._servers["codex"] = replacement  # type: ignore[assignment]
    await session.agent.send("again")
    assert [m for m, _ in replacement.requests] == ["thread/resume", "turn/start"]
    assert replacement.requests[0][1]["threadId"] == thread
    assert session.agent.native_session_id == thread


async def test_resume_of_unknown_thread_starts_a_new_one() -> None:
    server = FakeServer(lines("approval"), fail={"thread/resume"})
    session = Session(server)
    await session.start(resume="gone-thread")
    assert [m for m, _ in server.requests] == ["thread/resume", "thread/start"]
    assert session.agent.native_session_id == _thread(server)


async def test_stop_interrupts_and_refuses_pending_requests() -> None:
    transcript = lines("approval")
    server = FakeServer(transcript)
    session = Session(server)
    await session.start()
    _, first, _ = segments(transcript)
    await session.send("CMD<<echo data > appserver_ok.txt>>")
    ask_at = next(i for i, m in enumerate(first) if is_request(m))
    await session.deliver(first[: ask_at + 1])
    await session.agent.stop()
    methods = [m for m, _ in server.requests]
    assert methods[-2:] == ["turn/interrupt", "thread/unsubscribe"]
    assert [rpc_id for rpc_id, _ in server.errors] == [first[ask_at]["id"]]
    assert server.handlers == {}
    await session.agent.stop()  # idempotent


async def test_models_from_model_list_with_configured_default() -> None:
    pages = itertools.count()

    class ModelServer(FakeServer):
        async def request(self, method: str, params: dict[str, Any], **_: Any) -> Any:
            if method == "model/list":
                if next(pages) == 0:
                    return {
                        "data": [
                            {"id": "b-model", "displayName": "B", "isDefault": True,
                             "hidden": False, "defaultReasoningEffort": "medium",
                             "supportedReasoningEfforts": [{"reasoningEffort": "low"},
                                                           {"reasoningEffort": "medium"}]},
                            {"id": "hidden", "hidden": True},
                        ],
                        "nextCursor": "p2",
                    }  # fmt: skip
                return {"data": [{"id": "a-model", "hidden": False}], "nextCursor": None}
            if method == "config/read":
                return {"config": {"model": "custom-model"}}
            return await super().request(method, params)

    server = ModelServer(lines("approval"))
    session = Session(server)
    models = await session.agent.models()
    assert [m.id for m in models.models] == ["a-model", "b-model", "custom-model"]
    assert models.default_model == "custom-model"
    b = models.models[1]
    assert (b.name, b.variants, b.default_variant) == ("B", ["low", "medium"], "medium")
    assert await session.agent.models() is models  # cached per app-server


def test_mcp_servers_as_codex_config() -> None:
    mcp = {
        "fs": {
            "type": "local",
            "command": ["npx", "-y", "server-fs"],
            "args": ["/w"],
            "env": {"A": "1"},
            "timeoutMs": 1500,
        },
        "docs": {
            "type": "remote",
            "url": "https://mcp.example/docs",
            "headers": {"X-Team": "t"},
            "bearerTokenEnvVar": "DOCS_TOKEN",
            "envHeaders": {"X-Key": "DOCS_KEY"},
            "enabled": False,
        },
    }
    assert mcp_servers(parse_mcp_servers(mcp)) == {
        "fs": {
            "command": "npx",
            "args": ["-y", "server-fs", "/w"],
            "env": {"A": "1"},
            "tool_timeout_sec": 2,
        },
        "docs": {
            "url": "https://mcp.example/docs",
            "http_headers": {"X-Team": "t"},
            "env_http_headers": {"X-Key": "DOCS_KEY"},
            "bearer_token_env_var": "DOCS_TOKEN",
            "enabled": False,
        },
    }
    assert mcp_servers(None) == {}


def test_an_mcp_server_of_unknown_type_is_refused_not_skipped() -> None:
    # It used to be left out of codex's table silently; now the parse names it.
    with pytest.raises(InvalidMcpConfig, match="'odd': type: 'carrier-pigeon'"):
        parse_mcp_servers({"odd": {"type": "carrier-pigeon"}})


async def test_thread_start_carries_mcp_config() -> None:
    server = FakeServer(lines("approval"))
    session = Session(server, mcp={"x": {"type": "stdio", "command": "srv"}})
    await session.start()
    assert server.requests[0][0] == "thread/start"
    params = server.requests[0][1]
    assert params["config"] == {"mcp_servers": {"x": {"command": "srv", "args": []}}}
    failed = {
        "method": "mcpServer/startupStatus/updated",
        "params": {"threadId": _thread(server), "name": "x", "status": "failed", "error": "no"},
    }
    ready = {**failed, "params": {**failed["params"], "status": "ready"}}
    await session.deliver([failed, ready])
    [status] = session.of_type("item.completed")
    assert status.data["item"]["content"][0]["label"] == "mcp.startup.failed"
