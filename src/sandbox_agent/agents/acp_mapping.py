"""The pure part of the ACP adapter: ``session/update`` notifications and permission requests
of the Agent Client Protocol turned into event drafts (``AcpMapper``), no I/O.

Mapped ``session/update`` kinds (``params.update.sessionUpdate``):

- ``agent_message_chunk`` -> an assistant message item (native id = ``messageId``, or a generated
  one), started at its first chunk, one ``item.delta`` per non-empty text chunk, completed when
  something else begins (another message, a thought, a tool call, a plan) or the turn ends.
  Non-text blocks become parts: ``resource_link`` -> ``file_ref`` (read), others -> ``json``.
  Empty text chunks are dropped (an item starts with the first one that says something).
- ``agent_thought_chunk`` -> the same, as an assistant item of ``reasoning`` parts (public).
- ``tool_call`` / ``tool_call_update`` -> a ``tool_call`` item (native id = ``toolCallId``; part
  ``tool_call`` named after ``_meta.claudeCode.toolName``, else the ACP ``kind``, with the
  JSON of ``rawInput``), started when first seen and completed, with the fields merged so far,
  once the status is ``in_progress``, ``completed`` or ``failed``; then at ``completed`` /
  ``failed`` a ``tool_result`` item (native id ``<toolCallId>:result``, parent the call, status
  ``completed`` / ``failed``) whose output is the text of the call's ``content`` (else
  ``rawOutput``), with ``diff`` content as ``file_ref`` (patch) parts. Updates of a call already
  finished are merged and dropped.
- ``plan`` / ``plan_update`` -> a completed status item (label ``plan``, the entries as detail
  and as a ``json`` part); ``plan_removed`` -> status item ``plan.removed``;
  ``current_mode_update`` -> status item ``mode`` (detail: the new mode id).

Deliberately ignored (no event): ``user_message_chunk`` (the session layer records the prompt;
on ``session/load`` it is history), ``usage_update``, ``available_commands_update``,
``config_option_update`` and ``session_info_update`` (session metadata, not conversation; the
adapter keeps the model list of a ``config_option_update``). Any other kind, or a malformed
update, -> ``agent.unparsed`` with the whole JSON-RPC message as ``raw``.

``session/request_permission`` -> ``permission.requested``: action = the tool name (as above,
else the tool call's title), metadata = ``toolCallId``, ``toolName``, ``title``, ``kind``,
``rawInput``, ``options`` (id, name, kind of each).
"""

from __future__ import annotations

import difflib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox_agent.events import (
    AgentUnparsedData,
    ContentPart,
    EventDraft,
    FileRefPart,
    ItemDeltaData,
    ItemEventData,
    JsonPart,
    PermissionData,
    ReasoningPart,
    StatusPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    UniversalItem,
)

#: ``session/update`` kinds that carry no conversation and are dropped on purpose.
IGNORED_UPDATES = frozenset(
    {
        "user_message_chunk",
        "usage_update",
        "available_commands_update",
        "config_option_update",
        "session_info_update",
    }
)

_RUNNING = ("in_progress", "completed", "failed")
_FINISHED = ("completed", "failed")
_FILE_ACTIONS = {"read": "read", "edit": "write", "delete": "write", "move": "write"}


def new_native_id(prefix: str) -> str:
    """A native id unique across processes (a resumed session keeps the old ids in its map)."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def unparsed(error: str, location: str, raw: Any) -> EventDraft:
    return EventDraft(
        type="agent.unparsed",
        data=AgentUnparsedData(error=error, location=location),
        raw=raw,
    )


@dataclass
class _Chunks:
    """An assistant message or thought being streamed."""

    native_id: str
    #: The ``messageId`` it came with (None: the agent gives none).
    message_id: str | None
    reasoning: bool
    text: list[str] = field(default_factory=list)
    other: list[ContentPart] = field(default_factory=list)

    def content(self) -> list[ContentPart]:
        text = "".join(self.text)
        parts: list[ContentPart] = []
        if text:
            parts.append(ReasoningPart(text=text) if self.reasoning else TextPart(text=text))
        return parts + self.other


@dataclass
class _Tool:
    """A tool call: the ACP fields merged from its ``tool_call`` and updates."""

    call_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    call_completed: bool = False
    finished: bool = False

    def merge(self, update: dict[str, Any]) -> None:
        for key, value in update.items():
            if key not in ("sessionUpdate", "toolCallId") and value is not None:
                if key == "_meta" and isinstance(value, dict):
                    value = {**(self.fields.get("_meta") or {}), **value}
                self.fields[key] = value

    @property
    def status(self) -> str:
        status = self.fields.get("status")
        return status if isinstance(status, str) else "pending"

    @property
    def name(self) -> str:
        return tool_name(self.fields) or _str(self.fields.get("title")) or "tool"


def tool_name(fields: dict[str, Any]) -> str | None:
    """The tool's own name (Claude's ``_meta.claudeCode.toolName``), else the ACP kind."""
    return _own_name(fields) or _str(fields.get("kind"))


def _own_name(fields: dict[str, Any]) -> str | None:
    meta = fields.get("_meta")
    claude = meta.get("claudeCode") if isinstance(meta, dict) else None
    return _str(claude.get("toolName")) if isinstance(claude, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class AcpMapper:
    """The mapping state of one ACP session (its open message, thought and tool calls)."""

    def __init__(self) -> None:
        self._chunks: _Chunks | None = None
        self._tools: dict[str, _Tool] = {}
        self._used: set[str] = set()

    # -- session/update -------------------------------------------------------------------
    def update(self, params: Any, raw: Any = None) -> list[EventDraft]:
        """The drafts of one ``session/update`` (``params`` of the notification)."""
        update = params.get("update") if isinstance(params, dict) else None
        kind = update.get("sessionUpdate") if isinstance(update, dict) else None
        if not isinstance(update, dict) or not isinstance(kind, str):
            return [unparsed("session/update without an update kind", "session/update", raw)]
        if kind in IGNORED_UPDATES:
            return []
        try:
            match kind:
                case "agent_message_chunk":
                    return self._chunk(update, reasoning=False, raw=raw)
                case "agent_thought_chunk":
                    return self._chunk(update, reasoning=True, raw=raw)
                case "tool_call" | "tool_call_update":
                    return self._tool(update, raw)
                case "plan" | "plan_update":
                    return self._plan(update, raw)
                case "plan_removed":
                    return [*self.close_chunks(), _status("plan.removed", None, raw)]
                case "current_mode_update":
                    mode = _str(update.get("currentModeId")) or _str(update.get("modeId"))
                    return [_status("mode", mode, raw)]
        except (KeyError, TypeError, ValueError) as exc:
            return [unparsed(f"malformed {kind} update: {exc}", "session/update", raw)]
        return [unparsed(f"unknown session/update kind: {kind}", "session/update", raw)]

    def close_chunks(self) -> list[EventDraft]:
        """Complete the message or thought being streamed, if any."""
        chunks, self._chunks = self._chunks, None
        if chunks is None:
            return []
        item = _chunks_item(chunks, "completed", chunks.content())
        return [EventDraft(type="item.completed", data=ItemEventData(item=item))]

    def close_all(self) -> list[EventDraft]:
        """At the end of a turn: complete every item still open (tool calls as they stand)."""
        drafts = self.close_chunks()
        for tool in self._tools.values():
            if not tool.call_completed:
                tool.call_completed = True
                drafts.append(_completed(_call_item(tool, "completed")))
        self._tools.clear()
        return drafts

    def _chunk(self, update: dict[str, Any], *, reasoning: bool, raw: Any) -> list[EventDraft]:
        block = update["content"]
        if not isinstance(block, dict):
            raise TypeError("content is not an object")
        if block.get("type") == "text" and block.get("text") == "":
            return []  # Claude opens each message with one; no item for nothing
        message_id = _str(update.get("messageId"))
        drafts: list[EventDraft] = []
        current = self._chunks
        if (
            current is None
            or current.reasoning != reasoning
            or (message_id is not None and current.message_id != message_id)
        ):
            drafts += self.close_chunks()
            current = self._chunks = _Chunks(
                self._native(message_id, reasoning), message_id, reasoning
            )
            started = _chunks_item(current, "in_progress", [])
            drafts.append(
                EventDraft(type="item.started", data=ItemEventData(item=started), raw=raw)
            )
        if block.get("type") == "text":
            text = block["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            if text:
                current.text.append(text)
                delta = ItemDeltaData(item_id="", native_item_id=current.native_id, delta=text)
                drafts.append(EventDraft(type="item.delta", data=delta, raw=raw))
        elif block.get("type") == "resource_link" and isinstance(block.get("uri"), str):
            current.other.append(FileRefPart(path=block["uri"], action="read"))
        else:
            current.other.append(JsonPart(value=block))
        return drafts

    def _native(self, message_id: str | None, reasoning: bool) -> str:
        if message_id is None:
            return new_native_id("acp_thought" if reasoning else "acp_msg")
        base = f"{message_id}:thought" if reasoning else message_id
        native, n = base, 1
        while native in self._used:  # the same message goes on after a tool call
            n += 1
            native = f"{base}#{n}"
        self._used.add(native)
        return native

    def _tool(self, update: dict[str, Any], raw: Any) -> list[EventDraft]:
        call_id = update["toolCallId"]
        if not isinstance(call_id, str) or not call_id:
            raise TypeError("toolCallId is not a string")
        drafts: list[EventDraft] = []
        tool = self._tools.get(call_id)
        if tool is None:
            drafts += self.close_chunks()
            tool = self._tools[call_id] = _Tool(call_id)
            tool.merge(update)
            item = _call_item(tool, "in_progress")
            drafts.append(EventDraft(type="item.started", data=ItemEventData(item=item), raw=raw))
        else:
            tool.merge(update)
        if tool.finished:
            return drafts
        if tool.status in _RUNNING and not tool.call_completed:
            tool.call_completed = True
            drafts.append(_completed(_call_item(tool, "completed"), raw))
        if tool.status in _FINISHED:
            tool.finished = True
            drafts.append(_completed(_result_item(tool), raw))
        return drafts

    def _plan(self, update: dict[str, Any], raw: Any) -> list[EventDraft]:
        plan = update.get("plan") if update.get("sessionUpdate") == "plan_update" else update
        entries = plan.get("entries") if isinstance(plan, dict) else None
        lines = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                lines.append(f"[{entry.get('status', '?')}] {entry.get('content', '')}")
        value = entries if entries is not None else plan
        return [
            *self.close_chunks(),
            _status("plan", "\n".join(lines) or None, raw, [JsonPart(value=value)]),
        ]

    # -- session/request_permission -------------------------------------------------------
    def permission(self, params: Any, permission_id: str) -> PermissionData:
        """The ``permission.requested`` payload of a ``session/request_permission``; the tool's
        name may come from the call's earlier updates (Claude names it only there)."""
        call = params.get("toolCall") if isinstance(params, dict) else None
        call = call if isinstance(call, dict) else {}
        options = params.get("options") if isinstance(params, dict) else None
        tracked = self._tools.get(str(call.get("toolCallId")))
        known = tracked.fields if tracked is not None else {}
        name = _own_name(call) or _own_name(known) or tool_name(call) or tool_name(known)
        title = _str(call.get("title"))
        metadata: dict[str, Any] = {
            "toolCallId": call.get("toolCallId"),
            "toolName": name,
            "title": title,
            "kind": call.get("kind"),
            "rawInput": call.get("rawInput"),
            "options": [
                {"optionId": o.get("optionId"), "name": o.get("name"), "kind": o.get("kind")}
                for o in (options if isinstance(options, list) else [])
                if isinstance(o, dict)
            ],
        }
        return PermissionData(
            permission_id=permission_id,
            action=name or title or "permission",
            status="requested",
            metadata={k: v for k, v in metadata.items() if v is not None},
        )


def _chunks_item(chunks: _Chunks, status: str, content: list[ContentPart]) -> UniversalItem:
    return UniversalItem(
        item_id="",
        native_item_id=chunks.native_id,
        kind="message",
        role="assistant",
        status=status,
        content=content,
    )


def _completed(item: UniversalItem, raw: Any = None) -> EventDraft:
    return EventDraft(type="item.completed", data=ItemEventData(item=item), raw=raw)


def _call_item(tool: _Tool, status: str) -> UniversalItem:
    f = tool.fields
    part = ToolCallPart(
        name=tool.name,
        arguments=_json(f.get("rawInput") if f.get("rawInput") is not None else {}),
        call_id=tool.call_id,
    )
    extra = {k: f[k] for k in ("title", "kind") if isinstance(f.get(k), str)}
    content: list[ContentPart] = [part.model_copy(update=extra) if extra else part]
    action = _FILE_ACTIONS.get(str(f.get("kind")))
    for location in f.get("locations") or []:
        if action is not None and isinstance(location, dict) and _str(location.get("path")):
            content.append(FileRefPart(path=location["path"], action=action))
    return UniversalItem(
        item_id="",
        native_item_id=tool.call_id,
        kind="tool_call",
        role="assistant",
        status=status,
        content=content,
    )


def _result_item(tool: _Tool) -> UniversalItem:
    texts: list[str] = []
    files: list[ContentPart] = []
    others: list[ContentPart] = []
    for entry in tool.fields.get("content") or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "content" and isinstance(entry.get("content"), dict):
            block = entry["content"]
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            else:
                others.append(JsonPart(value=block))
        elif entry.get("type") == "diff" and _str(entry.get("path")):
            files.append(_diff_part(entry))
        else:
            others.append(JsonPart(value=entry))
    output = "\n".join(texts)
    if not output:
        raw_output = tool.fields.get("rawOutput")
        if isinstance(raw_output, str):
            output = raw_output
        elif isinstance(raw_output, dict) and isinstance(raw_output.get("output"), str):
            output = raw_output["output"]
        elif raw_output is not None:
            output = _json(raw_output)
    result = ToolResultPart(call_id=tool.call_id, output=output)
    return UniversalItem(
        item_id="",
        native_item_id=f"{tool.call_id}:result",
        parent_id=tool.call_id,
        kind="tool_result",
        role="tool",
        status="failed" if tool.status == "failed" else "completed",
        content=[result, *files, *others],
    )


def _diff_part(entry: dict[str, Any]) -> FileRefPart:
    path = str(entry["path"])
    old = entry.get("oldText")
    new = entry.get("newText")
    old_lines = old.splitlines(keepends=True) if isinstance(old, str) else []
    new_lines = new.splitlines(keepends=True) if isinstance(new, str) else []
    diff = "".join(difflib.unified_diff(old_lines, new_lines, f"a/{path}", f"b/{path}"))
    return FileRefPart(path=path, action="patch" if isinstance(old, str) else "write", diff=diff)


def _status(
    label: str, detail: str | None, raw: Any, extra: list[ContentPart] | None = None
) -> EventDraft:
    item = UniversalItem(
        item_id="",
        native_item_id=new_native_id("acp_status"),
        kind="status",
        role="system",
        status="completed",
        content=[StatusPart(label=label, detail=detail), *(extra or [])],
    )
    return EventDraft(type="item.completed", data=ItemEventData(item=item), raw=raw)
