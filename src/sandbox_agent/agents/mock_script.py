"""What the mock agent says: the upstream v0.1 command set as lists of drafts.

``script_for(prompt, n)`` returns the drafts of the mock's answer to the ``n``-th prompt of a
session, in order, without the user item (the session layer records it) and without the closing
``turn.ended`` (``mock.py`` decides when the turn ends). Every item id is ``mock_<n>_<name>``
(also its ``native_item_id``); the normaliser adds the synthetic starts and deltas upstream's
daemon added (e.g. the full-text delta of a plain message).

Exact-text prompts (case-insensitive, after trimming) come first; otherwise the first word is a
command (``help``, ``demo``, ``markdown``, ``tool``, ``status``, ``image``, ``unknown``,
``permission``, ``question``, ``error``, ``unparsed``, ``end``, ``echo``/``say``) and anything else
is echoed back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from sandbox_agent.events import (
    AgentUnparsedData,
    ContentPart,
    ErrorData,
    EventDraft,
    FileRefPart,
    ImagePart,
    JsonPart,
    PermissionData,
    QuestionData,
    ReasoningPart,
    SessionEndedData,
    StatusPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    trusted_draft,
)

_PARTS: TypeAdapter[ContentPart] = TypeAdapter(ContentPart)

HELP_TEXT = """\
Mock agent commands (the first word of your message):
- help: this list
- demo: every kind of event, one after another
- markdown: a streamed markdown document
- tool: a tool call and its (failed) result with file references
- status: a status item
- image: a message with an image
- unknown: an item of unknown kind
- permission: two permission requests
- question: two questions
- error: an error event and an unparsed agent payload
- unparsed: an unparsed agent payload
- end: the agent ends the session
- echo <text> (or say <text>): replies with <text>
Anything else is echoed back."""

MARKDOWN_CHUNKS = (
    "# Markdown demo\n\nText with **bold**, *italic*, ~~strike~~ and `inline code`.\n\n",
    "## Lists\n\n- first bullet\n- second bullet\n  - nested bullet\n\n",
    "1. first step\n2. second step\n\n",
    "> A blockquote: the mock agent is quoting itself.\n\n",
    "```ts\nconst greet = (name: string): string => `Hello, ${name}!`;\n```\n\n",
    "| column | value |\n|---|---|\n| alpha | 1 |\n| beta | 2 |\n\n",
    "A [link to the docs](https://example.com/docs).\n\n---\n\n",
    "End of markdown demo.",
)

_BASH_PROMPT = (
    "use the bash tool to run `ls` in the current directory. do not answer without using the tool."
)
_QUESTION_PROMPTS = (
    "use the askuserquestion tool to ask exactly one yes/no question, then wait for a reply. "
    "do not answer yourself.",
    "call the askuserquestion tool with exactly one yes/no question and wait for a reply. "
    "do not answer yourself.",
)


def _trusted(event_type: str, data: dict[str, Any]) -> EventDraft:
    # The mock's replies are made on every prompt (at zero delay it is the server benchmarks'
    # agent): canonical dicts, not validated again. A test checks every script's drafts.
    return trusted_draft(event_type, data)


def _item(
    event_type: str,
    item_id: str,
    content: list[ContentPart],
    *,
    kind: str = "message",
    role: str | None = "assistant",
    status: str = "in_progress",
) -> EventDraft:
    item = {
        "item_id": item_id,
        "native_item_id": item_id,
        "parent_id": None,
        "kind": kind,
        "role": role,
        "status": status,
        "content": [_PARTS.dump_python(part, mode="json", by_alias=True) for part in content],
    }
    return _trusted(event_type, {"item": item})


def _pair(
    item_id: str,
    content: list[ContentPart],
    *,
    kind: str = "message",
    role: str | None = "assistant",
    final: list[ContentPart] | None = None,
    final_status: str = "completed",
) -> list[EventDraft]:
    """An item started with ``content`` and completed with ``final`` (default: the same)."""
    return [
        _item("item.started", item_id, content, kind=kind, role=role),
        _item(
            "item.completed",
            item_id,
            content if final is None else final,
            kind=kind,
            role=role,
            status=final_status,
        ),
    ]


def _delta(item_id: str, text: str) -> EventDraft:
    return _trusted("item.delta", {"item_id": item_id, "native_item_id": item_id, "delta": text})


def message(item_id: str, text: str) -> list[EventDraft]:
    return _pair(item_id, [TextPart(text=text)])


def rich_assistant(p: str) -> list[EventDraft]:
    item_id = f"{p}_assistant_rich"
    final: list[ContentPart] = [
        TextPart(text="Mock assistant response with rich content."),
        ReasoningPart(text="Public reasoning for display.", visibility="public"),
        ReasoningPart(text="Private reasoning hidden by default.", visibility="private"),
        JsonPart(value={"stage": "analysis", "ok": True}),
    ]
    return [
        _item("item.started", item_id, []),
        _delta(item_id, "Mock assistant "),
        _delta(item_id, "streaming delta."),
        _item("item.completed", item_id, final, status="completed"),
    ]


def system_message(p: str) -> list[EventDraft]:
    text: list[ContentPart] = [TextPart(text="System ready for mock events.")]
    return _pair(f"{p}_system", text, kind="system", role="system")


def status(p: str) -> list[EventDraft]:
    return _pair(
        f"{p}_status",
        [StatusPart(label="Indexing", detail="2 files")],
        kind="status",
        final=[StatusPart(label="Indexing", detail="Done")],
    )


def markdown(p: str) -> list[EventDraft]:
    item_id = f"{p}_markdown"
    document = "".join(MARKDOWN_CHUNKS)
    return [
        _item("item.started", item_id, [TextPart(text="Markdown demo (streaming follows)...")]),
        *(_delta(item_id, chunk) for chunk in MARKDOWN_CHUNKS),
        _item("item.completed", item_id, [TextPart(text=document)], status="completed"),
    ]


def tool(p: str) -> list[EventDraft]:
    call_id = f"{p}_call"
    call: list[ContentPart] = [
        ToolCallPart(
            name="mock.search", arguments=json.dumps({"query": "example"}), call_id=call_id
        )
    ]
    result: list[ContentPart] = [
        ToolResultPart(call_id=call_id, output="mock search results"),
        FileRefPart(path=f"{p}/readme.md", action="read"),
        FileRefPart(path=f"{p}/output.txt", action="write", diff="+mock output\n"),
        FileRefPart(path=f"{p}/patch.txt", action="patch", diff="@@ -1,1 +1,1 @@\n-old\n+new\n"),
    ]
    return [
        *_pair(f"{p}_tool_call", call, kind="tool_call"),
        *_pair(
            f"{p}_tool_result",
            [],
            kind="tool_result",
            role="tool",
            final=result,
            final_status="failed",
        ),
    ]


def image(p: str) -> list[EventDraft]:
    content: list[ContentPart] = [
        TextPart(text="Here is a mock image output."),
        ImagePart(path=f"{p}/image.png", mime="image/png"),
    ]
    return _pair(f"{p}_image", content)


def unknown(p: str) -> list[EventDraft]:
    text: list[ContentPart] = [TextPart(text="Unknown item kind example.")]
    return _pair(f"{p}_unknown", text, kind="unknown", role=None)


def _permission(permission_id: str, action: str, metadata: dict[str, str]) -> EventDraft:
    data = PermissionData(
        permission_id=permission_id, action=action, status="requested", metadata=metadata
    )
    return EventDraft(type="permission.requested", data=data)


def single_permission(p: str) -> list[EventDraft]:
    metadata = {"codexRequestKind": "commandExecution", "command": "ls"}
    return [_permission(f"{p}_permission", "command_execution", metadata)]


def two_permissions(p: str) -> list[EventDraft]:
    return [
        _permission(
            f"{p}_permission",
            "command_execution",
            {"codexRequestKind": "commandExecution", "command": "echo mock"},
        ),
        _permission(
            f"{p}_permission_denied",
            "file_change",
            {"codexRequestKind": "fileChange", "path": f"{p}/deny.txt"},
        ),
    ]


def _question(question_id: str, prompt: str, options: list[str]) -> EventDraft:
    data = QuestionData(question_id=question_id, prompt=prompt, options=options, status="requested")
    return EventDraft(type="question.requested", data=data)


def single_question(p: str) -> list[EventDraft]:
    return [_question(f"{p}_question", "Proceed?", ["Yes", "No"])]


def two_questions(p: str) -> list[EventDraft]:
    return [
        _question(f"{p}_question", "Choose a color", ["Red", "Blue"]),
        _question(f"{p}_question_reject", "Allow mock experiment?", ["Yes", "No"]),
    ]


def unparsed() -> list[EventDraft]:
    data = AgentUnparsedData(error="unsupported payload", location="mock.stream")
    return [
        EventDraft(
            type="agent.unparsed", data=data, source="daemon", synthetic=True, raw={"raw": "mock"}
        )
    ]


def error() -> list[EventDraft]:
    data = ErrorData(message="Mock error event.", code="mock_error", details={"mock": True})
    return [EventDraft(type="error", data=data, source="daemon", synthetic=True), *unparsed()]


def end() -> list[EventDraft]:
    data = SessionEndedData(reason="completed", terminated_by="agent")
    return [EventDraft(type="session.ended", data=data, source="daemon", synthetic=True)]


def demo(p: str) -> list[EventDraft]:
    sections: list[tuple[str, list[EventDraft]]] = [
        ("a system message", system_message(p)),
        ("an assistant message with rich content", rich_assistant(p)),
        ("a status item", status(p)),
        ("a streamed markdown document", markdown(p)),
        ("a tool call and its result", tool(p)),
        ("an image", image(p)),
        ("an item of unknown kind", unknown(p)),
        ("two permission requests", two_permissions(p)),
        ("two questions", two_questions(p)),
        ("an error and an unparsed payload", error()),
    ]
    drafts: list[EventDraft] = []
    for k, (what, events) in enumerate(sections, start=1):
        drafts += message(f"{p}_marker_{k}", f"Next: {what}.")
        drafts += events
    return drafts


def _echo(p: str, rest: str) -> list[EventDraft]:
    return message(f"{p}_echo", rest or "Tell me what to say after `echo`.")


_EXACT: dict[str, Callable[[str], list[EventDraft]]] = {
    "reply with exactly the single word ok.": lambda p: message(f"{p}_ok", "OK"),
    "reply with exactly the word first.": lambda p: message(f"{p}_first", "FIRST"),
    "reply with exactly the word second.": lambda p: message(f"{p}_second", "SECOND"),
    "answer briefly and include your reasoning.": rich_assistant,
    "provide a short status update.": status,
    "list files in the current directory using available tools.": single_permission,
    _BASH_PROMPT: lambda p: single_permission(p) + tool(p),
    **dict.fromkeys(_QUESTION_PROMPTS, single_question),
}

_COMMANDS: dict[str, Callable[[str, str], list[EventDraft]]] = {
    "help": lambda p, rest: message(f"{p}_help", HELP_TEXT),
    "demo": lambda p, rest: demo(p),
    "markdown": lambda p, rest: markdown(p),
    **dict.fromkeys(("tool", "tools", "tooling"), lambda p, rest: tool(p)),
    "status": lambda p, rest: status(p),
    "image": lambda p, rest: image(p),
    "unknown": lambda p, rest: unknown(p),
    **dict.fromkeys(("permission", "permissions"), lambda p, rest: two_permissions(p)),
    **dict.fromkeys(("question", "questions"), lambda p, rest: two_questions(p)),
    "error": lambda p, rest: error(),
    "unparsed": lambda p, rest: unparsed(),
    **dict.fromkeys(("end", "ended", "session.end"), lambda p, rest: end()),
    **dict.fromkeys(("echo", "say"), _echo),
}


def script_for(prompt: str, n: int) -> list[EventDraft]:
    """The mock's drafts for the ``n``-th prompt of a session (empty for an empty prompt)."""
    text = prompt.strip()
    if not text:
        return []
    p = f"mock_{n}"
    exact = _EXACT.get(text.lower())
    if exact is not None:
        return exact(p)
    command, *rest = text.split(None, 1)
    handler = _COMMANDS.get(command.lower())
    if handler is not None:
        return handler(p, rest[0].strip() if rest else "")
    return message(f"{p}_reply", text)
