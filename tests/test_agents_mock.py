"""The mock agent: upstream's v0.1 command set, HITL, cancel, through the normaliser."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_agent.agents import (
    AgentNotStarted,
    AgentSessionConfig,
    AgentSettings,
    Attachment,
    EventSink,
    MockAgent,
    TurnInProgress,
    UnknownRequest,
    UnsupportedAgent,
    create_adapter,
    parse_agent_id,
)
from sandbox_agent.agents.mock_script import MARKDOWN_CHUNKS
from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.sessions import prompt_drafts

from agent_contract import AgentContract, SessionHarness, stream_violations, summary
from mock_commands import BASH, COMMANDS, END, TWO_PERMISSIONS, TWO_QUESTIONS, message, opening


class TestMockAgentContract(AgentContract):
    def make_adapter(self, sink: EventSink) -> MockAgent:
        return MockAgent(sink, delay=0.005)


@pytest.fixture
async def harness() -> AsyncIterator[SessionHarness]:
    harness = SessionHarness()
    await harness.create(lambda sink: MockAgent(sink, delay=0))
    yield harness
    await harness.adapter.stop()


async def run(harness: SessionHarness, prompt: str, expected: Sequence[str]) -> list[str]:
    """Send ``prompt``, wait for the ``expected`` last line, check nothing more comes."""
    start = await harness.send(prompt)
    await harness.wait_for(lambda e: summary([e]) == [expected[-1]], after=start)
    await harness.settle(0.02)
    return summary(harness.events[start:])


@pytest.mark.parametrize(("prompt", "expected"), COMMANDS, ids=[c[0][:40] for c in COMMANDS])
async def test_each_command_emits_upstreams_event_kinds_in_order(
    harness: SessionHarness, prompt: str, expected: list[str]
) -> None:
    assert await run(harness, prompt, expected) == opening() + expected
    assert stream_violations(harness.events) == []


def by_summary(events: Sequence[UniversalEvent], line: str) -> list[UniversalEvent]:
    return [e for e in events if summary([e]) == [line]]


def item(event: UniversalEvent) -> dict[str, object]:
    value = event.data["item"]
    assert isinstance(value, dict)
    return value


async def test_the_ok_reply_gets_one_synthetic_full_text_delta(harness: SessionHarness) -> None:
    events = await harness.turn("Reply with exactly the single word OK.")
    started, delta, completed, ended = events[3:]
    assert (started.source, started.synthetic) == ("agent", False)
    assert item(started)["content"] == [{"type": "text", "text": "OK"}]
    assert (delta.source, delta.synthetic, delta.data["delta"]) == ("daemon", True, "OK")
    assert item(completed)["status"] == "completed"
    assert (ended.source, ended.synthetic, ended.data["reason"]) == ("daemon", True, "completed")


async def test_every_event_carries_the_native_session_id(harness: SessionHarness) -> None:
    await harness.turn("tool")
    assert {e.native_session_id for e in harness.events} == {"mock-s1"}


async def test_the_user_item_holds_the_prompt_and_its_attachments(
    harness: SessionHarness,
) -> None:
    attachments = [Attachment(path="a.png", mime="image/png"), Attachment(path="notes.txt")]
    start = await harness.send("look", attachments)
    user = item(harness.events[start + 2])
    assert user["role"] == "user"
    assert user["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "path": "a.png", "mime": "image/png"},
        {"type": "file_ref", "path": "notes.txt", "action": "read", "diff": None},
    ]
    assert {e.source for e in harness.events[start + 1 : start + 3]} == {"client"}


async def test_the_rich_assistant_message_streams_then_completes_with_all_parts(
    harness: SessionHarness,
) -> None:
    events = await harness.turn("Answer briefly and include your reasoning.")
    deltas = [e.data["delta"] for e in events if e.type == "item.delta"]
    assert deltas == ["Mock assistant ", "streaming delta."]
    completed = by_summary(events, "item.completed mock_1_assistant_rich")[0]
    assert item(completed)["content"] == [
        {"type": "text", "text": "Mock assistant response with rich content."},
        {"type": "reasoning", "text": "Public reasoning for display.", "visibility": "public"},
        {
            "type": "reasoning",
            "text": "Private reasoning hidden by default.",
            "visibility": "private",
        },
        {"type": "json", "json": {"stage": "analysis", "ok": True}},
    ]


async def test_the_tool_result_fails_with_file_references(harness: SessionHarness) -> None:
    events = await harness.turn("tool")
    call = item(by_summary(events, "item.completed mock_1_tool_call")[0])
    assert (call["kind"], call["role"]) == ("tool_call", "assistant")
    assert call["content"] == [
        {
            "type": "tool_call",
            "name": "mock.search",
            "arguments": '{"query": "example"}',
            "call_id": "mock_1_call",
        }
    ]
    result = item(by_summary(events, "item.completed mock_1_tool_result")[0])
    assert (result["kind"], result["role"], result["status"]) == ("tool_result", "tool", "failed")
    assert result["content"] == [
        {"type": "tool_result", "call_id": "mock_1_call", "output": "mock search results"},
        {"type": "file_ref", "path": "mock_1/readme.md", "action": "read", "diff": None},
        {
            "type": "file_ref",
            "path": "mock_1/output.txt",
            "action": "write",
            "diff": "+mock output\n",
        },
        {
            "type": "file_ref",
            "path": "mock_1/patch.txt",
            "action": "patch",
            "diff": "@@ -1,1 +1,1 @@\n-old\n+new\n",
        },
    ]


async def test_markdown_streams_eight_deltas_that_build_the_completed_document(
    harness: SessionHarness,
) -> None:
    events = await harness.turn("markdown")
    started = item(events[3])
    assert started["content"] == [{"type": "text", "text": "Markdown demo (streaming follows)..."}]
    deltas = [e.data["delta"] for e in events if e.type == "item.delta"]
    assert len(deltas) == 8
    assert all(not e.synthetic for e in events if e.type == "item.delta")
    document = item(by_summary(events, "item.completed mock_1_markdown")[0])["content"]
    assert document == [{"type": "text", "text": "".join(deltas)}]
    for feature in (
        "# ",
        "**",
        "*italic*",
        "~~",
        "`inline",
        "- ",
        "> ",
        "```ts",
        "| ",
        "](",
        "---",
    ):
        assert feature in "".join(MARKDOWN_CHUNKS), feature
    assert "".join(deltas).endswith("End of markdown demo.")


async def test_system_status_image_and_unknown_fixtures(harness: SessionHarness) -> None:
    events = await harness.turn("demo")
    system = item(by_summary(events, "item.completed mock_1_system")[0])
    assert (system["kind"], system["role"]) == ("system", "system")
    assert system["content"] == [{"type": "text", "text": "System ready for mock events."}]
    status_start = item(by_summary(events, "item.started mock_1_status")[0])
    status_end = item(by_summary(events, "item.completed mock_1_status")[0])
    assert (status_start["kind"], status_start["role"]) == ("status", "assistant")
    assert status_start["content"] == [{"type": "status", "label": "Indexing", "detail": "2 files"}]
    assert status_end["content"] == [{"type": "status", "label": "Indexing", "detail": "Done"}]
    image = item(by_summary(events, "item.completed mock_1_image")[0])
    assert image["content"] == [
        {"type": "text", "text": "Here is a mock image output."},
        {"type": "image", "path": "mock_1/image.png", "mime": "image/png"},
    ]
    unknown = item(by_summary(events, "item.completed mock_1_unknown")[0])
    assert unknown["kind"] == "unknown"
    assert unknown["content"] == [{"type": "text", "text": "Unknown item kind example."}]
    marker = item(by_summary(events, "item.completed mock_1_marker_1")[0])
    assert marker["content"] == [{"type": "text", "text": "Next: a system message."}]


async def test_error_then_unparsed_with_its_raw_payload(harness: SessionHarness) -> None:
    error, unparsed, _ = (await harness.turn("error"))[3:]
    assert error.data == {
        "message": "Mock error event.",
        "code": "mock_error",
        "details": {"mock": True},
    }
    assert (error.source, error.synthetic) == ("daemon", True)
    assert unparsed.data == {
        "error": "unsupported payload",
        "location": "mock.stream",
        "raw_hash": None,
    }
    assert unparsed.raw == {"raw": "mock"}


async def test_permission_and_question_fixtures(harness: SessionHarness) -> None:
    await run(harness, "permission", TWO_PERMISSIONS)
    first, second = (e.data for e in harness.events if e.type == "permission.requested")
    assert first == {
        "permission_id": "mock_1_permission",
        "action": "command_execution",
        "status": "requested",
        "metadata": {"codexRequestKind": "commandExecution", "command": "echo mock"},
    }
    assert second["action"] == "file_change"
    assert second["metadata"] == {"codexRequestKind": "fileChange", "path": "mock_1/deny.txt"}
    await harness.cancel()
    start = len(harness.events)
    await run(harness, "question", ["question.requested mock_2_question_reject"])
    first, second = (e.data for e in harness.events[start:] if e.type == "question.requested")
    assert (first["prompt"], first["options"]) == ("Choose a color", ["Red", "Blue"])
    assert (second["prompt"], second["options"]) == ("Allow mock experiment?", ["Yes", "No"])


async def test_echo_say_and_the_default_reply_texts(harness: SessionHarness) -> None:
    texts = []
    for prompt in ("echo  hello there ", "say", "  What is a mock?  "):
        events = await harness.turn(prompt)
        texts.append(events[-2].data["item"]["content"][0]["text"])
    assert texts == ["hello there", "Tell me what to say after `echo`.", "What is a mock?"]


async def test_help_lists_the_commands(harness: SessionHarness) -> None:
    events = await harness.turn("HELP")
    text = events[-2].data["item"]["content"][0]["text"]
    for command in ("demo", "markdown", "tool", "permission", "question", "error", "end", "echo"):
        assert command in text


async def test_end_closes_the_turn_first_and_the_session_reopens(
    harness: SessionHarness,
) -> None:
    events = await harness.turn("end", until=["session.ended"])
    turn_ended, session_ended = events[3:]
    assert (turn_ended.synthetic, turn_ended.data["reason"]) == (True, "completed")
    assert session_ended.data["reason"] == "completed"
    assert session_ended.data["terminated_by"] == "agent"
    events = await harness.turn("hello")
    assert summary(events) == ["session.resumed", *opening(2), *message("mock_2_reply"), *END]
    assert stream_violations(harness.events) == []


async def test_ids_count_the_prompts_of_the_session(harness: SessionHarness) -> None:
    await harness.turn("hello")
    events = await harness.turn("Reply with exactly the single word OK.")
    assert summary(events) == [*opening(2), *message("mock_2_ok"), *END]


async def test_a_resumed_mock_continues_numbering_and_keeps_the_native_id() -> None:
    harness = SessionHarness("s9")
    config = AgentSessionConfig(session_id="s9", agent="mock", prior_turns=3)
    await harness.create(lambda sink: MockAgent(sink, delay=0), config, resume="mock-s9")
    events = await harness.turn("hello")
    assert "item.started mock_4_reply" in summary(events)
    assert harness.adapter.native_session_id == "mock-s9"
    await harness.adapter.stop()


async def test_a_whole_mock_session_replays_without_anomalies(harness: SessionHarness) -> None:
    # The replay engine is the reference checker of the invariants; the mock must satisfy it.
    for prompt in ("demo", "Reply with exactly the single word OK.", "end", "hello", "tool"):
        await harness.turn(prompt, until=["turn.ended", "session.ended"])
    await run(harness, "permission", ["permission.requested mock_6_permission_denied"])
    await harness.adapter.reply_permission("mock_6_permission", "always")
    await harness.adapter.reply_permission("mock_6_permission_denied", "reject")
    await harness.turn(LIST_FILES)
    assert replay(harness.events, strict=True).anomalies == []


# -- HITL ---------------------------------------------------------------------------------
LIST_FILES = "List files in the current directory using available tools."


@pytest.mark.parametrize(
    ("reply", "status"),
    [("once", "accept"), ("always", "accept_for_session"), ("reject", "reject")],
)
async def test_a_permission_reply_is_recorded_and_ends_the_waiting_turn(
    harness: SessionHarness, reply: str, status: str
) -> None:
    await run(harness, LIST_FILES, ["permission.requested mock_1_permission"])
    count = len(harness.events)
    await harness.adapter.reply_permission("mock_1_permission", reply)  # type: ignore[arg-type]
    await harness.wait_for(lambda e: e.type == "turn.ended", after=count)
    resolved, ended = harness.events[count:]
    assert resolved.type == "permission.resolved"
    assert (resolved.source, resolved.synthetic) == ("client", False)
    assert resolved.data == {
        "permission_id": "mock_1_permission",
        "action": "command_execution",
        "status": status,
        "metadata": {"codexRequestKind": "commandExecution", "command": "ls"},
    }
    assert ended.data["reason"] == "completed"
    assert stream_violations(harness.events) == []


async def test_always_auto_resolves_the_next_matching_request(harness: SessionHarness) -> None:
    await run(harness, LIST_FILES, ["permission.requested mock_1_permission"])
    await harness.adapter.reply_permission("mock_1_permission", "always")
    await harness.wait_for(lambda e: e.type == "turn.ended")
    events = await harness.turn(LIST_FILES)
    assert summary(events) == [
        *opening(2),
        "permission.requested mock_2_permission",
        "permission.resolved mock_2_permission",
        *END,
    ]
    auto = events[4]
    assert (auto.data["status"], auto.source, auto.synthetic) == (
        "accept_for_session",
        "daemon",
        True,
    )


async def test_always_covers_the_same_kind_of_request_only(harness: SessionHarness) -> None:
    await run(harness, LIST_FILES, ["permission.requested mock_1_permission"])
    await harness.adapter.reply_permission("mock_1_permission", "always")
    await harness.wait_for(lambda e: e.type == "turn.ended")
    expected = [
        "permission.requested mock_2_permission",
        "permission.resolved mock_2_permission",
        "permission.requested mock_2_permission_denied",
    ]
    start = len(harness.events)
    assert await run(harness, "permission", expected) == opening(2) + expected
    assert harness.events[start + 4].data["status"] == "accept_for_session"


async def test_once_and_reject_are_not_remembered(harness: SessionHarness) -> None:
    for reply, n in (("once", 1), ("reject", 2)):
        await run(harness, LIST_FILES, [f"permission.requested mock_{n}_permission"])
        count = len(harness.events)
        await harness.adapter.reply_permission(f"mock_{n}_permission", reply)  # type: ignore[arg-type]
        await harness.wait_for(lambda e: e.type == "turn.ended", after=count)
    expected = ["permission.requested mock_3_permission"]
    assert await run(harness, LIST_FILES, expected) == opening(3) + expected


async def test_questions_answered_and_rejected_end_the_turn_when_both_are_done(
    harness: SessionHarness,
) -> None:
    await run(harness, "question", TWO_QUESTIONS)
    count = len(harness.events)
    await harness.adapter.reply_question("mock_1_question", [["Red"], ["ignored"]])
    await harness.settle(0.02)
    assert summary(harness.events[count:]) == ["question.resolved mock_1_question"]
    answered = harness.events[count]
    assert answered.data == {
        "question_id": "mock_1_question",
        "prompt": "Choose a color",
        "options": ["Red", "Blue"],
        "status": "answered",
        "response": "Red",
    }
    assert (answered.source, answered.synthetic) == ("client", False)
    await harness.adapter.reject_question("mock_1_question_reject")
    await harness.wait_for(lambda e: e.type == "turn.ended", after=count)
    rejected, ended = harness.events[count + 1 :]
    assert (rejected.data["status"], rejected.data["response"]) == ("rejected", None)
    assert ended.data["reason"] == "completed"


async def test_an_empty_answer_records_no_response(harness: SessionHarness) -> None:
    await run(harness, "question", TWO_QUESTIONS)
    await harness.adapter.reply_question("mock_1_question", [])
    resolved = await harness.wait_for(lambda e: e.type == "question.resolved")
    assert (resolved.data["status"], resolved.data["response"]) == ("answered", None)


async def test_unknown_or_already_answered_requests_are_refused(harness: SessionHarness) -> None:
    await run(harness, LIST_FILES, ["permission.requested mock_1_permission"])
    with pytest.raises(UnknownRequest, match="unknown permission id: nope"):
        await harness.adapter.reply_permission("nope", "once")
    with pytest.raises(UnknownRequest, match="unknown question id: nope"):
        await harness.adapter.reply_question("nope", [["Yes"]])
    with pytest.raises(UnknownRequest):
        await harness.adapter.reject_question("mock_1_permission")
    await harness.adapter.reply_permission("mock_1_permission", "once")
    with pytest.raises(UnknownRequest):
        await harness.adapter.reply_permission("mock_1_permission", "once")


async def test_a_bad_reply_value_is_refused_and_leaves_the_request_pending(
    harness: SessionHarness,
) -> None:
    await run(harness, LIST_FILES, ["permission.requested mock_1_permission"])
    with pytest.raises(ValueError, match="once, always or reject"):
        await harness.adapter.reply_permission("mock_1_permission", "sometimes")  # type: ignore[arg-type]
    await harness.adapter.reply_permission("mock_1_permission", "once")


async def test_a_turn_waiting_for_answers_refuses_a_new_prompt(harness: SessionHarness) -> None:
    await run(harness, "question", TWO_QUESTIONS)
    with pytest.raises(TurnInProgress):
        await harness.adapter.send("hello")


async def test_a_running_turn_refuses_a_new_prompt() -> None:
    harness = SessionHarness()
    await harness.create(lambda sink: MockAgent(sink, delay=0.05))
    await harness.send("demo")
    with pytest.raises(TurnInProgress):
        await harness.adapter.send("hello")
    await harness.adapter.stop()


async def test_requests_of_a_finished_turn_stay_answerable(harness: SessionHarness) -> None:
    await harness.turn(BASH)
    count = len(harness.events)
    await harness.adapter.reply_permission("mock_1_permission", "once")
    await harness.settle(0.02)
    assert summary(harness.events[count:]) == ["permission.resolved mock_1_permission"]


async def test_cancelling_a_waiting_turn_keeps_its_requests_answerable(
    harness: SessionHarness,
) -> None:
    await run(harness, "permission", TWO_PERMISSIONS)
    await harness.cancel()
    assert harness.events[-1].data["reason"] == "cancelled"
    count = len(harness.events)
    await harness.adapter.reply_permission("mock_1_permission", "once")
    await harness.adapter.reply_permission("mock_1_permission_denied", "reject")
    await harness.settle(0.02)
    assert summary(harness.events[count:]) == [
        "permission.resolved mock_1_permission",
        "permission.resolved mock_1_permission_denied",
    ]
    events = await harness.turn("hello")
    assert events[-1].type == "turn.ended"
    assert stream_violations(harness.events) == []


async def test_a_cancelled_turn_emits_nothing_more() -> None:
    harness = SessionHarness()
    await harness.create(lambda sink: MockAgent(sink, delay=0.01))
    start = await harness.send("markdown")
    await harness.wait_for(lambda e: e.type == "item.delta", after=start)
    await harness.cancel()
    count = len(harness.events)
    await harness.settle(0.1)
    assert len(harness.events) == count
    # The agent never completed its item; the normaliser closed it (failed) at the turn's end.
    completions = [
        e
        for e in harness.events
        if e.type == "item.completed" and e.data["item"]["item_id"] == "mock_1_markdown"
    ]
    assert [(e.synthetic, e.data["item"]["status"]) for e in completions] == [(True, "failed")]
    await harness.adapter.stop()


async def test_calls_before_start_or_after_stop_are_refused() -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        raise AssertionError("emitted")

    adapter = MockAgent(sink, delay=0)
    with pytest.raises(AgentNotStarted):
        await adapter.send("hello")
    with pytest.raises(AgentNotStarted):
        await adapter.reply_permission("p", "once")
    await adapter.start(AgentSessionConfig(session_id="s", agent="mock"))
    await adapter.stop()
    with pytest.raises(AgentNotStarted):
        await adapter.send("hello")


# -- delay ----------------------------------------------------------------------------------
async def test_the_default_delay_is_200_ms() -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        pass

    assert MockAgent(sink).delay == 0.2
    default = create_adapter("mock", sink)
    assert isinstance(default, MockAgent) and default.delay == 0.2
    fast = create_adapter("mock", sink, AgentSettings(mock_delay_ms=0))
    assert isinstance(fast, MockAgent) and fast.delay == 0


async def test_the_delay_comes_before_each_event() -> None:
    harness = SessionHarness()
    await harness.create(lambda sink: MockAgent(sink, delay=0.04))
    began = time.monotonic()
    await harness.turn("Reply with exactly the single word OK.")
    # started, completed, turn.ended: three waits.
    assert time.monotonic() - began >= 3 * 0.04
    await harness.adapter.stop()


# -- registry, modes, models -----------------------------------------------------------------
def test_agent_ids_include_the_builtins_and_acp_names() -> None:
    for agent_id in ("claude", "codex", "opencode", "amp", "mock", "acp:gemini", "acp:codex-acp"):
        assert parse_agent_id(agent_id) == agent_id


@pytest.mark.parametrize("agent_id", ["pi", "Mock", "", "acp:", "acp:bad name"])
def test_unknown_agent_ids_are_refused_clearly(agent_id: str) -> None:
    with pytest.raises(UnsupportedAgent, match="unsupported agent"):
        parse_agent_id(agent_id)


async def test_the_registry_makes_each_known_agent_and_refuses_unknown_ones() -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        pass

    assert isinstance(create_adapter("mock", sink), MockAgent)
    for agent in ("claude", "codex", "opencode", "amp", "acp:claude", "acp:opencode"):
        assert create_adapter(agent, sink).id == agent
    with pytest.raises(UnsupportedAgent, match="known agents are claude, codex"):
        create_adapter("nope", sink)
    with pytest.raises(UnsupportedAgent, match="unknown ACP agent"):
        create_adapter("acp:not-configured", sink)
    configured = AgentSettings(acp_commands={"mine": ("my-acp-agent", "--stdio")})
    assert create_adapter("acp:mine", sink, configured).id == "acp:mine"
    assert configured.command("acp:mine") == ["my-acp-agent", "--stdio"]


async def test_mock_modes_models_and_capabilities_match_v01() -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        pass

    adapter = MockAgent(sink)
    assert [m.model_dump() for m in await adapter.modes()] == [
        {"id": "build", "name": "Build", "description": "Mock agent for UI testing"},
        {"id": "plan", "name": "Plan", "description": "Plan-only mock mode"},
    ]
    assert (await adapter.models()).model_dump(exclude_none=True) == {
        "models": [{"id": "mock", "name": "Mock"}],
        "defaultModel": "mock",
    }
    flags = adapter.capabilities.model_dump()
    assert {k for k, v in flags.items() if not v} == {"variants", "sharedProcess"}


def test_prompt_drafts_record_turn_started_and_one_user_item() -> None:
    drafts = prompt_drafts("hi", item_id="itm_7", turn_id="t1")
    assert [(d.type, d.source) for d in drafts] == [
        ("turn.started", "daemon"),
        ("item.started", "client"),
        ("item.completed", "client"),
    ]
    assert drafts[0].data["turn_id"] == "t1"
    assert [d.data["item"]["status"] for d in drafts[1:]] == ["in_progress", "completed"]
    assert {d.data["item"]["item_id"] for d in drafts[1:]} == {"itm_7"}


@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(max_size=40),
    attachments=st.lists(
        st.builds(
            Attachment,
            path=st.text(min_size=1, max_size=20),
            mime=st.none() | st.sampled_from(["image/png", "text/plain", "image/"]),
        ),
        max_size=3,
    ),
    turn_id=st.none() | st.text(max_size=8),
)
def test_prompt_drafts_equal_their_validated_form(
    prompt: str, attachments: list[Attachment], turn_id: str | None
) -> None:
    # prompt_drafts validates the item once and builds the drafts in canonical form: each must
    # be exactly what EventDraft's own validation makes of it.
    for draft in prompt_drafts(prompt, attachments, item_id="itm_1", turn_id=turn_id):
        validated = EventDraft.model_validate(draft.model_dump())
        assert validated == draft
        assert validated.model_dump_json() == draft.model_dump_json()


def test_every_script_draft_equals_its_validated_form() -> None:
    # The mock builds its drafts without validating them again (mock_script._trusted): each
    # must be exactly what EventDraft's own validation makes of it.
    from sandbox_agent.agents.mock_script import _COMMANDS, _EXACT, script_for

    prompts = [*_EXACT, *_COMMANDS, "echo hello", "say it", "an ordinary prompt"]
    checked = 0
    for prompt in prompts:
        for draft in script_for(prompt, 7):
            validated = EventDraft.model_validate(draft.model_dump())
            assert validated == draft, (prompt, draft)
            assert validated.model_dump_json() == draft.model_dump_json(), (prompt, draft)
            checked += 1
    assert checked > 50
