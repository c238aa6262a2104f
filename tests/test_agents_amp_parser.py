"""The Amp adapter without the real CLI: the stream-json mapping on recorded transcripts, and
the adapter's process handling against a stub ``amp`` (a small Python script).

Fixtures ``tests/fixtures/agents/amp-*.jsonl`` are the real CLI's stdout against the fake Amp
server (``shared/reference/agents/amp/transcripts`` plus ``amp-cancel`` and
``amp-error-image``, recorded the same way with ``tests/helpers/fake_amp.py``).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import (
    AgentSessionConfig,
    AgentSettings,
    Attachment,
    EventSink,
    UnknownRequest,
)
from sandbox_agent.agents.amp import AmpAgent
from sandbox_agent.agents.amp_mapping import AmpStreamMapper
from sandbox_agent.agents.errors import AgentError
from sandbox_agent.agents.native import AgentNotInstalled
from sandbox_agent.events import EventDraft, SessionStartedData, UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.sessions import Normaliser, prompt_drafts

from agent_contract import AgentContract, SessionHarness, number, stream_violations

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
TRANSCRIPTS = sorted(
    p.name for p in FIXTURES.glob("amp-*.jsonl") if not p.name.endswith(".stdin.jsonl")
)


def lines_of(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def first_prompt(lines: Sequence[str]) -> str:
    for line in lines:
        message = json.loads(line)
        if message["type"] == "user":
            for block in message["message"]["content"]:
                if block["type"] == "text":
                    return str(block["text"])
    return "a prompt"


def ignored(message: dict[str, Any]) -> bool:
    """The lines the mapping deliberately drops (module docstring of ``amp_mapping``)."""
    if message["type"] == "system":
        return bool(message["subtype"] == "init")
    if message["type"] == "user":
        blocks = message["message"]["content"]
        return all(b["type"] in ("text", "image") for b in blocks)
    return False


def stream_of(name: str) -> tuple[list[UniversalEvent], list[list[EventDraft]]]:
    """A session's stored stream for one transcript: what the session layer records, then
    each line's drafts through the normaliser. Also each line's drafts."""
    lines = lines_of(name)
    normaliser = Normaliser()
    started = EventDraft(
        type="session.started",
        data=SessionStartedData(metadata={"agent": "amp"}),
        source="daemon",
        synthetic=True,
    )
    drafts = [started, *prompt_drafts(first_prompt(lines), item_id=normaliser.new_item_id())]
    mapper = AmpStreamMapper()
    per_line = []
    for line in lines:
        mapped = mapper.map_line(line)
        per_line.append(mapped)
        drafts += mapped
    return number(normaliser.normalise(drafts), "s1"), per_line


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_every_line_is_mapped_or_deliberately_ignored(name: str) -> None:
    events, per_line = stream_of(name)
    for line, drafts in zip(lines_of(name), per_line, strict=True):
        message = json.loads(line)
        assert drafts or ignored(message), line
        assert all(d.type != "agent.unparsed" for d in drafts), line
    assert stream_violations(events) == []
    state = replay(events)
    assert state.anomalies == []
    # The turn ends exactly once, by the agent's result line.
    ended = [e for e in events if e.type == "turn.ended"]
    assert len(ended) == 1 and ended[0].source == "agent"


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_the_thread_id_is_the_native_session_id(name: str) -> None:
    events, _ = stream_of(name)
    thread = json.loads(lines_of(name)[0])["session_id"]
    assert thread.startswith("T-")
    agent_events = [e for e in events if e.source == "agent"]
    assert agent_events
    assert {e.native_session_id for e in agent_events} == {thread}


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_no_duplicate_user_item(name: str) -> None:
    events, _ = stream_of(name)
    users = [e for e in events if e.type == "item.completed" and e.data["item"]["role"] == "user"]
    assert len(users) == 1 and users[0].source == "client"


def items(events: Sequence[UniversalEvent]) -> list[dict[str, Any]]:
    return [e.data["item"] for e in events if e.type == "item.completed"]


def test_plain_turn() -> None:
    events, _ = stream_of("amp-plain.jsonl")
    assistant = [i for i in items(events) if i["role"] == "assistant"]
    assert [i["content"] for i in assistant] == [
        [{"type": "text", "text": "Hello from fake Amp. The thread has 1 message(s)."}]
    ]
    # streaming UIs still see the text arrive (one synthetic delta)
    deltas = [e for e in events if e.type == "item.delta"]
    assert [d.data["delta"] for d in deltas] == [assistant[0]["content"][0]["text"]]
    assert events[-1].type == "turn.ended" and events[-1].data["reason"] == "completed"


def test_tool_turn_links_call_and_result() -> None:
    events, _ = stream_of("amp-tool.jsonl")
    kinds = [(i["kind"], i["role"]) for i in items(events)]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("tool_call", "assistant"),
        ("tool_result", "tool"),
        ("message", "assistant"),
    ]
    call, result = items(events)[2], items(events)[3]
    part = call["content"][0]
    assert part["name"] == "shell_command"
    assert json.loads(part["arguments"]) == {"command": "echo hi from amp; uname -s"}
    assert call["native_item_id"] == part["call_id"]
    assert result["parent_id"] == call["item_id"]
    assert result["status"] == "completed"
    output = result["content"][0]
    assert output["call_id"] == part["call_id"]
    assert json.loads(output["output"]) == {"output": "hi from amp\nLinux\n", "exitCode": 0}


@pytest.mark.parametrize("name", ["amp-perm-ask.jsonl", "amp-perm-reject.jsonl"])
def test_a_refusal_by_a_permission_rule_is_a_failed_tool_result(name: str) -> None:
    events, _ = stream_of(name)
    (result,) = [i for i in items(events) if i["kind"] == "tool_result"]
    assert result["status"] == "failed"
    assert result["content"][0]["output"].startswith("Tool rejected by plugin")
    assert not [e for e in events if e.type.startswith("permission.")]


def test_allow_all_runs_the_tool() -> None:
    events, _ = stream_of("amp-perm-allow-all.jsonl")
    (result,) = [i for i in items(events) if i["kind"] == "tool_result"]
    assert result["status"] == "completed"
    assert json.loads(result["content"][0]["output"])["exitCode"] == 0


def test_thinking_is_reasoning() -> None:
    events, _ = stream_of("amp-thinking.jsonl")
    (message,) = [i for i in items(events) if i["role"] == "assistant"]
    assert message["content"][0] == {
        "type": "reasoning",
        "text": "The user wants a greeting.",
        "visibility": "public",
    }
    assert message["content"][1]["type"] == "text"
    hidden, _ = stream_of("amp-thinking-hidden.jsonl")
    assert all(p["type"] != "reasoning" for i in items(hidden) for p in i["content"])


def test_an_error_result_is_an_error_and_ends_the_turn() -> None:
    events, _ = stream_of("amp-error-image.jsonl")
    (error,) = [e for e in events if e.type == "error"]
    assert error.data["code"] == "amp_error_during_execution"
    assert "Invalid image" in error.data["message"]
    assert (events[-1].type, events[-1].data["reason"]) == ("turn.ended", "error")


def test_a_cancelled_cli_says_so_in_an_error_result() -> None:
    # The adapter drops this after a cancel; the mapping itself still reads it.
    _, per_line = stream_of("amp-cancel.jsonl")
    assert [d.type for d in per_line[-1]] == ["error", "turn.ended"]
    assert per_line[-1][0].data["message"] == "User cancelled (SIGINT/SIGTERM)"


def test_two_prompts_in_one_process_map_both_answers() -> None:
    events, _ = stream_of("amp-stdin-input.jsonl")
    texts = [i["content"][0].get("text") for i in items(events) if i["role"] == "assistant"]
    assert texts[0] == "Hello from fake Amp. The thread has 1 message(s)."
    assert texts[-1].startswith("Tool result received")


# -- shapes the transcripts do not show ----------------------------------------------------------
def mapped(message: Any) -> list[EventDraft]:
    line = message if isinstance(message, str) else json.dumps(message)
    return AmpStreamMapper("T-1").map_line(line)


def assistant(*blocks: Any, **extra: Any) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": list(blocks)}
    return {"type": "assistant", "message": message, "session_id": "T-1", **extra}


@pytest.mark.parametrize(
    "line",
    [
        "not json at all",
        "[1, 2]",
        {"type": "stream_event", "event": {}},
        {"type": "system", "subtype": "status"},
        {"type": "user", "message": {"role": "user", "content": [{"type": "mystery"}]}},
        {"type": "assistant", "message": {"content": 42}},
        {"type": "assistant"},
    ],
)
def test_anything_else_is_unparsed_with_the_raw_line(line: Any) -> None:
    (draft,) = mapped(line)
    assert draft.type == "agent.unparsed"
    assert draft.data["location"] == "amp.stream-json"
    assert draft.raw == (line if isinstance(line, str) else json.loads(json.dumps(line)))
    assert draft.data["raw_hash"]


def test_message_order_and_unknown_blocks_are_kept() -> None:
    drafts = mapped(
        assistant(
            {"type": "text", "text": "before"},
            {"type": "tool_use", "id": "TU-1", "name": "Read", "input": {"path": "a"}},
            {"type": "text", "text": "after"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "future_block", "x": 1},
        )
    )
    kinds = [d.data["item"]["kind"] for d in drafts]
    assert kinds == ["message", "tool_call", "message"]
    last = drafts[2].data["item"]["content"]
    assert last[0] == {"type": "text", "text": "after"}
    assert last[1] == {"type": "reasoning", "text": "", "visibility": "private"}
    assert last[2] == {"type": "json", "json": {"type": "future_block", "x": 1}}


def test_string_content_and_subagent_parent() -> None:
    (draft,) = mapped(
        {
            "type": "assistant",
            "message": {"role": "assistant", "content": "plain string"},
            "parent_tool_use_id": "TU-parent",
        }
    )
    item = draft.data["item"]
    assert item["content"] == [{"type": "text", "text": "plain string"}]
    assert item["parent_id"] == "TU-parent"
    echo = {"type": "user", "message": {"role": "user", "content": "the prompt"}}
    assert mapped(echo) == []


def test_an_error_flagged_tool_result_fails() -> None:
    block = {"type": "tool_result", "tool_use_id": "TU-1", "content": {"a": 1}, "is_error": True}
    (draft,) = mapped({"type": "user", "message": {"role": "user", "content": [block]}})
    item = draft.data["item"]
    assert item["status"] == "failed"
    assert item["content"][0]["output"] == '{"a": 1}'


# -- the adapter against a stub amp ---------------------------------------------------------------
STUB = r'''#!PYTHON
"""A stub of the amp CLI: records its argv and stdin, prints stream-json like the real one."""
import json, os, sys, time
log = os.environ["STUB_AMP_LOG"]
message = json.loads(sys.stdin.readline())
with open(log, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": message, "cwd": os.getcwd()}) + "\n")
text = message["message"]["content"][0]["text"]
args = sys.argv[1:]
thread = args[2] if args[:2] == ["threads", "continue"] else "T-stub-1"
def out(obj):
    obj["session_id"] = thread
    print(json.dumps(obj), flush=True)
out({"type": "system", "subtype": "init", "cwd": os.getcwd(), "tools": [], "mcp_servers": []})
out({"type": "user", "message": {"role": "user", "content": message["message"]["content"]}})
if "CRASH" in text:
    print("stub: boom", file=sys.stderr, flush=True)
    sys.exit(3)
say = "slowly" if "SLOW" in text else f"Hello from stub amp ({text})"
out({"type": "assistant", "message": {"type": "message", "role": "assistant",
     "content": [{"type": "text", "text": say}], "stop_reason": "end_turn"}})
if "SLOW" in text:
    time.sleep(60)
out({"type": "result", "subtype": "success", "is_error": False, "result": say})
'''


@pytest.fixture
def stub_settings(tmp_path: Path) -> AgentSettings:
    bin_dir = tmp_path / "agents" / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    amp = bin_dir / "amp"
    amp.write_text(STUB.replace("PYTHON", sys.executable))
    amp.chmod(amp.stat().st_mode | stat.S_IEXEC)
    return AgentSettings(
        agents_dir=tmp_path / "agents",
        log_dir=tmp_path / "logs",
        extra_env={"AMP_API_KEY": "sgamp_fake_key", "STUB_AMP_LOG": str(tmp_path / "calls.jsonl")},
    )


def calls(settings: AgentSettings) -> list[dict[str, Any]]:
    path = Path(settings.extra_env["STUB_AMP_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestAmpContractWithStub(AgentContract):
    plain_prompt = "hello"
    long_prompt = "SLOW"

    @pytest.fixture(autouse=True)
    def _settings(self, stub_settings: AgentSettings) -> None:
        self.settings = stub_settings

    def make_adapter(self, sink: EventSink) -> AmpAgent:
        return AmpAgent(sink, self.settings)


@pytest.fixture
async def harness(stub_settings: AgentSettings, tmp_path: Path) -> AsyncIterator[SessionHarness]:
    h = SessionHarness()
    config = AgentSessionConfig(session_id="s1", agent="amp", directory=str(tmp_path))
    await h.create(lambda sink: AmpAgent(sink, stub_settings), config)
    yield h
    await h.adapter.stop()


async def test_turns_continue_the_thread_and_the_prompt_goes_on_stdin(
    harness: SessionHarness, stub_settings: AgentSettings, tmp_path: Path
) -> None:
    first = await harness.turn("-- starts with dashes")
    assert first[-1].data["reason"] == "completed"
    assert harness.adapter.native_session_id == "T-stub-1"
    second = await harness.turn("again")
    assert second[-1].data["reason"] == "completed"
    argv0, argv1 = (c["argv"] for c in calls(stub_settings))
    assert argv0[:4] == ["-x", "--stream-json", "--stream-json-input", "--stream-json-thinking"]
    assert "--dangerously-allow-all" not in argv0
    assert argv1[:3] == ["threads", "continue", "T-stub-1"]
    assert calls(stub_settings)[0]["stdin"]["message"]["content"] == [
        {"type": "text", "text": "-- starts with dashes"}
    ]
    assert calls(stub_settings)[0]["cwd"] == str(tmp_path)
    # known from the first line on (the first prompt is recorded before the thread exists)
    first_agent = next(i for i, e in enumerate(harness.events) if e.source == "agent")
    assert {e.native_session_id for e in harness.events[first_agent:]} == {"T-stub-1"}
    assert stream_violations(harness.events) == []


async def test_resume_continues_the_given_thread(
    stub_settings: AgentSettings, tmp_path: Path
) -> None:
    h = SessionHarness()
    config = AgentSessionConfig(session_id="s1", agent="amp", directory=str(tmp_path))
    adapter = await h.create(lambda sink: AmpAgent(sink, stub_settings), config, "T-old")
    try:
        assert adapter.native_session_id == "T-old"
        await h.turn("after restart")
        assert calls(stub_settings)[0]["argv"][:3] == ["threads", "continue", "T-old"]
    finally:
        await adapter.stop()


async def test_bypass_allows_all(stub_settings: AgentSettings, tmp_path: Path) -> None:
    h = SessionHarness()
    config = AgentSessionConfig(
        session_id="s1", agent="amp", directory=str(tmp_path), permission_mode="bypass"
    )
    adapter = await h.create(lambda sink: AmpAgent(sink, stub_settings), config)
    try:
        await h.turn("go")
        assert "--dangerously-allow-all" in calls(stub_settings)[0]["argv"]
    finally:
        await adapter.stop()


async def test_a_process_that_dies_mid_turn_ends_it_with_an_error(
    harness: SessionHarness,
) -> None:
    events = await harness.turn("CRASH")
    (error,) = [e for e in events if e.type == "error"]
    assert error.data["code"] == "process_exit"
    assert error.data["details"]["exit_code"] == 3
    assert "stub: boom" in error.data["details"]["stderr_tail"]
    assert (events[-1].type, events[-1].data["reason"]) == ("turn.ended", "error")
    # the session stays usable: the next turn is a new process on the same thread
    again = await harness.turn("hello")
    assert again[-1].data["reason"] == "completed"
    assert stream_violations(harness.events) == []


async def test_attachments(
    harness: SessionHarness, stub_settings: AgentSettings, tmp_path: Path
) -> None:
    (tmp_path / "pic.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "notes.txt").write_text("notes")
    attachments = [
        Attachment(path="pic.png", mime="image/png"),
        Attachment(path=str(tmp_path / "notes.txt"), mime="text/plain"),
    ]
    start = await harness.send("see these", attachments)
    await harness.wait_for(lambda e: e.type == "turn.ended", after=start)
    content = calls(stub_settings)[0]["stdin"]["message"]["content"]
    assert content[0]["text"].startswith("see these\n\nAttached files:\n")
    assert content[0]["text"].endswith(str(tmp_path / "notes.txt"))
    assert content[1]["type"] == "image"
    assert content[1]["source"]["media_type"] == "image/png"


async def test_no_permission_or_question_is_ever_pending(harness: SessionHarness) -> None:
    with pytest.raises(UnknownRequest):
        await harness.adapter.reply_permission("perm_1", "once")
    with pytest.raises(UnknownRequest):
        await harness.adapter.reply_question("q_1", [["yes"]])
    with pytest.raises(UnknownRequest):
        await harness.adapter.reject_question("q_1")


async def test_models_modes_and_capabilities(stub_settings: AgentSettings) -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        raise AssertionError("emitted")

    adapter = AmpAgent(sink, stub_settings)
    models = await adapter.models()
    assert [m.id for m in models.models] == ["amp-default"]
    assert models.default_model == "amp-default"
    assert [m.id for m in await adapter.modes()] == ["build"]
    caps = adapter.capabilities
    assert caps.tool_calls and caps.tool_results and caps.text_messages
    assert not (caps.permissions or caps.questions or caps.streaming_deltas or caps.item_started)


async def test_start_needs_the_cli_and_a_key(tmp_path: Path, stub_settings: AgentSettings) -> None:
    async def sink(drafts: Sequence[EventDraft]) -> None:
        return None

    config = AgentSessionConfig(session_id="s1", agent="amp", directory=str(tmp_path))
    missing = AgentSettings(agents_dir=tmp_path / "none", log_dir=tmp_path / "logs")
    if missing.command("amp") is None:  # not on PATH either
        with pytest.raises(AgentNotInstalled):
            await AmpAgent(sink, missing).start(config)
    no_key = AgentSettings(agents_dir=stub_settings.agents_dir, log_dir=tmp_path / "logs")
    if not os.environ.get("AMP_API_KEY"):
        with pytest.raises(AgentError, match="AMP_API_KEY"):
            await AmpAgent(sink, no_key).start(config)
