"""The session state the reducer builds (``replay.md``, "Session state").

Every model here is plain data that serialises to JSON and validates back to an equal value: a
snapshot is ``state.model_dump(mode="json")``. Content parts are kept in their JSON form (dicts)
so that parts of a type this version does not know survive unchanged; ``ItemState.parts()``
gives them as typed ``ContentPart`` models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, computed_field

from sandbox_agent.events import ContentPart
from sandbox_agent.events.envelope import EventTime

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Bumped whenever the reducer's rules or the state's shape change; snapshots of another version
#: are ignored (and rebuilt).
REDUCER_VERSION = 3

#: How many ``agent.unparsed`` entries the state keeps (the count covers all of them).
UNPARSED_KEPT = 20

SessionStatus = Literal["idle", "running", "awaiting_input", "ended"]

_PARTS = TypeAdapter(list[ContentPart])


def text_of(content: Iterable[dict[str, Any]]) -> str:
    """The text of an item's content: its ``text`` parts, joined."""
    return "".join(
        part["text"]
        for part in content
        if part.get("type") == "text" and isinstance(part.get("text"), str)
    )


class Anomaly(BaseModel):
    """A broken stream invariant (``events.md``, "Invariants"), at the event where it showed."""

    sequence: int
    kind: str
    message: str


class ItemState(BaseModel):
    """An item as the events built it so far."""

    item_id: str
    native_item_id: str | None = None
    parent_id: str | None = None
    kind: str = "message"
    role: str | None = None
    status: str = "in_progress"
    #: The parts in their JSON form: from ``item.started``, replaced on ``item.completed``.
    content: list[dict[str, Any]] = Field(default_factory=list)
    #: The text the deltas built while the item is in progress ("" once it completes).
    streamed: str = ""
    first_sequence: int
    last_sequence: int
    started_sequence: int | None = None
    completed_sequence: int | None = None
    delta_count: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """What the deltas built so far; once completed, the text of the final content (which
        is authoritative). Derived, so snapshots do not store it."""
        return text_of(self.content) if self.completed_sequence is not None else self.streamed

    @property
    def completed(self) -> bool:
        return self.completed_sequence is not None

    def parts(self) -> list[ContentPart]:
        """The content as typed parts (unknown part types as ``UnknownPart``)."""
        return _PARTS.validate_python(self.content)


class TurnState(BaseModel):
    turn_id: str | None = None
    #: None when the stream has a ``turn.ended`` without its ``turn.started``.
    started_sequence: int | None = None
    started_time: EventTime | None = None
    ended_sequence: int | None = None
    ended_time: EventTime | None = None
    reason: str | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_time is None or self.ended_time is None:
            return None
        return (self.ended_time - self.started_time).total_seconds()


class PermissionState(BaseModel):
    permission_id: str
    action: str
    #: ``requested`` while pending, then the answer (accept, accept_for_session, reject).
    status: str = "requested"
    metadata: dict[str, Any] | None = None
    requested_sequence: int | None = None
    resolved_sequence: int | None = None
    resolved_metadata: dict[str, Any] | None = None
    #: Answered by the daemon, not the client (a synthetic ``permission.resolved``: an
    #: ``always`` rule matched, or the turn's end rejected it); such an answer adds no rule.
    automatic: bool = False


class QuestionState(BaseModel):
    question_id: str
    prompt: str
    options: list[str] = Field(default_factory=list)
    #: ``requested`` while pending, then ``answered`` or ``rejected``.
    status: str = "requested"
    response: str | None = None
    requested_sequence: int | None = None
    resolved_sequence: int | None = None


class QueuedPrompt(BaseModel):
    """A prompt waiting for the running turn to end (``prompt.queued``)."""

    queue_id: str
    message: str
    #: The attachments in their JSON form (``{path, mime?, filename?}``).
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    queued_sequence: int


class ErrorEntry(BaseModel):
    sequence: int
    time: EventTime | None = None
    message: str
    code: str | None = None
    details: Any = None


class UnparsedEntry(BaseModel):
    sequence: int
    error: str
    location: str
    raw_hash: str | None = None


class EndedInfo(BaseModel):
    sequence: int
    time: EventTime | None = None
    reason: str
    terminated_by: str
    message: str | None = None
    exit_code: int | None = None
    stderr: dict[str, Any] | None = None


class ResumeInfo(BaseModel):
    sequence: int
    time: EventTime | None = None
    reason: str
    native_resume: bool = False
    replayed_events: int = 0


class SessionState(BaseModel):
    """The fold of a session's events. Build it with ``replay(events)`` or a ``Replayer``."""

    version: int = REDUCER_VERSION
    session_id: str | None = None
    native_session_id: str | None = None
    agent: str | None = None
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    directory: str | None = None
    title: str | None = None
    #: The ``session.started`` metadata as it came.
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: SessionStatus = "idle"
    started_sequence: int | None = None
    ended: EndedInfo | None = None
    resumes: list[ResumeInfo] = Field(default_factory=list)
    last_sequence: int = 0
    event_count: int = 0
    first_time: EventTime | None = None
    last_time: EventTime | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    items: list[ItemState] = Field(default_factory=list)
    turns: list[TurnState] = Field(default_factory=list)
    pending_permissions: dict[str, PermissionState] = Field(default_factory=dict)
    resolved_permissions: dict[str, PermissionState] = Field(default_factory=dict)
    pending_questions: dict[str, QuestionState] = Field(default_factory=dict)
    resolved_questions: dict[str, QuestionState] = Field(default_factory=dict)
    #: Prompts waiting for the running turn to end, in the order they start.
    queued: list[QueuedPrompt] = Field(default_factory=list)
    #: How many prompts were ever queued (queue ids are ``q_<n>``, n counting from 1).
    queued_count: int = 0
    errors: list[ErrorEntry] = Field(default_factory=list)
    unparsed_count: int = 0
    #: The newest ``UNPARSED_KEPT`` unparsed entries.
    unparsed: list[UnparsedEntry] = Field(default_factory=list)
    anomalies: list[Anomaly] = Field(default_factory=list)

    @property
    def open_turn(self) -> TurnState | None:
        """The running turn: only the newest turn can be open."""
        if self.turns and self.turns[-1].ended_sequence is None:
            return self.turns[-1]
        return None

    def item(self, item_id: str) -> ItemState | None:
        return next((item for item in self.items if item.item_id == item_id), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON form that snapshots store (without the items' derived ``text``)."""
        return self.model_dump(mode="json", exclude={"items": {"__all__": {"text"}}})

    def to_json_text(self) -> str:
        """``to_json`` as JSON text, made in one pass (what ``save_state`` stores)."""
        return self.model_dump_json(exclude={"items": {"__all__": {"text"}}})
