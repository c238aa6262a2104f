"""Claude Code's stream-json output (``--output-format stream-json --verbose
--include-partial-messages``) mapped to event drafts: pure, no I/O.

``ClaudeMapper.map(line)`` takes one parsed stdout line and returns a ``Mapped``: the drafts to
emit, plus what the adapter must act on (a permission or question claude waits on, a request it
withdrew, a reply it expects, the end of a turn). One mapper per adapter; it keeps the assistant
messages still open.

Mapping (``upstream-behaviour.md`` 4.1, with the fixes of section 9):

- ``stream_event`` ``content_block_delta`` / ``text_delta`` -> ``item.delta`` on the assistant
  message item (native id = the API message id).
- ``assistant`` (one line per content block): ``text`` -> a text part of the message item,
  ``thinking`` -> a reasoning part, other blocks -> json parts; ``tool_use`` (and
  ``server_tool_use`` / ``mcp_tool_use``) -> a ``tool_call`` item of its own (native id = the
  tool_use id, parent = the message). The message item completes on the API's
  ``message_stop``, or when tool results or the result arrive.
- ``user``: each ``tool_result`` block -> a ``tool_result`` item (parent = the call; status
  ``failed`` when ``is_error``).
- ``result`` -> completes what is open and ends the turn: ``turn.ended {completed}``, or an
  ``error`` event and ``turn.ended {error}`` when ``is_error``. A successful turn that said
  nothing else (a local slash command) gets its ``result`` text as the assistant message.
- ``control_request`` ``can_use_tool`` -> ``permission.requested`` (id = request_id, action =
  tool name, metadata toolName / input / permissionSuggestions / blockedPath / toolUseId /
  description); for AskUserQuestion and ExitPlanMode -> ``question.requested`` instead (id = the
  tool_use id). Any other control request -> ``agent.unparsed`` and an error reply (claude waits
  on every control request, so none may go unanswered).
- ``control_cancel_request`` -> the adapter resolves the withdrawn request (daemon, rejected).
- ``system`` ``init`` -> the native session id; ``informational`` / ``notification`` -> a
  ``status`` item.

Deliberately ignored (nothing a client needs, or shown elsewhere):

- ``system`` subtypes ``status`` (requesting...), ``permission_denied`` (the tool_result item
  carries the refusal), ``compact_boundary``, ``api_retry``, ``session_state_changed``,
  ``hook_started`` / ``hook_progress`` / ``hook_response``, ``task_started`` / ``task_progress``
  / ``task_notification`` / ``task_updated``, ``files_persisted``, ``background_tasks_changed``,
  ``turn_duration``, ``session_title_changed``;
- ``stream_event`` other than text deltas (message_start, content_block_start/stop,
  thinking and input_json deltas, message_delta, message_stop: the ``assistant`` lines carry
  the finished blocks);
- ``user`` text blocks and plain-string user content (our own prompt, echoed, and
  "[Request interrupted by user]");
- ``redacted_thinking`` blocks;
- ``control_response`` (answers to our initialize / interrupt, matched by the adapter),
  ``keep_alive``, ``rate_limit_event``, ``tool_progress``, ``tool_use_summary``,
  ``auth_status``, ``prompt_suggestion``, ``update_environment_variables``.

Anything else becomes ``agent.unparsed`` with the raw line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox_agent.events import (
    AgentUnparsedData,
    ContentPart,
    ErrorData,
    EventDraft,
    ItemDeltaData,
    ItemEventData,
    JsonPart,
    PermissionData,
    QuestionData,
    ReasoningPart,
    StatusPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    TurnEndedData,
    UniversalItem,
)

IGNORED_TYPES = frozenset(
    {
        "keep_alive",
        "rate_limit_event",
        "tool_progress",
        "tool_use_summary",
        "auth_status",
        "prompt_suggestion",
        "update_environment_variables",
    }
)
IGNORED_SYSTEM = frozenset(
    {
        "status",
        "permission_denied",
        "compact_boundary",
        "api_retry",
        "session_state_changed",
        "hook_started",
        "hook_progress",
        "hook_response",
        "task_started",
        "task_progress",
        "task_notification",
        "task_updated",
        "files_persisted",
        "background_tasks_changed",
        "turn_duration",
        "session_title_changed",
    }
)
STATUS_SYSTEM = frozenset({"informational", "notification"})
TOOL_USE_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
ASK_TOOL = "AskUserQuestion"
PLAN_TOOL = "ExitPlanMode"
QUESTION_TOOLS = frozenset({ASK_TOOL, PLAN_TOOL})
PLAN_PROMPT = "Approve plan execution?"
PLAN_OPTIONS = ["approve", "reject"]


@dataclass(frozen=True)
class ToolRequest:
    """A ``can_use_tool`` request claude waits on: what answering it needs."""

    request_id: str
    tool_name: str
    input: dict[str, Any]
    permission: PermissionData | None = None
    question: QuestionData | None = None


@dataclass
class Mapped:
    """What one stdout line means."""

    #: Drafts to emit now (before any request or ending).
    drafts: list[EventDraft] = field(default_factory=list)
    #: A permission or question claude now waits on.
    request: ToolRequest | None = None
    #: The id of a control request claude withdrew (``control_cancel_request``).
    withdrawn: str | None = None
    #: A control_response to write to claude at once (refusing an unsupported request).
    reply: dict[str, Any] | None = None
    #: The answer to one of our control requests: (request_id, the response object).
    response: tuple[str, dict[str, Any]] | None = None
    #: The turn ended: "completed" or "error"; ``ending`` holds its drafts.
    result: Literal["completed", "error"] | None = None
    ending: list[EventDraft] = field(default_factory=list)
    #: The native session id the line reports, if any.
    session_id: str | None = None


@dataclass
class _Message:
    parent: str | None
    parts: list[ContentPart] = field(default_factory=list)
    streamed: str = ""
    #: Its item.started is out (so that tool calls can name it as their parent).
    started: bool = False


def unparsed(raw: Any, error: str, location: str = "claude stdout") -> EventDraft:
    text = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    data = AgentUnparsedData(error=error, location=location, raw_hash=digest)
    return EventDraft(type="agent.unparsed", data=data, raw=raw)


def parse_line(line: bytes | str) -> tuple[dict[str, Any] | None, EventDraft | None]:
    """The JSON object of a stdout line, or an ``agent.unparsed`` draft when it is not one."""
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, unparsed(text, f"not JSON: {exc}")
    if not isinstance(value, dict):
        return None, unparsed(value, "not a JSON object")
    return value, None


class ClaudeMapper:
    """Maps one claude process's stdout lines, in order, to drafts (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[str, _Message] = {}
        self._current: str | None = None
        #: Whether the running turn produced any message text (for the ``result`` fallback).
        self._said: bool = False
        self._synthetic_ids = 0
        #: Inputs of question tools by tool_use id: ExitPlanMode's can_use_tool carries an empty
        #: input, the plan is in the tool_use block.
        self._question_inputs: dict[str, dict[str, Any]] = {}

    # -- the entry point -------------------------------------------------------------------
    def map(self, line: dict[str, Any]) -> Mapped:
        kind = line.get("type")
        out = Mapped()
        sid = line.get("session_id")
        if isinstance(sid, str) and sid:
            out.session_id = sid
        try:
            match kind:
                case "stream_event":
                    self._stream_event(line, out)
                case "assistant":
                    self._assistant(line, out)
                case "user":
                    self._user(line, out)
                case "result":
                    self._result(line, out)
                case "control_request":
                    self._control_request(line, out)
                case "control_cancel_request":
                    request_id = line.get("request_id")
                    if isinstance(request_id, str):
                        out.withdrawn = request_id
                    else:
                        out.drafts.append(unparsed(line, "control_cancel_request without id"))
                case "control_response":
                    self._control_response(line, out)
                case "system":
                    self._system(line, out)
                case str() if kind in IGNORED_TYPES:
                    pass
                case _:
                    out.drafts.append(unparsed(line, f"unknown message type: {kind!r}"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A known type in a shape we do not understand: keep it, visibly.
            out = Mapped(session_id=out.session_id, reply=out.reply)
            out.drafts.append(unparsed(line, f"cannot map {kind}: {exc!r}"))
            request_id = line.get("request_id")
            if kind == "control_request" and isinstance(request_id, str) and out.reply is None:
                out.reply = error_response(request_id, f"cannot handle this request: {exc!r}")
        return out

    def flush(self) -> list[EventDraft]:
        """Complete every assistant message still open (the turn or the process ended)."""
        drafts: list[EventDraft] = []
        for message_id in list(self._open):
            drafts += self._complete(message_id)
        self._current = None
        return drafts

    # -- per type --------------------------------------------------------------------------
    def _stream_event(self, line: dict[str, Any], out: Mapped) -> None:
        event = line["event"]
        etype = event.get("type")
        message_id = line.get("api_message_id")
        if etype == "message_start":
            message_id = event.get("message", {}).get("id") or message_id
            if isinstance(message_id, str):
                self._current = message_id
                self._message(message_id, line.get("parent_tool_use_id"))
            return
        if not isinstance(message_id, str):
            message_id = self._current
        if etype == "content_block_delta":
            delta = event.get("delta") or {}
            text = delta.get("text")
            if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                if message_id is None:
                    message_id = self._new_message_id()
                    self._current = message_id
                message = self._message(message_id, line.get("parent_tool_use_id"))
                self._start(message_id, message, out)
                message.streamed += text
                self._said = True
                data = ItemDeltaData(item_id="", native_item_id=message_id, delta=text)
                out.drafts.append(EventDraft(type="item.delta", data=data, raw=line))
        elif etype == "message_stop" and message_id is not None:
            out.drafts += self._complete(message_id)

    def _assistant(self, line: dict[str, Any], out: Mapped) -> None:
        message = line["message"]
        message_id = message.get("id")
        if not isinstance(message_id, str) or not message_id:
            message_id = self._current or self._new_message_id()
        parent = line.get("parent_tool_use_id")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or []:
            btype = block.get("type")
            part: ContentPart
            if btype == "text":
                if not block.get("text"):
                    continue
                part = TextPart(text=block["text"])
                self._said = True
            elif btype == "thinking":
                if not block.get("thinking"):
                    continue
                part = ReasoningPart(text=block["thinking"], visibility="public")
            elif btype == "redacted_thinking":
                continue
            elif btype in TOOL_USE_BLOCKS:
                if block.get("name") in QUESTION_TOOLS and isinstance(block.get("input"), dict):
                    self._question_inputs[str(block.get("id"))] = block["input"]
                started = message_id in self._open and self._open[message_id].started
                out.drafts.append(self._tool_call(block, message_id if started else parent, line))
                continue
            else:
                part = JsonPart(value=block)
            message = self._message(message_id, parent)
            self._start(message_id, message, out)
            message.parts.append(part)

    def _tool_call(self, block: dict[str, Any], parent: Any, raw: Any) -> EventDraft:
        call_id = str(block["id"])
        part = ToolCallPart(
            name=str(block.get("name") or "tool"),
            arguments=json.dumps(block.get("input") or {}),
            call_id=call_id,
        )
        item = UniversalItem(
            item_id="",
            native_item_id=call_id,
            parent_id=parent if isinstance(parent, str) else None,
            kind="tool_call",
            role="assistant",
            status="completed",
            content=[part],
        )
        return EventDraft(type="item.completed", data=ItemEventData(item=item), raw=raw)

    def _user(self, line: dict[str, Any], out: Mapped) -> None:
        content = line["message"].get("content")
        if not isinstance(content, list):
            return  # our prompt, echoed
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            # The model's message is over once its tools ran.
            out.drafts += self.flush()
        for block in results:
            call_id = str(block["tool_use_id"])
            part = ToolResultPart(call_id=call_id, output=_output_text(block.get("content")))
            item = UniversalItem(
                item_id="",
                parent_id=call_id,
                kind="tool_result",
                role="tool",
                status="failed" if block.get("is_error") else "completed",
                content=[part],
            )
            out.drafts.append(
                EventDraft(type="item.completed", data=ItemEventData(item=item), raw=line)
            )

    def _result(self, line: dict[str, Any], out: Mapped) -> None:
        out.drafts += self.flush()
        text = line.get("result")
        failed = bool(line.get("is_error")) or line.get("subtype") not in (None, "success")
        if not failed and isinstance(text, str) and text and not self._said:
            message_id = self._new_message_id()
            message = self._message(message_id, None)
            self._start(message_id, message, out)
            message.parts.append(TextPart(text=text))
            out.drafts += self._complete(message_id)
        self._said = False
        if failed:
            out.result = "error"
            out.ending.append(EventDraft(type="error", data=_result_error(line), raw=line))
            out.ending.append(
                EventDraft(type="turn.ended", data=TurnEndedData(reason="error"), raw=line)
            )
        else:
            out.result = "completed"
            out.ending.append(
                EventDraft(type="turn.ended", data=TurnEndedData(reason="completed"), raw=line)
            )

    def _control_request(self, line: dict[str, Any], out: Mapped) -> None:
        request_id = str(line["request_id"])
        request = line["request"]
        subtype = request.get("subtype")
        if subtype != "can_use_tool":
            out.reply = error_response(request_id, f"unsupported control request: {subtype}")
            out.drafts.append(unparsed(line, f"unsupported control request: {subtype!r}"))
            return
        tool = str(request["tool_name"])
        tool_input = request.get("input")
        if not isinstance(tool_input, dict):
            tool_input = {}
        tool_use_id = request.get("tool_use_id")
        if tool in QUESTION_TOOLS:
            shown = tool_input or self._question_inputs.pop(str(tool_use_id), {})
            question = _question(tool, shown, str(tool_use_id or request_id))
            out.request = ToolRequest(request_id, tool, tool_input, question=question)
            return
        metadata: dict[str, Any] = {
            "toolName": tool,
            "input": tool_input,
            "permissionSuggestions": request.get("permission_suggestions"),
            "blockedPath": request.get("blocked_path"),
        }
        if tool_use_id is not None:
            metadata["toolUseId"] = tool_use_id
        if request.get("description"):
            metadata["description"] = request["description"]
        permission = PermissionData(
            permission_id=request_id, action=tool, status="requested", metadata=metadata
        )
        out.request = ToolRequest(request_id, tool, tool_input, permission=permission)

    def _control_response(self, line: dict[str, Any], out: Mapped) -> None:
        response = line["response"]
        request_id = response.get("request_id")
        if isinstance(request_id, str):
            out.response = (request_id, response)

    def _system(self, line: dict[str, Any], out: Mapped) -> None:
        subtype = line.get("subtype")
        if subtype == "init" or subtype in IGNORED_SYSTEM:
            return
        if subtype in STATUS_SYSTEM:
            detail = line.get("content") or line.get("message") or line.get("text")
            part = StatusPart(label=str(subtype), detail=None if detail is None else str(detail))
            item = UniversalItem(
                item_id="", kind="status", role="system", status="completed", content=[part]
            )
            out.drafts.append(
                EventDraft(type="item.completed", data=ItemEventData(item=item), raw=line)
            )
            return
        out.drafts.append(unparsed(line, f"unknown system subtype: {subtype!r}"))

    # -- messages --------------------------------------------------------------------------
    def _message(self, message_id: str, parent: Any) -> _Message:
        message = self._open.get(message_id)
        if message is None:
            message = self._open[message_id] = _Message(
                parent=parent if isinstance(parent, str) else None
            )
        return message

    def _start(self, message_id: str, message: _Message, out: Mapped) -> None:
        if message.started:
            return
        message.started = True
        item = UniversalItem(
            item_id="",
            native_item_id=message_id,
            parent_id=message.parent,
            kind="message",
            role="assistant",
            status="in_progress",
        )
        out.drafts.append(EventDraft(type="item.started", data=ItemEventData(item=item)))

    def _complete(self, message_id: str) -> list[EventDraft]:
        message = self._open.pop(message_id, None)
        if self._current == message_id:
            self._current = None
        if message is None:
            return []
        parts = list(message.parts)
        if not any(isinstance(p, TextPart) for p in parts) and message.streamed:
            # Interrupted before claude printed the block: what streamed is all there is.
            parts.insert(0, TextPart(text=message.streamed))
        if not parts:
            return []
        item = UniversalItem(
            item_id="",
            native_item_id=message_id,
            parent_id=message.parent,
            kind="message",
            role="assistant",
            status="completed",
            content=parts,
        )
        return [EventDraft(type="item.completed", data=ItemEventData(item=item))]

    def _new_message_id(self) -> str:
        self._synthetic_ids += 1
        return f"claude_message_{self._synthetic_ids}"


# -- helpers ------------------------------------------------------------------------------
def error_response(request_id: str, message: str) -> dict[str, Any]:
    """A control_response refusing a control request."""
    return {
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": message},
    }


def success_response(request_id: str, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    }


def _output_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" for b in content
    ):
        return "\n".join(str(b.get("text", "")) for b in content)
    if content is None:
        return ""
    return json.dumps(content)


def _result_error(line: dict[str, Any]) -> ErrorData:
    errors = line.get("errors")
    text = line.get("result")
    if isinstance(text, str) and text:
        message = text
    elif isinstance(errors, list) and errors:
        message = "; ".join(str(e) for e in errors)
    else:
        message = f"claude turn failed ({line.get('subtype')})"
    details = {
        k: line.get(k)
        for k in ("subtype", "stop_reason", "terminal_reason", "api_error_status")
        if line.get(k) is not None
    }
    return ErrorData(message=message, code=str(line.get("subtype") or "error"), details=details)


def _question(tool: str, tool_input: dict[str, Any], question_id: str) -> QuestionData:
    metadata = {"toolName": tool, "input": tool_input}
    questions = tool_input.get("questions")
    if isinstance(questions, list) and questions and isinstance(questions[0], dict):
        first = questions[0]
        options = [
            str(o.get("label")) if isinstance(o, dict) else str(o)
            for o in first.get("options") or []
        ]
        return QuestionData.model_validate(
            {
                "question_id": question_id,
                "prompt": str(first.get("question") or ""),
                "options": options,
                "status": "requested",
                "metadata": metadata,
            }
        )
    if isinstance(tool_input.get("question"), str):
        options = [str(o) for o in tool_input.get("options") or []]
        prompt = tool_input["question"]
    else:
        plan = tool_input.get("plan")
        prompt = f"{PLAN_PROMPT}\n\n{plan}" if isinstance(plan, str) and plan else PLAN_PROMPT
        options = list(PLAN_OPTIONS)
    return QuestionData.model_validate(
        {
            "question_id": question_id,
            "prompt": prompt,
            "options": options,
            "status": "requested",
            "metadata": metadata,
        }
    )


def question_answer(request: ToolRequest, answers: list[list[str]] | None) -> dict[str, Any]:
    """The ``can_use_tool`` response that answers a question tool (None: the user refused).

    AskUserQuestion: allow, with the tool's input plus ``answers`` keyed by question text (a
    label, or a list of labels for a multiSelect question), as claude's tool validates them.
    ExitPlanMode: allow when the first answer approves the plan, else deny.
    """
    if answers is None:
        return {"behavior": "deny", "message": "The user declined to answer."}
    if request.tool_name == PLAN_TOOL:
        first = answers[0][0] if answers and answers[0] else ""
        if first.strip().lower() in ("approve", "yes", "accept", "allow"):
            return {"behavior": "allow", "updatedInput": request.input}
        reason = "The user rejected the plan."
        if first and first.strip().lower() != "reject":
            reason += f" Their answer: {first}"
        return {"behavior": "deny", "message": reason}
    by_text: dict[str, Any] = {}
    questions = request.input.get("questions")
    if isinstance(questions, list):
        for index, question in enumerate(questions):
            if not isinstance(question, dict) or index >= len(answers) or not answers[index]:
                continue
            labels = answers[index]
            text = str(question.get("question") or "")
            by_text[text] = labels if question.get("multiSelect") else labels[0]
    return {"behavior": "allow", "updatedInput": {**request.input, "answers": by_text}}
