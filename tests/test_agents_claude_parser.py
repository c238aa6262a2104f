"""Claude Code's stream-json mapped to events, on recorded transcripts (no CLI needed).

Each transcript in ``tests/fixtures/agents/claude-*.jsonl`` is what claude 2.1.332 printed (the
``.stdin.jsonl`` beside it is what its driver wrote). ``session_stream`` plays a transcript through
``ClaudeMapper`` the way ``ClaudeAgent`` does, with the session layer's part (``session.started``,
each prompt, ``turn.ended {cancelled}`` after an interrupt, HITL answers as the driver gave them),
then normalises and numbers it like the store: every line must be mapped or deliberately ignored
(no ``agent.unparsed``) and the stream must keep the invariants.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import (
    AgentError,
    AgentNotStarted,
    AgentSessionConfig,
    AgentSettings,
    Attachment,
    turn_ended_draft,
)
from sandbox_agent.agents import claude as claude_module
from sandbox_agent.agents.claude import ClaudeAgent, mcp_servers
from sandbox_agent.agents.claude_mapping import (
    PLAN_OPTIONS,
    ClaudeMapper,
    Mapped,
    ToolRequest,
    parse_line,
    question_answer,
)
from sandbox_agent.agents.hitl import permission_resolved, question_resolved
from sandbox_agent.agents.mcp import parse_mcp_servers
from sandbox_agent.events import EventDraft, SessionStartedData, UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.sessions import Normaliser, prompt_drafts

from agent_contract import SessionHarness, number, stream_violations

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
TRANSCRIPTS = [
    "claude-plain",
    "claude-partial",
    "claude-tool",
    "claude-resume",
    "claude-perm-denied",
    "claude-perm-mcp",
    "claude-perm-stdio",
    "claude-perm-deny-stdio",
    "claude-interrupt",
    "claude-interrupt-permission",
    "claude-plan",
    "claude-ask",
    "claude-exit-plan",
]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Played:
    """A transcript played through the mapper."""

    #: What the mapper produced, in order (the adapter's drafts).
    adapter: list[EventDraft] = field(default_factory=list)
    #: The whole stream as stored (normalised, numbered).
    events: list[UniversalEvent] = field(default_factory=list)
    mapped: list[Mapped] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[UniversalEvent]:
        return [e for e in self.events if e.type == event_type]

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [
            e.data["item"]
            for e in self.events
            if e.type == "item.completed" and e.data["item"]["kind"] == kind
        ]


def _turns_of(stdin: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """(prompt, interrupted) per user message the driver wrote."""
    turns: list[tuple[str, bool]] = []
    for line in stdin:
        if line["type"] == "user":
            turns.append((line["message"]["content"], False))
        elif line["type"] == "control_request" and line["request"]["subtype"] == "interrupt":
            turns[-1] = (turns[-1][0], True)
    return turns


def session_stream(name: str) -> Played:
    lines = read_jsonl(FIXTURES / f"{name}.jsonl")
    stdin_path = FIXTURES / f"{name}.stdin.jsonl"
    stdin = read_jsonl(stdin_path) if stdin_path.exists() else []
    # Transcripts run with `claude -p "<prompt>"` have no stdin: one turn, prompt unknown.
    turns = _turns_of(stdin) or [("(prompt given on the command line)", False)]
    # Requests claude withdrew were not answered in time (a late answer is ignored by claude).
    withdrawn = {line["request_id"] for line in lines if line["type"] == "control_cancel_request"}
    answers = {
        line["response"]["request_id"]: line["response"]["response"]
        for line in stdin
        if line["type"] == "control_response" and line["response"]["request_id"] not in withdrawn
    }
    mapper = ClaudeMapper()
    normaliser = Normaliser()
    played = Played()
    stored: list[EventDraft] = []

    def store(*drafts: EventDraft) -> None:
        stored.extend(normaliser.normalise(drafts))

    started = SessionStartedData(metadata={"agent": "claude"})
    store(EventDraft(type="session.started", data=started, source="daemon", synthetic=True))
    turn = -1
    turn_open = False
    for line in lines:
        if not turn_open and line["type"] not in ("control_response", "control_cancel_request"):
            turn += 1
            turn_open = True
            store(*prompt_drafts(turns[turn][0], item_id=normaliser.new_item_id()))
        mapped = mapper.map(line)
        played.mapped.append(mapped)
        played.adapter += mapped.drafts
        store(*mapped.drafts)
        if mapped.request is not None:
            store(*_hitl(mapped.request, answers))
        if mapped.withdrawn is not None:
            # The adapter resolves a withdrawn request itself (daemon, rejected).
            played.adapter.append(EventDraft(type="withdrawn", data={"id": mapped.withdrawn}))
            store(*_withdrawn(mapped.withdrawn, played))
        if mapped.result is not None:
            if turns[turn][1]:
                store(turn_ended_draft("cancelled"))
            else:
                played.adapter += mapped.ending
                store(*mapped.ending)
            turn_open = False
    played.events = number(stored, "s1")
    return played


def _hitl(request: ToolRequest, answers: dict[str, dict[str, Any]]) -> list[EventDraft]:
    answer = answers.get(request.request_id)
    if request.permission is not None:
        drafts = [EventDraft(type="permission.requested", data=request.permission)]
        if answer is not None:
            reply = "once" if answer["behavior"] == "allow" else "reject"
            drafts.append(permission_resolved(request.permission, reply))
        return drafts
    assert request.question is not None
    drafts = [EventDraft(type="question.requested", data=request.question)]
    if answer is not None:
        given = answer.get("updatedInput", {}).get("answers", {})
        labels = [[str(v)] for v in given.values()]
        allowed = answer["behavior"] == "allow"
        drafts.append(question_resolved(request.question, labels if allowed else None))
    return drafts


def _withdrawn(request_id: str, played: Played) -> list[EventDraft]:
    for mapped in played.mapped:
        request = mapped.request
        if request is not None and request.request_id == request_id and request.permission:
            data = request.permission.model_copy(
                update={"status": "reject", "metadata": {"reason": "withdrawn"}}
            )
            return [
                EventDraft(type="permission.resolved", data=data, source="daemon", synthetic=True)
            ]
    return []


# -- every transcript ---------------------------------------------------------------------
@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_every_line_is_mapped_or_deliberately_ignored(name: str) -> None:
    played = session_stream(name)
    unparsed = [d.raw for d in played.adapter if d.type == "agent.unparsed"]
    assert unparsed == []
    assert played.adapter, "a transcript maps to something"


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_the_stream_keeps_the_invariants(name: str) -> None:
    played = session_stream(name)
    assert stream_violations(played.events) == []
    state = replay(played.events)
    assert state.anomalies == []
    # Every turn is closed, every item complete, nothing left pending.
    assert state.open_turn is None
    assert all(item.status != "in_progress" for item in state.items)
    assert state.pending_permissions == {}
    assert state.pending_questions == {}


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_every_draft_validates_and_carries_its_raw_line(name: str) -> None:
    played = session_stream(name)
    for draft in played.adapter:
        if draft.type in ("item.delta", "turn.ended", "error", "agent.unparsed"):
            assert draft.raw is not None, draft


# -- what each transcript shows -------------------------------------------------------------
def test_plain_turn_is_one_assistant_message_and_a_completed_turn() -> None:
    played = session_stream("claude-plain")
    messages = [i for i in played.items("message") if i["role"] == "assistant"]
    assert [m["content"] for m in messages] == [
        [{"type": "text", "text": "Hello from fake LLM. I saw 2 input message(s)."}]
    ]
    assert [e.data["reason"] for e in played.of_type("turn.ended")] == ["completed"]
    assert played.mapped[0].session_id == "dcb0a9dd-b833-4732-adef-f134271d1109"


def test_partial_messages_stream_as_deltas_of_the_message_item() -> None:
    played = session_stream("claude-partial")
    deltas = played.of_type("item.delta")
    assert len(deltas) == 9
    assert all(not d.synthetic for d in deltas)
    (message,) = [i for i in played.items("message") if i["role"] == "assistant"]
    assert {d.data["item_id"] for d in deltas} == {message["item_id"]}
    assert "".join(d.data["delta"] for d in deltas) == message["content"][0]["text"]
    assert message["native_item_id"] == "msg_0002160cf1ba"


def test_a_tool_turn_has_the_call_its_result_and_the_answer() -> None:
    played = session_stream("claude-tool")
    (call,) = played.items("tool_call")
    (result,) = played.items("tool_result")
    part = call["content"][0]
    assert part["name"] == "Bash" and json.loads(part["arguments"])["command"] == "echo hi"
    assert part["call_id"] == "toolu_000435e0307c"
    assert result["content"] == [
        {"type": "tool_result", "call_id": "toolu_000435e0307c", "output": "hi"}
    ]
    assert result["parent_id"] == call["item_id"]
    # The text before the call is the message the call belongs to.
    assert call["parent_id"] is not None
    texts = [i["content"][0]["text"] for i in played.items("message") if i["role"] == "assistant"]
    assert texts == ["I'll run a command.", "Tool result received: hi"]


def test_an_auto_denied_tool_shows_as_a_failed_result() -> None:
    played = session_stream("claude-perm-denied")
    (result,) = played.items("tool_result")
    assert result["status"] == "failed"
    assert "needs approval" in result["content"][0]["output"]
    assert played.of_type("permission.requested") == []


def test_can_use_tool_becomes_a_permission_with_claudes_details() -> None:
    played = session_stream("claude-perm-stdio")
    (requested,) = played.of_type("permission.requested")
    data = requested.data
    assert data["permission_id"] == "9b41f45b-0480-4d4b-a730-4fd073e1d321"
    assert data["action"] == "Bash"
    metadata = data["metadata"]
    assert metadata["toolName"] == "Bash"
    assert metadata["input"]["command"] == "echo data > perm_stdio.txt"
    assert metadata["blockedPath"].endswith("perm_stdio.txt")
    assert metadata["permissionSuggestions"][0]["type"] == "addRules"
    assert metadata["toolUseId"] == "toolu_0011d51b3537"
    # Two turns in one process, the second with the history.
    assert [e.data["reason"] for e in played.of_type("turn.ended")] == ["completed", "completed"]
    assert played.items("tool_result")[0]["status"] == "completed"


def test_a_denied_permission_ends_in_a_failed_result() -> None:
    played = session_stream("claude-perm-deny-stdio")
    (resolved,) = played.of_type("permission.resolved")
    assert resolved.data["status"] == "reject"
    (result,) = played.items("tool_result")
    assert result["status"] == "failed"


def test_an_interrupted_turn_keeps_its_partial_text_and_is_cancelled() -> None:
    played = session_stream("claude-interrupt")
    first, second = [i for i in played.items("message") if i["role"] == "assistant"]
    assert first["content"][0]["text"].startswith("slow0")
    assert [e.data["reason"] for e in played.of_type("turn.ended")] == ["cancelled", "completed"]
    # claude's own error result of the interrupted turn is swallowed.
    assert played.of_type("error") == []
    assert "Hello from fake LLM" in second["content"][0]["text"]


def test_an_interrupt_withdraws_the_pending_permission() -> None:
    played = session_stream("claude-interrupt-permission")
    (requested,) = played.of_type("permission.requested")
    withdrawn = [m.withdrawn for m in played.mapped if m.withdrawn]
    assert withdrawn == [requested.data["permission_id"]]
    (resolved,) = played.of_type("permission.resolved")
    assert resolved.data["status"] == "reject" and resolved.source == "daemon"
    assert [e.data["reason"] for e in played.of_type("turn.ended")] == ["cancelled", "completed"]


def test_plan_mode_refusal_and_the_informational_notice() -> None:
    played = session_stream("claude-plan")
    (status,) = played.items("status")
    assert status["content"][0]["label"] == "informational"
    assert "Auto mode" in status["content"][0]["detail"]
    (result,) = played.items("tool_result")
    assert result["status"] == "failed"


def test_ask_user_question_from_claude_is_a_question() -> None:
    played = session_stream("claude-ask")
    (requested,) = played.of_type("question.requested")
    assert requested.data["prompt"] == "Which database should we use?"
    assert requested.data["options"] == ["Postgres", "SQLite"]
    assert played.of_type("permission.requested") == []
    (request,) = [m.request for m in played.mapped if m.request is not None]
    # What claude accepted in this transcript is what question_answer builds.
    stdin = read_jsonl(FIXTURES / "claude-ask.stdin.jsonl")
    (given,) = [r["response"]["response"] for r in stdin if r["type"] == "control_response"]
    assert question_answer(request, [["SQLite"]]) == given
    (result,) = played.items("tool_result")
    assert '"Which database should we use?"="SQLite"' in result["content"][0]["output"]


def test_exit_plan_mode_from_claude_shows_the_plan() -> None:
    played = session_stream("claude-exit-plan")
    (requested,) = played.of_type("question.requested")
    # The can_use_tool input is empty; the plan comes from the tool_use block.
    assert "1. Write the file." in requested.data["prompt"]
    (request,) = [m.request for m in played.mapped if m.request is not None]
    assert request.input == {}
    (resolved,) = played.of_type("question.resolved")
    assert resolved.data["status"] == "rejected"
    (result,) = played.items("tool_result")
    assert result["status"] == "failed"


def test_our_own_control_responses_are_matched() -> None:
    played = session_stream("claude-perm-stdio")
    responses = [m.response for m in played.mapped if m.response is not None]
    assert [r[0] for r in responses] == ["req_init_1"]


# -- synthetic lines (what the fake LLM cannot make claude print) ---------------------------
ASK_INPUT = {
    "questions": [
        {
            "question": "Which database?",
            "header": "DB",
            "options": [{"label": "Postgres", "description": ""}, {"label": "SQLite"}],
            "multiSelect": False,
        },
        {
            "question": "Which features?",
            "header": "Features",
            "options": [{"label": "Auth"}, {"label": "Search"}],
            "multiSelect": True,
        },
    ]
}


def can_use_tool(tool: str, tool_input: dict[str, Any], request_id: str = "r1") -> dict[str, Any]:
    return {
        "type": "control_request",
        "request_id": request_id,
        "request": {
            "subtype": "can_use_tool",
            "tool_name": tool,
            "input": tool_input,
            "tool_use_id": "toolu_q1",
        },
    }


def test_ask_user_question_becomes_a_question_and_the_answer_is_keyed_by_question_text() -> None:
    mapped = ClaudeMapper().map(can_use_tool("AskUserQuestion", ASK_INPUT))
    request = mapped.request
    assert request is not None and request.permission is None and request.question is not None
    question = request.question
    assert question.question_id == "toolu_q1"
    assert question.prompt == "Which database?"
    assert question.options == ["Postgres", "SQLite"]
    answer = question_answer(request, [["SQLite"], ["Auth", "Search"]])
    assert answer == {
        "behavior": "allow",
        "updatedInput": {
            **ASK_INPUT,
            "answers": {"Which database?": "SQLite", "Which features?": ["Auth", "Search"]},
        },
    }
    assert question_answer(request, None)["behavior"] == "deny"
    resolved = question_resolved(question, [["SQLite"]])
    assert resolved.data["response"] == "SQLite"


def test_exit_plan_mode_asks_to_approve_the_plan() -> None:
    mapped = ClaudeMapper().map(can_use_tool("ExitPlanMode", {"plan": "1. do it"}))
    request = mapped.request
    assert request is not None and request.question is not None
    assert request.question.prompt.startswith("Approve plan execution?")
    assert "1. do it" in request.question.prompt
    assert request.question.options == PLAN_OPTIONS
    assert question_answer(request, [["approve"]]) == {
        "behavior": "allow",
        "updatedInput": {"plan": "1. do it"},
    }
    assert question_answer(request, [["reject"]])["behavior"] == "deny"
    assert question_answer(request, None)["behavior"] == "deny"


def test_an_unsupported_control_request_is_refused_and_kept_visible() -> None:
    line = {"type": "control_request", "request_id": "h1", "request": {"subtype": "hook_callback"}}
    mapped = ClaudeMapper().map(line)
    assert mapped.reply == {
        "type": "control_response",
        "response": {
            "subtype": "error",
            "request_id": "h1",
            "error": "unsupported control request: hook_callback",
        },
    }
    assert [d.type for d in mapped.drafts] == ["agent.unparsed"]
    assert mapped.drafts[0].raw == line


def test_a_malformed_can_use_tool_is_still_answered() -> None:
    line = {"type": "control_request", "request_id": "m1", "request": {"subtype": "can_use_tool"}}
    mapped = ClaudeMapper().map(line)
    assert mapped.reply is not None and mapped.reply["response"]["subtype"] == "error"
    assert [d.type for d in mapped.drafts] == ["agent.unparsed"]


def test_an_error_result_is_an_error_and_an_error_turn_end() -> None:
    line = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "errors": ["API Error: 500"],
        "session_id": "x",
    }
    mapped = ClaudeMapper().map(line)
    assert mapped.result == "error"
    assert [d.type for d in mapped.ending] == ["error", "turn.ended"]
    assert mapped.ending[0].data["message"] == "API Error: 500"
    assert mapped.ending[1].data["reason"] == "error"


def test_a_result_without_any_message_becomes_the_assistant_message() -> None:
    mapped = ClaudeMapper().map(
        {"type": "result", "subtype": "success", "is_error": False, "result": "Total cost: $0"}
    )
    assert mapped.result == "completed"
    completed = [d for d in mapped.drafts if d.type == "item.completed"]
    assert completed[0].data["item"]["content"] == [{"type": "text", "text": "Total cost: $0"}]


def test_unknown_and_broken_lines_are_unparsed() -> None:
    mapper = ClaudeMapper()
    assert [d.type for d in mapper.map({"type": "brand_new"}).drafts] == ["agent.unparsed"]
    assert [d.type for d in mapper.map({"type": "system", "subtype": "new"}).drafts] == [
        "agent.unparsed"
    ]
    assert [d.type for d in mapper.map({"type": "assistant"}).drafts] == ["agent.unparsed"]
    line, bad = parse_line(b"not json at all")
    assert line is None and bad is not None and bad.type == "agent.unparsed"
    assert bad.raw == "not json at all"


def test_thinking_blocks_become_reasoning_parts() -> None:
    mapper = ClaudeMapper()
    line = {
        "type": "assistant",
        "message": {
            "id": "m1",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
        },
    }
    mapped = mapper.map(line)
    assert [d.type for d in mapped.drafts] == ["item.started"]
    (completed,) = mapper.flush()
    assert completed.data["item"]["content"] == [
        {"type": "reasoning", "text": "hmm", "visibility": "public"}
    ]


# -- the adapter's process handling, on a fake claude (fixtures/agents/claude-fake.py) --------
@pytest.fixture
def fake(tmp_path: Path) -> AgentSettings:
    """Settings whose ``claude`` is the fake script (no CLI needed)."""
    bin_dir = tmp_path / "agents" / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "claude"
    script = FIXTURES / "claude-fake.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "ws").mkdir()
    return AgentSettings(
        agents_dir=tmp_path / "agents",
        log_dir=tmp_path / "logs",
        extra_env={"FAKE_CLAUDE_ARGV": str(tmp_path / "argv.jsonl")},
    )


def argvs(settings: AgentSettings) -> list[list[str]]:
    """Each command line the fake claude was started with."""
    text = Path(settings.extra_env["FAKE_CLAUDE_ARGV"]).read_text()
    return [json.loads(line) for line in text.splitlines()]


async def started(
    settings: AgentSettings, resume: str | None = None, **config: Any
) -> tuple[SessionHarness, ClaudeAgent]:
    harness = SessionHarness()
    directory = str(Path(settings.extra_env["FAKE_CLAUDE_ARGV"]).parent / "ws")
    session = AgentSessionConfig(session_id="s1", agent="claude", directory=directory, **config)
    adapter = await harness.create(lambda sink: ClaudeAgent(sink, settings), session, resume)
    assert isinstance(adapter, ClaudeAgent)
    return harness, adapter


async def test_start_chooses_the_native_id_and_emits_nothing(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    try:
        native = adapter.native_session_id
        assert native is not None and str(uuid.UUID(native)) == native
        assert harness.adapter_drafts == []
        (argv,) = argvs(fake)
        assert argv[argv.index("--session-id") + 1] == native
        for flag in ("-p", "--verbose", "--include-partial-messages"):
            assert flag in argv
        assert argv[argv.index("--permission-prompt-tool") + 1] == "stdio"
        assert argv[argv.index("--input-format") + 1] == "stream-json"
        assert argv[argv.index("--output-format") + 1] == "stream-json"
        assert "--model" not in argv and "--permission-mode" not in argv
        events = await harness.turn("hi")
        assert [e.data["reason"] for e in events if e.type == "turn.ended"] == ["completed"]
        assert {e.native_session_id for e in events} == {native}
        assert stream_violations(harness.events) == []
    finally:
        await adapter.stop()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model": "sonnet"}, ["--model", "sonnet"]),
        ({"model": "default"}, []),
        ({"permission_mode": "plan"}, ["--permission-mode", "plan"]),
        ({"agent_mode": "plan"}, ["--permission-mode", "plan"]),
        ({"permission_mode": "acceptEdits"}, ["--permission-mode", "acceptEdits"]),
        ({"permission_mode": "bypass"}, ["--dangerously-skip-permissions"]),
    ],
)
async def test_modes_and_models_become_flags(
    fake: AgentSettings, config: dict[str, str], expected: list[str]
) -> None:
    _, adapter = await started(fake, **config)
    await adapter.stop()
    (argv,) = argvs(fake)
    tail = argv[argv.index("--session-id") + 2 :]
    assert tail == expected


async def test_a_crash_ends_the_session_with_the_stderr_tail(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    try:
        native = adapter.native_session_id
        assert native is not None
        start = await harness.send("CRASH")
        ended = await harness.wait_for(lambda e: e.type == "session.ended", after=start)
        types = [e.type for e in harness.events[start:]]
        assert types[-3:] == ["error", "turn.ended", "session.ended"]
        assert ended.data["reason"] == "error" and ended.data["terminated_by"] == "agent"
        assert ended.data["exit_code"] == 3
        assert "boom: the fake claude crashed" in ended.data["stderr"]["tail"]
        # The next prompt continues the same native session in a new process.
        fake.extra_env["FAKE_CLAUDE_KNOWN"] = native
        events = await harness.turn("again")
        assert [e.data["reason"] for e in events if e.type == "turn.ended"] == ["completed"]
        assert argvs(fake)[-1][-2:] == ["--resume", native]
        assert adapter.native_session_id == native
        assert stream_violations(harness.events) == []
    finally:
        await adapter.stop()


async def test_resume_of_an_unknown_session_starts_afresh(fake: AgentSettings) -> None:
    _, adapter = await started(fake, resume="0b8c3b8e-0000-4000-8000-000000000000")
    try:
        assert adapter.native_session_id not in (None, "0b8c3b8e-0000-4000-8000-000000000000")
        first, second = argvs(fake)
        assert "--resume" in first and "--session-id" in second
    finally:
        await adapter.stop()


async def test_resume_of_a_known_session_keeps_its_id(fake: AgentSettings) -> None:
    known = "0b8c3b8e-0000-4000-8000-000000000001"
    fake.extra_env["FAKE_CLAUDE_KNOWN"] = known
    _, adapter = await started(fake, resume=known)
    try:
        assert adapter.native_session_id == known
        assert len(argvs(fake)) == 1
    finally:
        await adapter.stop()


async def test_a_process_that_cannot_start_fails_start_with_its_stderr(
    fake: AgentSettings,
) -> None:
    fake.extra_env["FAKE_CLAUDE_FAIL"] = "1"
    with pytest.raises(AgentError, match="fake claude refuses to start"):
        await started(fake)


async def test_an_unsupported_control_request_gets_an_error_reply(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    try:
        events = await harness.turn("HOOK")
        (unparsed,) = [e for e in events if e.type == "agent.unparsed"]
        assert unparsed.raw["request"]["subtype"] == "hook_callback"
        texts = [
            e.data["item"]["content"][0]["text"]
            for e in events
            if e.type == "item.completed" and e.data["item"]["role"] == "assistant"
        ]
        assert texts == ["echo: hook answered error"]
    finally:
        await adapter.stop()


async def test_cancel_swallows_the_interrupted_result(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    try:
        start = await harness.send("WAIT")
        await harness.wait_for(lambda e: e.type == "item.delta", after=start)
        await harness.cancel()
        events = harness.events[start:]
        assert [e.type for e in events if e.type in ("turn.ended", "error")] == ["turn.ended"]
        assert events[-1].data["reason"] == "cancelled"
        events = await harness.turn("next")
        assert events[-1].data["reason"] == "completed"
        assert len(argvs(fake)) == 1, "the same process goes on"
        assert stream_violations(harness.events) == []
    finally:
        await adapter.stop()


async def test_cancel_stops_a_process_that_never_ends_the_turn(
    fake: AgentSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claude_module, "CANCEL_TIMEOUT", 0.5)
    harness, adapter = await started(fake)
    try:
        native = adapter.native_session_id
        assert native is not None
        start = await harness.send("HANG")
        await harness.wait_for(lambda e: e.type == "item.delta", after=start)
        await harness.cancel()
        count = len(harness.events)
        await harness.settle(0.3)
        assert len(harness.events) == count, "nothing follows the cancelled turn"
        assert not any(e.type == "session.ended" for e in harness.events)
        fake.extra_env["FAKE_CLAUDE_KNOWN"] = native
        events = await harness.turn("next")
        assert events[-1].data["reason"] == "completed"
        assert argvs(fake)[-1][-2:] == ["--resume", native]
    finally:
        await adapter.stop()


async def test_stop_ends_the_process_and_later_calls_fail(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    await adapter.stop()
    await adapter.stop()
    with pytest.raises(AgentNotStarted):
        await adapter.send("hi")
    assert harness.adapter_drafts == []


async def test_models_are_the_fallback_aliases() -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        raise AssertionError("emitted")

    models = await ClaudeAgent(sink, AgentSettings()).models()
    assert [m.id for m in models.models] == ["default", "sonnet", "opus", "haiku"]
    assert models.default_model == "default"
    modes = await ClaudeAgent(sink, AgentSettings()).modes()
    assert [m.id for m in modes] == ["build", "plan"]


def test_session_mcp_servers_become_claudes_mcp_config() -> None:
    servers = mcp_servers(
        parse_mcp_servers({
            "files": {"type": "local", "command": ["npx", "-y", "srv"], "args": ["--x"],
                      "environment": {"A": "1"}},
            "api": {"type": "remote", "url": "https://mcp.example/x", "transport": "sse",
                    "headers": {"X-A": "b"}, "bearerTokenEnvVar": "TOKEN",
                    "envHeaders": {"X-Key": "KEY"}},
            "off": {"type": "local", "command": "x", "enabled": False},
        })
    )  # fmt: skip
    assert servers == {
        "files": {"type": "stdio", "command": "npx", "args": ["-y", "srv", "--x"],
                  "env": {"A": "1"}},
        "api": {"type": "sse", "url": "https://mcp.example/x",
                "headers": {"X-A": "b", "Authorization": "Bearer ${TOKEN}", "X-Key": "${KEY}"}},
    }  # fmt: skip
    assert mcp_servers(None) == {}


async def test_mcp_servers_are_passed_with_mcp_config(fake: AgentSettings) -> None:
    mcp = {"fixture": {"type": "stdio", "command": "python3", "args": ["server.py"]}}
    _, adapter = await started(fake, mcp=mcp)
    await adapter.stop()
    (argv,) = argvs(fake)
    config = json.loads(argv[argv.index("--mcp-config") + 1])
    assert config == {
        "mcpServers": {"fixture": {"type": "stdio", "command": "python3", "args": ["server.py"]}}
    }


async def test_attachments_are_named_in_the_prompt(fake: AgentSettings) -> None:
    harness, adapter = await started(fake)
    try:
        start = await harness.send("look", [Attachment(path="/data/report.pdf")])
        await harness.wait_for(lambda e: e.type == "turn.ended", after=start)
        (text,) = [
            e.data["item"]["content"][0]["text"]
            for e in harness.events[start:]
            if e.type == "item.completed" and e.data["item"]["role"] == "assistant"
        ]
        sent = json.loads(text.removeprefix("echo: "))
        assert sent == [
            {"type": "text", "text": "look"},
            {"type": "text", "text": "Attached files:\n- /data/report.pdf"},
        ]
    finally:
        await adapter.stop()
