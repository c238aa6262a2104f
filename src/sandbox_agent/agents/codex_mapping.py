"""Codex app-server notifications -> event drafts (pure; one ``CodexMapper`` per thread).

Mapped (``upstream-behaviour.md`` 4.2, with the session layer's split of ``base.py``):

- ``item/started`` / ``item/completed`` -> ``item.started`` / ``item.completed`` of the
  ``ThreadItem``: ``agentMessage`` and ``plan`` -> assistant message (text); ``reasoning`` ->
  assistant message of reasoning parts (summary public, content private);
  ``commandExecution`` -> a ``tool_call`` item (name ``commandExecution``, arguments
  ``{command, cwd}``) and, on completion, a ``tool_result`` item (native id ``<id>:result``:
  the output, then a json part ``{command, cwd, status, exitCode, durationMs}``; ``failed`` when
  the command failed or was declined); ``fileChange`` -> ``tool_call`` ``fileChange`` and a
  ``tool_result`` of one ``file_ref`` per change (``write`` for add/delete, ``patch`` for update,
  with its diff); ``mcpToolCall`` -> ``tool_call`` ``<server>.<tool>`` + ``tool_result``;
  ``dynamicToolCall``, ``collabAgentToolCall``, ``webSearch`` -> ``tool_call`` + ``tool_result``;
  ``functionCallOutput`` -> ``tool_result``; ``imageView`` / ``imageGeneration`` -> assistant
  message with an ``image`` part; ``hookPrompt`` -> system message; ``contextCompaction``,
  ``sleep``, ``subAgentActivity``, ``enteredReviewMode`` / ``exitedReviewMode`` -> status items.
  An unknown item type -> ``agent.unparsed``.
- deltas: ``item/agentMessage/delta``, ``item/reasoning/textDelta``,
  ``item/reasoning/summaryTextDelta``, ``item/plan/delta`` -> ``item.delta`` of the item;
  ``item/commandExecution/outputDelta``, ``item/fileChange/outputDelta`` -> ``item.delta`` of
  the ``<id>:result`` item (started on its first output).
- ``turn/completed`` -> ``turn.ended``: ``completed``; ``failed`` -> an ``error`` (the turn's
  error) then ``reason: error``; ``interrupted`` -> ``reason: interrupted``. Items the turn left
  open are completed first (status ``failed``, with the text streamed so far). The last
  ``thread/tokenUsage/updated`` of the turn goes into ``turn.ended``'s ``metadata.usage``.
- ``error`` -> ``error`` event (message, code = ``codexErrorInfo`` when a string, else ``codex``;
  details = the params), unless ``willRetry``: codex retries by itself, so that one is a status
  item (``error.retrying``) and does not end a client's ``messages/stream``. A failed turn whose
  error was already reported this way gets no second ``error``.
- status items (kind ``status``, role ``system``, completed at once): ``warning`` and
  ``guardianWarning`` (label ``warning``), ``turn/plan/updated`` (``turn.plan.updated``, the plan
  as json), ``thread/compacted`` (``thread.compacted``), ``model/rerouted``
  (``model.rerouted``), ``item/mcpToolCall/progress`` (``mcp.progress``), and
  ``mcpServer/startupStatus/updated`` when a server ``failed`` (``mcp.startup.failed``: name
  and error; ``starting`` / ``ready`` are ignored).

Deliberately ignored (``IGNORED``), each because something else already carries it:

- ``userMessage`` items: the session layer records the prompt as the turn's user item;
- ``thread/started``, ``turn/started``: the session layer records ``session.started`` and
  ``turn.started`` (the adapter reads the turn id from ``turn/start``'s answer);
- ``thread/status/changed``: idle/active/waitingOnApproval is what ``turn.*`` and
  ``permission.*`` events already say;
- ``serverRequest/resolved``: the adapter records ``permission.resolved`` /
  ``question.resolved`` when it answers;
- ``thread/tokenUsage/updated``: folded into ``turn.ended`` (above), not an event of its own;
- ``turn/diff/updated``, ``item/fileChange/patchUpdated``: the ``fileChange`` items carry the
  final changes and diffs;
- ``item/reasoning/summaryPartAdded``, ``item/commandExecution/terminalInteraction``: stream
  bookkeeping (a new summary part; stdin written to a running command) that the completed
  item's content supersedes;
- thread metadata: ``thread/name/updated``, ``thread/goal/updated``, ``thread/goal/cleared``,
  ``thread/settings/updated``, ``thread/archived``, ``thread/unarchived``, ``thread/closed``,
  ``thread/deleted``, ``thread/readState/changed``, ``thread/section/changed``,
  ``thread/attachment/updated``, ``thread/prediction/updated``, ``thread/queue/changed``,
  ``thread/project/updated``, ``thread/reverted``, ``thread/environment/connected``,
  ``thread/environment/disconnected``;
- features sandbox-agent never turns on: ``hook/started``, ``hook/completed``,
  ``item/autoApprovalReview/started``, ``item/autoApprovalReview/completed``,
  ``autoApprovalReview/strictReviewRequired``, ``turn/moderationMetadata``,
  ``model/safetyBuffering/updated``, ``model/verification``, ``thread/realtime/*``.

Anything else -> ``agent.unparsed`` (location ``codex``) with the notification as ``raw``.
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
    JsonPart,
    ReasoningPart,
    StatusPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    TurnEndedData,
    UniversalItem,
)

LOCATION = "codex"

IGNORED: frozenset[str] = frozenset(
    {
        "thread/started",
        "turn/started",
        "thread/status/changed",
        "serverRequest/resolved",
        "thread/tokenUsage/updated",
        "turn/diff/updated",
        "item/fileChange/patchUpdated",
        "item/reasoning/summaryPartAdded",
        "item/commandExecution/terminalInteraction",
        "thread/name/updated",
        "thread/goal/updated",
        "thread/goal/cleared",
        "thread/settings/updated",
        "thread/archived",
        "thread/unarchived",
        "thread/closed",
        "thread/deleted",
        "thread/readState/changed",
        "thread/section/changed",
        "thread/attachment/updated",
        "thread/prediction/updated",
        "thread/queue/changed",
        "thread/project/updated",
        "thread/reverted",
        "thread/environment/connected",
        "thread/environment/disconnected",
        "hook/started",
        "hook/completed",
        "item/autoApprovalReview/started",
        "item/autoApprovalReview/completed",
        "autoApprovalReview/strictReviewRequired",
        "turn/moderationMetadata",
        "model/safetyBuffering/updated",
        "model/verification",
    }
)
IGNORED_PREFIXES = ("thread/realtime/",)

_TEXT_DELTAS = frozenset(
    {
        "item/agentMessage/delta",
        "item/reasoning/textDelta",
        "item/reasoning/summaryTextDelta",
        "item/plan/delta",
    }
)
_OUTPUT_DELTAS = frozenset({"item/commandExecution/outputDelta", "item/fileChange/outputDelta"})
#: Item types whose completion adds a separate tool_result item.
_TOOL_TYPES = frozenset(
    {"commandExecution", "fileChange", "mcpToolCall", "dynamicToolCall", "collabAgentToolCall",
     "webSearch"}
)  # fmt: skip
_FAILED = frozenset({"failed", "declined", "error"})


def result_id(native_id: str) -> str:
    """The native id of the tool_result item of tool item ``native_id``."""
    return f"{native_id}:result"


def is_ignored(method: str) -> bool:
    return method in IGNORED or method.startswith(IGNORED_PREFIXES)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _item(
    native_id: str,
    kind: str,
    role: str | None,
    status: str,
    content: list[ContentPart],
    parent: str | None = None,
) -> UniversalItem:
    return UniversalItem(
        item_id="",
        native_item_id=native_id,
        parent_id=parent,
        kind=kind,
        role=role,
        status=status,
        content=content,
    )


def unparsed(error: str, raw: Any) -> EventDraft:
    data = AgentUnparsedData(error=error, location=LOCATION)
    return EventDraft(type="agent.unparsed", data=data, source="daemon", synthetic=True, raw=raw)


def status_item(label: str, detail: Any, raw: Any) -> list[EventDraft]:
    """A status item, completed at once (no native id: each one is a new item)."""
    text = detail if isinstance(detail, str) or detail is None else _json(detail)
    item = UniversalItem(
        item_id="",
        kind="status",
        role="system",
        status="completed",
        content=[StatusPart(label=label, detail=text)],
    )
    return [EventDraft(type="item.completed", data=ItemEventData(item=item), raw=raw)]


@dataclass
class _Open:
    """An item started and not yet completed: what to complete it with if the turn stops."""

    item: UniversalItem
    text: list[str] = field(default_factory=list)


@dataclass
class CodexMapper:
    """The mapping state of one thread."""

    #: Items started and not completed, by native id.
    open: dict[str, _Open] = field(default_factory=dict)
    #: The latest token usage, by turn id.
    usage: dict[str, Any] = field(default_factory=dict)
    #: Turns whose final error was already emitted (from an ``error`` notification).
    errored: set[str] = field(default_factory=set)

    # -- entry point ----------------------------------------------------------------------
    def notification(self, message: dict[str, Any]) -> list[EventDraft]:
        """The drafts of one notification (``[]`` when deliberately ignored)."""
        method = message.get("method")
        params = message.get("params")
        if not isinstance(method, str) or not isinstance(params, dict):
            return [unparsed("not a JSON-RPC notification", message)]
        try:
            return self._map(method, params, message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return [unparsed(f"{method}: {type(exc).__name__}: {exc}", message)]

    def _map(self, method: str, params: dict[str, Any], raw: Any) -> list[EventDraft]:
        if method == "thread/tokenUsage/updated":
            turn = _str(params.get("turnId"))
            if turn is not None:
                self.usage = {turn: params.get("tokenUsage")}
            return []
        if is_ignored(method):
            return []
        if method == "item/started":
            return self._item_started(params["item"], raw)
        if method == "item/completed":
            return self._item_completed(params["item"], raw)
        if method in _TEXT_DELTAS:
            return self._delta(str(params["itemId"]), str(params["delta"]), raw)
        if method in _OUTPUT_DELTAS:
            return self._output_delta(str(params["itemId"]), str(params["delta"]), raw)
        if method == "turn/completed":
            return self.turn_completed(params["turn"], raw)
        if method == "error":
            if params.get("willRetry"):
                message = str(_dict(params.get("error")).get("message") or "retrying")
                return status_item("error.retrying", message, raw)
            turn = _str(params.get("turnId"))
            if turn is not None:
                self.errored.add(turn)
            return [self._error(params, raw)]
        if method in ("warning", "guardianWarning"):
            return status_item("warning", str(params["message"]), raw)
        if method == "turn/plan/updated":
            plan = {"explanation": params.get("explanation"), "plan": params["plan"]}
            return status_item("turn.plan.updated", plan, raw)
        if method == "thread/compacted":
            return status_item("thread.compacted", None, raw)
        if method == "model/rerouted":
            detail = {k: params.get(k) for k in ("fromModel", "toModel", "reason")}
            return status_item("model.rerouted", detail, raw)
        if method == "mcpServer/startupStatus/updated":
            if params.get("status") != "failed":
                return []
            detail = {k: params.get(k) for k in ("name", "error", "failureReason")}
            return status_item("mcp.startup.failed", detail, raw)
        if method == "item/mcpToolCall/progress":
            return status_item("mcp.progress", str(params["message"]), raw)
        return [unparsed(f"unknown codex notification: {method}", raw)]

    # -- items ----------------------------------------------------------------------------
    def _item_started(self, thread_item: dict[str, Any], raw: Any) -> list[EventDraft]:
        kind = thread_item["type"]
        native = str(thread_item["id"])
        if kind == "userMessage":
            return []
        item = self._convert(thread_item, final=False)
        if item is None:
            return [unparsed(f"unknown codex item type: {kind}", raw)]
        self.open[native] = _Open(item)
        return [EventDraft(type="item.started", data=ItemEventData(item=item), raw=raw)]

    def _item_completed(self, thread_item: dict[str, Any], raw: Any) -> list[EventDraft]:
        kind = thread_item["type"]
        native = str(thread_item["id"])
        if kind == "userMessage":
            return []
        item = self._convert(thread_item, final=True)
        if item is None:
            return [unparsed(f"unknown codex item type: {kind}", raw)]
        self.open.pop(native, None)
        drafts = [EventDraft(type="item.completed", data=ItemEventData(item=item), raw=raw)]
        if kind in _TOOL_TYPES:
            result = self._tool_result(thread_item)
            self.open.pop(result_id(native), None)
            drafts.append(EventDraft(type="item.completed", data=ItemEventData(item=result)))
        return drafts

    def _convert(self, t: dict[str, Any], *, final: bool) -> UniversalItem | None:
        """The item of ThreadItem ``t`` (the tool_call half for tool items); None if unknown."""
        kind = t["type"]
        native = str(t["id"])
        status = "completed" if final else "in_progress"
        content: list[ContentPart]
        if kind in ("agentMessage", "plan"):
            text = _str(t.get("text")) or ""
            content = [TextPart(text=text)] if text else []
            return _item(native, "message", "assistant", status, content)
        if kind == "reasoning":
            content = [ReasoningPart(text=s, visibility="public") for s in t.get("summary") or []]
            content += [ReasoningPart(text=s, visibility="private") for s in t.get("content") or []]
            return _item(native, "message", "assistant", status, content)
        if kind in _TOOL_TYPES:
            name, arguments = _tool_call(t)
            call = ToolCallPart(name=name, arguments=_json(arguments), call_id=native)
            # The call itself is made; how it went is the result item's status.
            return _item(native, "tool_call", "assistant", status, [call])
        if kind == "functionCallOutput":
            output = t.get("output")
            text = output if isinstance(output, str) else _json(output)
            content = [ToolResultPart(call_id=native, output=text)]
            return _item(native, "tool_result", "tool", status, content)
        if kind == "imageView":
            return _item(native, "message", "assistant", status, [ImagePart(path=str(t["path"]))])
        if kind == "imageGeneration":
            saved = t.get("savedPath")
            failed = final and t.get("failure") is not None
            content = [ImagePart(path=str(saved))] if isinstance(saved, str) else []
            if failed:
                content.append(JsonPart.model_validate({"json": {"failure": t.get("failure")}}))
            return _item(native, "message", "assistant", "failed" if failed else status, content)
        if kind == "hookPrompt":
            fragments = t.get("fragments") or []
            text = "\n".join(str(f.get("text", "")) for f in fragments if isinstance(f, dict))
            return _item(native, "message", "system", status, [TextPart(text=text)] if text else [])
        labels = {
            "contextCompaction": "context.compacted",
            "sleep": "sleep",
            "subAgentActivity": "subagent.activity",
            "enteredReviewMode": "review.entered",
            "exitedReviewMode": "review.exited",
        }
        if kind in labels:
            detail = {k: v for k, v in t.items() if k not in ("type", "id")}
            part = StatusPart(label=labels[kind], detail=_json(detail) if detail else None)
            return _item(native, "status", "system", status, [part])
        return None

    def _tool_result(self, t: dict[str, Any]) -> UniversalItem:
        native = str(t["id"])
        kind = t["type"]
        state = _str(t.get("status")) or "completed"
        failed = state in _FAILED
        content: list[ContentPart]
        if kind == "commandExecution":
            output = _str(t.get("aggregatedOutput")) or ""
            info = {k: t.get(k) for k in ("command", "cwd", "status", "exitCode", "durationMs")}
            content = [ToolResultPart(call_id=native, output=output), _json_part(info)]
            exit_code = t.get("exitCode")
            failed = failed or (isinstance(exit_code, int) and exit_code != 0)
        elif kind == "fileChange":
            changes = t.get("changes") or []
            content = [ToolResultPart(call_id=native, output=_summary(changes, state))]
            for change in changes:
                change_kind = (change.get("kind") or {}).get("type")
                action = "patch" if change_kind == "update" else "write"
                diff = _str(change.get("diff"))
                content.append(FileRefPart(path=str(change["path"]), action=action, diff=diff))
            content.append(_json_part({"status": state}))
        elif kind == "mcpToolCall":
            error = t.get("error")
            if isinstance(error, dict):
                failed = True
                output = str(error.get("message", ""))
            else:
                output = _json(t.get("result"))
            content = [ToolResultPart(call_id=native, output=output)]
        elif kind == "dynamicToolCall":
            failed = failed or t.get("success") is False
            content = [ToolResultPart(call_id=native, output=_json(t.get("contentItems")))]
        elif kind == "collabAgentToolCall":
            content = [ToolResultPart(call_id=native, output=_json(t.get("agentsStates")))]
        else:  # webSearch
            content = [ToolResultPart(call_id=native, output=_json(t.get("results")))]
        status = "failed" if failed else "completed"
        return _item(result_id(native), "tool_result", "tool", status, content, parent=native)

    # -- deltas ---------------------------------------------------------------------------
    def _delta(self, native: str, text: str, raw: Any) -> list[EventDraft]:
        entry = self.open.get(native)
        if entry is not None:
            entry.text.append(text)
        data = ItemDeltaData(item_id="", native_item_id=native, delta=text)
        return [EventDraft(type="item.delta", data=data, raw=raw)]

    def _output_delta(self, native: str, text: str, raw: Any) -> list[EventDraft]:
        rid = result_id(native)
        drafts: list[EventDraft] = []
        if rid not in self.open:
            result = _item(rid, "tool_result", "tool", "in_progress", [], parent=native)
            self.open[rid] = _Open(result)
            drafts.append(EventDraft(type="item.started", data=ItemEventData(item=result)))
        return drafts + self._delta(rid, text, raw)

    # -- turns ----------------------------------------------------------------------------
    def close_open(self) -> list[EventDraft]:
        """Complete (``failed``) every item the turn left open, with what was streamed."""
        drafts: list[EventDraft] = []
        for native, entry in list(self.open.items()):
            item = entry.item
            text = "".join(entry.text)
            content = list(item.content)
            if item.kind == "tool_result":
                content = [ToolResultPart(call_id=item.parent_id or native, output=text)]
            elif item.kind == "message" and text:
                content = [TextPart(text=text)]
            closed = item.model_copy(update={"status": "failed", "content": content})
            drafts.append(EventDraft(type="item.completed", data=ItemEventData(item=closed)))
        self.open.clear()
        return drafts

    def turn_completed(self, turn: dict[str, Any], raw: Any) -> list[EventDraft]:
        """Items left open, the turn's error if it failed, and ``turn.ended``."""
        status = turn.get("status")
        drafts = self.close_open()
        turn_id = _str(turn.get("id"))
        usage = self.usage.pop(turn_id, None) if turn_id is not None else None
        self.usage.clear()
        metadata = {"codexTurnId": turn_id, "usage": usage} if usage is not None else None
        reported = turn_id in self.errored
        self.errored.clear()
        if status == "failed":
            error = _dict(turn.get("error"))
            message = str(error.get("message") or "the codex turn failed")
            if not reported:
                data = ErrorData(message=message, code=_error_code(error), details=error)
                drafts.append(EventDraft(type="error", data=data))
            reason = "error"
        elif status == "interrupted":
            reason = "interrupted"
        else:
            reason = "completed"
        ended = TurnEndedData(reason=reason, metadata=metadata)
        drafts.append(EventDraft(type="turn.ended", data=ended, raw=raw))
        return drafts

    def _error(self, params: dict[str, Any], raw: Any) -> EventDraft:
        error = _dict(params.get("error"))
        message = str(error.get("message") or "codex error")
        data = ErrorData(message=message, code=_error_code(error), details=params)
        return EventDraft(type="error", data=data, raw=raw)


def _error_code(error: dict[str, Any]) -> str:
    info = error.get("codexErrorInfo")
    if isinstance(info, str):
        return info
    if isinstance(info, dict) and info:
        return str(next(iter(info)))
    return "codex"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_part(value: Any) -> JsonPart:
    return JsonPart.model_validate({"json": value})


def _summary(changes: list[Any], state: str) -> str:
    paths = [str(c.get("path")) for c in changes if isinstance(c, dict)]
    return f"{state}: {', '.join(paths)}" if paths else state


def _tool_call(t: dict[str, Any]) -> tuple[str, Any]:
    """The tool name and arguments of a tool ThreadItem."""
    kind = t["type"]
    if kind == "commandExecution":
        return "commandExecution", {"command": t.get("command"), "cwd": t.get("cwd")}
    if kind == "fileChange":
        changes = [
            {"path": c.get("path"), "kind": c.get("kind")}
            for c in t.get("changes") or []
            if isinstance(c, dict)
        ]
        return "fileChange", {"changes": changes}
    if kind == "mcpToolCall":
        return f"{t.get('server')}.{t.get('tool')}", t.get("arguments")
    if kind == "dynamicToolCall":
        namespace = t.get("namespace")
        tool = str(t.get("tool"))
        return (f"{namespace}.{tool}" if namespace else tool), t.get("arguments")
    if kind == "collabAgentToolCall":
        args = {k: t.get(k) for k in ("prompt", "receiverThreadIds", "model")}
        return f"collab.{t.get('tool')}", args
    return "web_search", {"query": t.get("query"), "action": t.get("action")}
