"""OpenCode ``/event`` payloads of one session -> event drafts (pure: no I/O, no clock).

``OpenCodeMapper.map(payload)`` takes one bus event of the session (``{"type", "properties"}``,
the ``payload`` of ``GET /global/event``) and returns an ``Outcome``: the drafts to emit plus the
signals the adapter acts on (a permission or question to ask, a request answered elsewhere, the
user's own message echoed back, ``session.idle``, ``session.error``). Items:

- each assistant **text part** is one assistant message item (native id = part id): started when
  the part appears, ``item.delta`` for each ``message.part.delta`` (or the growth of the part's
  text), completed with the full text when the part ends (``time.end``), when its message
  completes, or at the end of the turn (``close_open``);
- each **reasoning part** is an assistant message item holding one public ``reasoning`` part;
- each **tool part** is a ``tool_call`` item (started while pending/running, completed with the
  final input) followed by a ``tool_result`` item (``failed`` when the tool errored, e.g. a
  rejected permission);
- ``file`` parts become an assistant item with an ``image`` / ``file_ref`` part; ``patch``,
  ``agent``, ``subtask``, ``retry``, ``compaction`` parts become ``status`` items.

The user's message comes back from OpenCode (``message.updated`` role user, then its text part):
the session layer recorded it already, so it only yields ``Outcome.user_message`` (the adapter uses
it to tell this turn's events from a cancelled turn's late ones) and its parts are dropped. Once
the turn of a message was closed (``close_open``), later updates of its parts are dropped.

Deliberately ignored (documented noise, no draft): ``server.connected``, ``server.heartbeat``,
``session.created`` (the id comes from ``POST /session``), ``session.updated`` (title, cost,
summary), ``session.diff``, ``session.compacted``, ``session.status`` ``busy`` / ``idle``
(``session.idle`` ends the turn; the session layer started it), ``todo.updated``, ``file.edited``,
``file.watcher.updated``, ``command.executed``, ``message.removed``, ``message.part.removed``
(reverts, which we never request), ``message.part.delta`` of fields other than ``text``, the parts
``step-start`` / ``step-finish`` / ``snapshot`` (step bookkeeping: tokens, cost, snapshots), and
``message.updated`` of assistant messages except their completion (errors come with
``session.error``). Server-wide events without a session are ignored by the server client
(``opencode_server.IGNORED_GLOBAL``). Anything else -> ``agent.unparsed`` with the payload as raw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandbox_agent.events import (
    AgentUnparsedData,
    ContentPart,
    ErrorData,
    EventDraft,
    FileRefPart,
    ImagePart,
    ItemDeltaData,
    ItemEventData,
    PermissionData,
    QuestionData,
    ReasoningPart,
    StatusPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    UniversalItem,
)

LOCATION = "opencode"

#: Session events with nothing for the client (see the module docstring).
IGNORED_EVENTS = frozenset(
    {
        "server.connected",
        "server.heartbeat",
        "session.created",
        "session.updated",
        "session.diff",
        "session.compacted",
        "todo.updated",
        "file.edited",
        "file.watcher.updated",
        "command.executed",
        "message.removed",
        "message.part.removed",
    }
)
#: Parts that only carry step bookkeeping.
IGNORED_PARTS = frozenset({"step-start", "step-finish", "snapshot"})
#: Parts shown as a ``status`` item.
STATUS_PARTS = frozenset({"patch", "agent", "subtask", "retry", "compaction"})
#: The ``session.error`` name of an aborted turn (our own cancel).
ABORTED = "MessageAbortedError"


@dataclass
class Outcome:
    """What one payload means for the adapter."""

    drafts: list[EventDraft] = field(default_factory=list)
    permission: PermissionData | None = None
    question: QuestionData | None = None
    #: A request answered outside our API (or by OpenCode itself): (kind, id, reply or answers).
    answered: tuple[str, str, Any] | None = None
    #: A user message seen for the first time: (message id, time created in ms).
    user_message: tuple[str, int] | None = None
    idle: bool = False
    error: ErrorData | None = None
    #: The native session was deleted.
    deleted: bool = False


@dataclass
class _Part:
    kind: str  # text | reasoning | tool
    message_id: str
    text: str = ""
    tool: str = ""
    call_id: str = ""
    arguments: str = "{}"
    completed: bool = False


def session_of(payload: dict[str, Any]) -> str | None:
    """The OpenCode session an event is about (None: a server-wide event)."""
    props = payload.get("properties")
    if not isinstance(props, dict):
        return None
    for value in (
        props.get("sessionID"),
        _get(props, "part", "sessionID"),
        _get(props, "info", "sessionID"),
    ):
        if isinstance(value, str) and value:
            return value
    return None


class OpenCodeMapper:
    """The mapping state of one OpenCode session."""

    def __init__(self) -> None:
        self._roles: dict[str, str] = {}
        self._parts: dict[str, _Part] = {}
        #: Messages of turns already closed: their late updates are dropped.
        self._closed: set[str] = set()
        self._completed: set[str] = set()
        #: Assistant messages of the current turn (seen since the last close).
        self._turn_messages: set[str] = set()
        #: Assistant messages seen and not completed, in order.
        self._open_messages: list[str] = []

    # -- queries for the adapter -----------------------------------------------------------
    @property
    def assistant_open(self) -> bool:
        """Whether an assistant message of the turn has not completed yet."""
        return bool(self._open_messages)

    def close_open(self, raw: Any = None) -> list[EventDraft]:
        """Complete every item still open (the turn is over); later updates are dropped."""
        drafts: list[EventDraft] = []
        for part_id, part in list(self._parts.items()):
            if not part.completed:
                drafts += self._complete(part_id, part, raw, failed=part.kind == "tool")
        self._closed |= self._turn_messages | set(self._open_messages)
        self._turn_messages.clear()
        self._open_messages.clear()
        self._parts.clear()
        return drafts

    # -- the mapping ---------------------------------------------------------------------
    def map(self, payload: dict[str, Any]) -> Outcome:
        kind = payload.get("type")
        props = payload.get("properties")
        if not isinstance(kind, str) or not isinstance(props, dict):
            return Outcome([unparsed(payload, "an event needs a string type and properties")])
        if kind in IGNORED_EVENTS:
            return Outcome()
        try:
            return self._map(kind, props, payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return Outcome([unparsed(payload, f"{kind}: {type(exc).__name__}: {exc}")])

    def _map(self, kind: str, props: dict[str, Any], raw: dict[str, Any]) -> Outcome:
        match kind:
            case "message.updated":
                return self._message(props["info"], raw)
            case "message.part.updated":
                return Outcome(self._part(props["part"], props.get("delta"), raw))
            case "message.part.delta":
                return Outcome(self._delta(props, raw))
            case "session.status":
                return self._status(props["status"], raw)
            case "session.idle":
                return Outcome(idle=True)
            case "session.error":
                return Outcome(error=_error(props.get("error")))
            case "session.deleted":
                return Outcome(deleted=True)
            case "permission.asked":
                return Outcome(permission=_permission(props))
            case "permission.replied":
                return Outcome(answered=("permission", props["requestID"], props["reply"]))
            case "question.asked":
                return Outcome(question=_question(props))
            case "question.replied":
                return Outcome(answered=("question", props["requestID"], props["answers"]))
            case "question.rejected":
                return Outcome(answered=("question", props["requestID"], None))
        return Outcome([unparsed(raw, f"unknown event type: {kind}")])

    def _message(self, info: dict[str, Any], raw: dict[str, Any]) -> Outcome:
        message_id, role = str(info["id"]), str(info["role"])
        first = message_id not in self._roles
        self._roles[message_id] = role
        if role == "user":
            created = _get(info, "time", "created")
            when = int(created) if isinstance(created, int | float) else 0
            return Outcome(user_message=(message_id, when) if first else None)
        if role != "assistant":
            return Outcome([unparsed(raw, f"message.updated: unknown role {role!r}")])
        if message_id in self._closed or message_id in self._completed:
            return Outcome()
        self._turn_messages.add(message_id)
        if _get(info, "time", "completed") is None:
            if message_id not in self._open_messages:
                self._open_messages.append(message_id)
            return Outcome()
        drafts: list[EventDraft] = []
        for part_id, part in list(self._parts.items()):
            if part.message_id == message_id and not part.completed:
                drafts += self._complete(part_id, part, raw, failed=part.kind == "tool")
        # Parts that still come (the stream is not strictly ordered) get items of their own.
        self._completed.add(message_id)
        if message_id in self._open_messages:
            self._open_messages.remove(message_id)
        return Outcome(drafts)

    def _status(self, status: dict[str, Any], raw: dict[str, Any]) -> Outcome:
        if status.get("type") != "retry":
            return Outcome()  # busy / idle: see the module docstring
        detail = f"attempt {status.get('attempt')}: {status.get('message', '')}".strip()
        item = UniversalItem(
            item_id="",
            kind="status",
            status="completed",
            content=[StatusPart(label="retry", detail=detail)],
        )
        return Outcome([_item("item.completed", item, raw)])

    # -- parts ----------------------------------------------------------------------------
    def _part(self, part: dict[str, Any], delta: Any, raw: dict[str, Any]) -> list[EventDraft]:
        part_id, message_id, kind = str(part["id"]), str(part["messageID"]), str(part["type"])
        if self._roles.get(message_id) == "user" or message_id in self._closed:
            return []  # the user's own prompt (already recorded), or a closed turn's message
        if kind in IGNORED_PARTS:
            return []
        self._turn_messages.add(message_id)
        if kind in ("text", "reasoning"):
            return self._text_part(part_id, message_id, kind, part, delta, raw)
        if kind == "tool":
            return self._tool_part(part_id, message_id, part, raw)
        if kind == "file":
            return [_item("item.completed", _file_item(part_id, part), raw)]
        if kind in STATUS_PARTS:
            item = UniversalItem(
                item_id="",
                native_item_id=part_id,
                kind="status",
                status="completed",
                content=_status_content(kind, part),
            )
            return [_item("item.completed", item, raw)]
        return [unparsed(raw, f"message.part.updated: unknown part type {kind!r}")]

    def _text_part(
        self,
        part_id: str,
        message_id: str,
        kind: str,
        part: dict[str, Any],
        delta: Any,
        raw: dict[str, Any],
    ) -> list[EventDraft]:
        state = self._parts.get(part_id)
        drafts: list[EventDraft] = []
        if state is None:
            state = self._parts[part_id] = _Part(kind=kind, message_id=message_id)
            drafts.append(_item("item.started", self._text_item(part_id, state), raw))
        if state.completed:
            return drafts
        text = str(part.get("text") or "")
        # Older servers put the delta on the update; newer ones send message.part.delta and
        # then the whole text: only what we have not streamed yet becomes a delta.
        if isinstance(delta, str) and delta:
            grown = delta
        elif text.startswith(state.text):
            grown = text[len(state.text) :]
        else:
            grown = ""
        if grown:
            drafts.append(_delta(part_id, grown, raw))
        state.text = text if text else state.text + grown
        if _get(part, "time", "end") is not None:
            drafts += self._complete(part_id, state, raw)
        return drafts

    def _delta(self, props: dict[str, Any], raw: dict[str, Any]) -> list[EventDraft]:
        part_id, message_id = str(props["partID"]), str(props["messageID"])
        if props.get("field") != "text" or self._roles.get(message_id) == "user":
            return []
        if message_id in self._closed:
            return []
        self._turn_messages.add(message_id)
        delta = str(props["delta"])
        state = self._parts.get(part_id)
        drafts: list[EventDraft] = []
        if state is None:  # a delta before its part: start the item as a text part
            state = self._parts[part_id] = _Part(kind="text", message_id=message_id)
            drafts.append(_item("item.started", self._text_item(part_id, state), raw))
        if state.completed or state.kind == "tool" or not delta:
            return drafts
        state.text += delta
        drafts.append(_delta(part_id, delta, raw))
        return drafts

    def _tool_part(
        self, part_id: str, message_id: str, part: dict[str, Any], raw: dict[str, Any]
    ) -> list[EventDraft]:
        state_info = part.get("state") or {}
        status = state_info.get("status")
        tool = self._parts.get(part_id)
        drafts: list[EventDraft] = []
        if tool is None:
            tool = self._parts[part_id] = _Part(
                kind="tool",
                message_id=message_id,
                tool=str(part.get("tool") or "tool"),
                call_id=str(part.get("callID") or part_id),
            )
            drafts.append(_item("item.started", self._tool_item(part_id, tool), raw))
        if state_info.get("input"):
            tool.arguments = json.dumps(state_info["input"], separators=(",", ":"))
        if tool.completed or status in ("pending", "running"):
            return drafts
        if status == "completed":
            output = str(state_info.get("output") or "")
            return drafts + self._complete(part_id, tool, raw, output=output)
        if status == "error":
            output = str(state_info.get("error") or "error")
            return drafts + self._complete(part_id, tool, raw, output=output, failed=True)
        return [*drafts, unparsed(raw, f"tool part: unknown state {status!r}")]

    def _complete(
        self,
        part_id: str,
        part: _Part,
        raw: Any,
        *,
        output: str | None = None,
        failed: bool = False,
    ) -> list[EventDraft]:
        """The completion of a part's item(s); a tool gets its result item (if it has one)."""
        part.completed = True
        if part.kind != "tool":
            item = self._text_item(part_id, part).model_copy(update={"status": "completed"})
            return [_item("item.completed", item, raw)]
        call = self._tool_item(part_id, part).model_copy(
            update={"status": "failed" if failed and output is None else "completed"}
        )
        drafts = [_item("item.completed", call, raw)]
        if output is not None:
            result = UniversalItem(
                item_id="",
                native_item_id=f"{part_id}.result",
                kind="tool_result",
                role="tool",
                status="failed" if failed else "completed",
                content=[ToolResultPart(call_id=part.call_id, output=output)],
            )
            drafts.append(_item("item.completed", result, raw))
        return drafts

    @staticmethod
    def _text_item(part_id: str, part: _Part) -> UniversalItem:
        content: list[ContentPart] = []
        if part.text and part.kind == "reasoning":
            content.append(ReasoningPart(text=part.text))
        elif part.text:
            content.append(TextPart(text=part.text))
        return UniversalItem(
            item_id="", native_item_id=part_id, kind="message", role="assistant", content=content
        )

    @staticmethod
    def _tool_item(part_id: str, part: _Part) -> UniversalItem:
        call = ToolCallPart(name=part.tool, arguments=part.arguments, call_id=part.call_id)
        return UniversalItem(
            item_id="", native_item_id=part_id, kind="tool_call", role="assistant", content=[call]
        )


# -- helpers -------------------------------------------------------------------------------
def unparsed(raw: Any, error: str) -> EventDraft:
    return EventDraft(
        type="agent.unparsed",
        data=AgentUnparsedData(error=error, location=LOCATION),
        source="daemon",
        synthetic=True,
        raw=raw,
    )


def _item(event_type: str, item: UniversalItem, raw: Any) -> EventDraft:
    return EventDraft(type=event_type, data=ItemEventData(item=item), raw=raw)


def _delta(part_id: str, delta: str, raw: Any) -> EventDraft:
    data = ItemDeltaData(item_id="", native_item_id=part_id, delta=delta)
    return EventDraft(type="item.delta", data=data, raw=raw)


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _error(error: Any) -> ErrorData:
    if not isinstance(error, dict):
        return ErrorData(message="OpenCode reported an error", code="opencode_error")
    name = str(error.get("name") or "opencode_error")
    message = _get(error, "data", "message")
    return ErrorData(message=str(message or name), code=name, details=error)


def _permission(props: dict[str, Any]) -> PermissionData:
    action = str(props["permission"])
    metadata = {k: v for k, v in props.items() if k not in ("id", "sessionID")}
    return PermissionData(
        permission_id=str(props["id"]), action=action, status="requested", metadata=metadata
    )


def _question(props: dict[str, Any]) -> QuestionData:
    questions = props["questions"]
    first = questions[0] if questions else {}
    options = [str(o.get("label", "")) for o in first.get("options", []) if isinstance(o, dict)]
    return QuestionData.model_validate(
        {
            "question_id": str(props["id"]),
            "prompt": str(first.get("question") or first.get("header") or ""),
            "options": options,
            "status": "requested",
            "questions": questions,
        }
    )


def _file_item(part_id: str, part: dict[str, Any]) -> UniversalItem:
    mime = part.get("mime")
    url = str(part.get("url") or part.get("filename") or "")
    path = url.removeprefix("file://")
    content: list[ContentPart]
    if isinstance(mime, str) and mime.startswith("image/"):
        content = [ImagePart(path=path, mime=mime)]
    else:
        content = [FileRefPart(path=path, action="read")]
    return UniversalItem(
        item_id="",
        native_item_id=part_id,
        kind="message",
        role="assistant",
        status="completed",
        content=content,
    )


def _status_content(kind: str, part: dict[str, Any]) -> list[ContentPart]:
    if kind == "patch":
        files = [FileRefPart(path=str(f), action="patch") for f in part.get("files") or []]
        return [StatusPart(label="patch", detail=str(part.get("hash") or "")), *files]
    detail: Any
    if kind == "agent":
        detail = part.get("name")
    elif kind == "subtask":
        detail = part.get("description") or part.get("prompt")
    elif kind == "retry":
        detail = _get(part, "error", "data", "message") or f"attempt {part.get('attempt')}"
    else:  # compaction
        detail = "auto" if part.get("auto") else "manual"
    return [StatusPart(label=kind, detail=None if detail is None else str(detail))]
