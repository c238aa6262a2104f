"""The ``data`` payload of each event type (``events.md``, "Event types and payloads")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox_agent.events.items import UniversalItem


class EventData(BaseModel):
    # Unknown fields are kept: a newer writer's additions must survive an older reader.
    model_config = ConfigDict(extra="allow")


class SessionStartedData(EventData):
    metadata: dict[str, Any] | None = None


class StderrOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    head: str | None = None
    tail: str | None = None
    truncated: bool = False
    total_lines: int | None = None


class SessionEndedData(EventData):
    reason: Literal["completed", "error", "terminated"] | str
    terminated_by: Literal["agent", "daemon"] | str
    message: str | None = None
    exit_code: int | None = None
    stderr: StderrOutput | None = None


class SessionResumedData(EventData):
    reason: Literal["server_restart", "sandbox_replaced", "reopened", "forked"] | str
    native_resume: bool = False
    replayed_events: int = 0


class TurnStartedData(EventData):
    phase: Literal["started"] = "started"
    turn_id: str | None = None
    metadata: dict[str, Any] | None = None


class TurnEndedData(EventData):
    phase: Literal["ended"] = "ended"
    turn_id: str | None = None
    reason: Literal["completed", "cancelled", "interrupted", "error"] | str | None = None
    metadata: dict[str, Any] | None = None


class ItemEventData(EventData):
    """Payload of ``item.started`` and ``item.completed``."""

    item: UniversalItem


class ItemDeltaData(EventData):
    item_id: str
    native_item_id: str | None = None
    delta: str


PermissionStatus = Literal["requested", "accept", "accept_for_session", "reject"]


class PermissionData(EventData):
    """Payload of ``permission.requested`` and ``permission.resolved``."""

    permission_id: str
    action: str
    status: PermissionStatus | str
    metadata: dict[str, Any] | None = None


QuestionStatus = Literal["requested", "answered", "rejected"]


class QuestionData(EventData):
    """Payload of ``question.requested`` and ``question.resolved``."""

    question_id: str
    prompt: str
    options: list[str] = Field(default_factory=list)
    status: QuestionStatus | str
    response: str | None = None


class ErrorData(EventData):
    message: str
    code: str | None = None
    details: Any = None


class AgentUnparsedData(EventData):
    error: str
    location: str
    raw_hash: str | None = None


class Attachment(BaseModel):
    """A file sent along with a prompt (v0.1 ``MessageRequest.attachments``): the one model of
    it, on the wire, in ``prompt.queued`` and for the adapters (its names are one word each, so
    the same in camelCase)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    path: str
    mime: str | None = None
    filename: str | None = None


class PromptQueuedData(EventData):
    """A prompt that arrived while a turn ran: it starts, in order, when the turn ends."""

    queue_id: str
    message: str
    attachments: list[Attachment] = Field(default_factory=list)


class PromptDequeuedData(EventData):
    """A queued prompt leaves the queue: ``started`` (its ``turn.started`` follows at once),
    ``cancelled`` (by the client, or by a cancel of the running turn) or ``session_ended``
    (the session was terminated while it waited)."""

    queue_id: str
    reason: Literal["started", "cancelled", "session_ended"] | str


class AcpMessageData(EventData):
    """One JSON-RPC envelope of the ACP endpoint (``docs/acp.md``), as it went: ``client``
    (POSTed) or ``agent`` (what the agent wrote)."""

    direction: Literal["client", "agent"] | str
    message: dict[str, Any]
    #: Said to give a new agent process the state of the one before (the client never sent
    #: it, and is not sent its answers).
    restore: bool = False


FsOperation = Literal["write", "mkdir", "move", "delete", "upload"]


class FsChangedData(EventData):
    """A change a client made through the filesystem API with the session's id: what and
    where, never the content. ``path`` is absolute (the destination of a move, the directory
    of an upload); ``size`` and ``sha256`` (hex) are those of the bytes written (the archive
    for an upload); ``from_path`` is a move's source; ``entries`` counts an upload's entries."""

    operation: FsOperation | str
    path: str
    size: int | None = None
    sha256: str | None = None
    from_path: str | None = None
    entries: int | None = None


class UnknownEventData(EventData):
    """The payload of an event type this version does not know; kept as it is."""


EVENT_DATA_MODELS: dict[str, type[EventData]] = {
    "session.started": SessionStartedData,
    "session.ended": SessionEndedData,
    "session.resumed": SessionResumedData,
    "turn.started": TurnStartedData,
    "turn.ended": TurnEndedData,
    "item.started": ItemEventData,
    "item.completed": ItemEventData,
    "item.delta": ItemDeltaData,
    "permission.requested": PermissionData,
    "permission.resolved": PermissionData,
    "question.requested": QuestionData,
    "question.resolved": QuestionData,
    "error": ErrorData,
    "agent.unparsed": AgentUnparsedData,
    "prompt.queued": PromptQueuedData,
    "prompt.dequeued": PromptDequeuedData,
    "acp.message": AcpMessageData,
    "fs.changed": FsChangedData,
}

EventType = Literal[
    "session.started",
    "session.ended",
    "session.resumed",
    "turn.started",
    "turn.ended",
    "item.started",
    "item.completed",
    "item.delta",
    "permission.requested",
    "permission.resolved",
    "question.requested",
    "question.resolved",
    "error",
    "agent.unparsed",
    "prompt.queued",
    "prompt.dequeued",
    "acp.message",
    "fs.changed",
]

KNOWN_EVENT_TYPES: frozenset[str] = frozenset(EVENT_DATA_MODELS)


def data_model_for(event_type: str) -> type[EventData]:
    """The payload model of ``event_type``; ``UnknownEventData`` for a type this version lacks."""
    return EVENT_DATA_MODELS.get(event_type, UnknownEventData)


def parse_data(event_type: str, data: dict[str, Any]) -> EventData:
    """Validate ``data`` as the payload of ``event_type`` (raises ``pydantic.ValidationError``)."""
    return data_model_for(event_type).model_validate(data)


def normalise_data(event_type: str, data: dict[str, Any] | EventData) -> dict[str, Any]:
    """Validate a payload and return its canonical JSON form (declared fields always present)."""
    model = data if isinstance(data, EventData) else parse_data(event_type, data)
    if not isinstance(data, EventData) and event_type not in EVENT_DATA_MODELS:
        return dict(data)
    return model.model_dump(mode="json", by_alias=True)
