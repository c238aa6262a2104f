"""Amp's ``--stream-json`` output, line by line, as event drafts (pure: no I/O).

One JSON object per stdout line (``shared/reference/agents/amp/README.md`` section 4):

- ``system`` ``init``: carries the thread id (``session_id``, ``T-<uuid>``), which becomes the
  native session id; nothing is emitted.
- ``user``: ``tool_result`` blocks become ``tool_result`` items (role ``tool``, ``parent_id`` the
  call's ``tool_use`` id, ``failed`` when ``is_error`` or when a permission rule refused the tool:
  Amp reports that as a plain result ``Tool rejected by ...``). Its ``text`` and ``image`` blocks
  are the echo of our prompt, which the session layer recorded already: ignored (no duplicate
  user item, upstream bug 7).
- ``assistant``: its content in order; each run of ``text`` / ``thinking`` / ``redacted_thinking``
  (``reasoning`` parts) / unknown blocks (``json`` parts, kept) becomes one assistant message
  item, and each ``tool_use`` one ``tool_call`` item (native id = the tool_use id).
  ``parent_tool_use_id`` (a subagent's message) becomes ``parent_id``.
- ``result``: ``success`` -> ``turn.ended {completed}``; anything with ``is_error`` (or another
  subtype) -> an ``error`` (code ``amp_<subtype>``) and ``turn.ended {error}``.

Deliberately ignored: ``system`` ``init`` (after taking the thread id), the prompt echo
(``user`` text / image blocks), ``usage``, ``stop_reason``, ``duration_ms``, ``num_turns`` and
the ``result`` text (the last assistant message already carries it). Anything else (another
line type, a ``system`` subtype, a user block type, a line that is not a JSON object) becomes
``agent.unparsed`` with the line as ``raw``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox_agent.events import (
    AgentUnparsedData,
    ContentPart,
    ErrorData,
    EventDraft,
    ItemEventData,
    JsonPart,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    TurnEndedData,
    UniversalItem,
)

LOCATION = "amp.stream-json"
#: How a permission rule's refusal reads in a tool result (Amp sends no is_error for it).
REFUSAL_PREFIX = "Tool rejected by"


class AmpStreamMapper:
    """Maps the stdout lines of Amp turns to drafts; keeps the thread id across turns."""

    def __init__(self, native_session_id: str | None = None) -> None:
        #: The Amp thread id, once a line carried it.
        self.native_session_id = native_session_id
        #: Whether the current turn's ``result`` line was seen.
        self.turn_ended = False

    def begin_turn(self) -> None:
        self.turn_ended = False

    def map_line(self, line: str | bytes) -> list[EventDraft]:
        """The drafts of one stdout line (possibly none)."""
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        try:
            message = json.loads(text)
        except ValueError as exc:
            return [self._unparsed(f"not JSON: {exc}", text)]
        if not isinstance(message, dict):
            return [self._unparsed("not a JSON object", text)]
        session_id = message.get("session_id")
        if isinstance(session_id, str) and session_id:
            self.native_session_id = session_id
        kind = message.get("type")
        try:
            if kind == "system":
                return self._system(message)
            if kind == "user":
                return self._user(message)
            if kind == "assistant":
                return self._assistant(message)
            if kind == "result":
                return self._result(message)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return [self._unparsed(f"malformed {kind} line: {exc}", message)]
        return [self._unparsed(f"unknown line type {kind!r}", message)]

    # -- line types ---------------------------------------------------------------------------
    def _system(self, message: dict[str, Any]) -> list[EventDraft]:
        if message.get("subtype") == "init":
            return []  # the thread id is taken above
        return [self._unparsed(f"unknown system subtype {message.get('subtype')!r}", message)]

    def _user(self, message: dict[str, Any]) -> list[EventDraft]:
        content = _content(message)
        if isinstance(content, str):
            return []  # the prompt's echo
        drafts: list[EventDraft] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind in ("text", "image"):
                continue  # the prompt's echo: the session layer recorded the prompt
            if kind == "tool_result":
                drafts.append(self._tool_result(block, message))
            else:
                drafts.append(self._unparsed(f"unknown user block {kind!r}", message))
        return drafts

    def _tool_result(self, block: dict[str, Any], message: dict[str, Any]) -> EventDraft:
        call_id = str(block["tool_use_id"])
        output = block.get("content")
        if not isinstance(output, str):
            output = json.dumps(output)
        refused = output.startswith(REFUSAL_PREFIX)
        failed = bool(block.get("is_error")) or refused
        item = UniversalItem(
            item_id="",
            parent_id=call_id,
            kind="tool_result",
            role="tool",
            status="failed" if failed else "completed",
            content=[ToolResultPart(call_id=call_id, output=output)],
        )
        return self._completed(item, message)

    def _assistant(self, message: dict[str, Any]) -> list[EventDraft]:
        content = _content(message)
        blocks: list[Any] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else content
        )
        parent = message.get("parent_tool_use_id")
        parent_id = parent if isinstance(parent, str) and parent else None
        drafts: list[EventDraft] = []
        parts: list[ContentPart] = []

        def flush() -> None:
            if parts:
                item = UniversalItem(
                    item_id="",
                    parent_id=parent_id,
                    kind="message",
                    role="assistant",
                    status="completed",
                    content=list(parts),
                )
                drafts.append(self._completed(item, message))
                parts.clear()

        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_use":
                flush()
                call = ToolCallPart(
                    name=str(block.get("name", "")),
                    arguments=json.dumps(block.get("input") or {}),
                    call_id=str(block["id"]),
                )
                item = UniversalItem(
                    item_id="",
                    native_item_id=call.call_id,
                    parent_id=parent_id,
                    kind="tool_call",
                    role="assistant",
                    status="completed",
                    content=[call],
                )
                drafts.append(self._completed(item, message))
            elif kind == "text":
                if block.get("text"):
                    parts.append(TextPart(text=str(block["text"])))
            elif kind == "thinking":
                parts.append(ReasoningPart(text=str(block.get("thinking", ""))))
            elif kind == "redacted_thinking":
                parts.append(ReasoningPart(text="", visibility="private"))
            else:
                parts.append(JsonPart(json=block))
        flush()
        return drafts

    def _result(self, message: dict[str, Any]) -> list[EventDraft]:
        self.turn_ended = True
        subtype = str(message.get("subtype") or "")
        drafts: list[EventDraft] = []
        if message.get("is_error") or subtype != "success":
            error = message.get("error") or message.get("result") or "the Amp turn failed"
            data = ErrorData(message=str(error), code=f"amp_{subtype or 'error'}")
            drafts.append(self._draft("error", data, message))
            reason = "error"
        else:
            reason = "completed"
        drafts.append(self._draft("turn.ended", TurnEndedData(reason=reason), message))
        return drafts

    # -- drafts ------------------------------------------------------------------------------
    def _draft(self, kind: str, data: Any, raw: Any) -> EventDraft:
        return EventDraft(
            type=kind, data=data, source="agent", raw=raw, native_session_id=self.native_session_id
        )

    def _completed(self, item: UniversalItem, raw: Any) -> EventDraft:
        return self._draft("item.completed", ItemEventData(item=item), raw)

    def _unparsed(self, error: str, raw: Any) -> EventDraft:
        encoded = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
        digest = hashlib.sha256(encoded.encode()).hexdigest()
        data = AgentUnparsedData(error=error, location=LOCATION, raw_hash=digest)
        return self._draft("agent.unparsed", data, raw)


def _content(message: dict[str, Any]) -> str | list[Any]:
    content = message["message"]["content"]
    if not isinstance(content, str | list):
        raise TypeError(f"message.content is {type(content).__name__}")
    return content
