"""A session's transcript: the state laid out as entries in stream order.

This is the JSON form of a transcript; ``render.py`` turns it into Markdown or plain text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox_agent.events.envelope import EventTime
from sandbox_agent.replay.state import (
    Anomaly,
    EndedInfo,
    ErrorEntry,
    ItemState,
    PermissionState,
    QuestionState,
    ResumeInfo,
    SessionState,
    TurnState,
)

EntryKind = Literal[
    "turn_started",
    "turn_ended",
    "item",
    "permission",
    "question",
    "error",
    "session_ended",
    "session_resumed",
]


class TranscriptItem(BaseModel):
    item_id: str
    kind: str
    role: str | None = None
    status: str
    #: The parts to show (private reasoning left out unless asked for).
    parts: list[dict[str, Any]] = Field(default_factory=list)
    #: For an item still in progress that received deltas, the text they built so far.
    streamed_text: str | None = None


class TranscriptTurn(BaseModel):
    number: int
    turn_id: str | None = None
    reason: str | None = None
    duration_seconds: float | None = None
    started_sequence: int | None = None


class TranscriptEntry(BaseModel):
    """One entry; the field named after ``kind`` holds its details."""

    sequence: int
    kind: EntryKind
    time: EventTime | None = None
    item: TranscriptItem | None = None
    turn: TranscriptTurn | None = None
    permission: PermissionState | None = None
    question: QuestionState | None = None
    error: ErrorEntry | None = None
    ended: EndedInfo | None = None
    resumed: ResumeInfo | None = None


class Transcript(BaseModel):
    session_id: str | None = None
    agent: str | None = None
    agent_mode: str | None = None
    model: str | None = None
    title: str | None = None
    status: str
    event_count: int
    last_sequence: int
    first_time: EventTime | None = None
    last_time: EventTime | None = None
    unparsed_count: int = 0
    entries: list[TranscriptEntry] = Field(default_factory=list)
    anomalies: list[Anomaly] = Field(default_factory=list)


def build_transcript(state: SessionState, *, private_reasoning: bool = False) -> Transcript:
    """The transcript of ``state``: items, turns, HITL, errors and session ends by sequence."""
    entries: list[TranscriptEntry] = []
    for number, turn in enumerate(state.turns, start=1):
        entries.extend(_turn_entries(number, turn))
    entries.extend(_item_entry(item, private_reasoning) for item in state.items)
    for permission in (*state.pending_permissions.values(), *state.resolved_permissions.values()):
        at = permission.requested_sequence or permission.resolved_sequence or 0
        entries.append(TranscriptEntry(sequence=at, kind="permission", permission=permission))
    for question in (*state.pending_questions.values(), *state.resolved_questions.values()):
        at = question.requested_sequence or question.resolved_sequence or 0
        entries.append(TranscriptEntry(sequence=at, kind="question", question=question))
    entries.extend(
        TranscriptEntry(sequence=e.sequence, kind="error", time=e.time, error=e)
        for e in state.errors
    )
    entries.extend(
        TranscriptEntry(sequence=r.sequence, kind="session_resumed", time=r.time, resumed=r)
        for r in state.resumes
    )
    if state.ended is not None:
        entries.append(
            TranscriptEntry(
                sequence=state.ended.sequence,
                kind="session_ended",
                time=state.ended.time,
                ended=state.ended,
            )
        )
    entries.sort(key=lambda entry: entry.sequence)  # stable: ties keep the order above
    return Transcript(
        session_id=state.session_id,
        agent=state.agent,
        agent_mode=state.agent_mode,
        model=state.model,
        title=state.title,
        status=state.status,
        event_count=state.event_count,
        last_sequence=state.last_sequence,
        first_time=state.first_time,
        last_time=state.last_time,
        unparsed_count=state.unparsed_count,
        entries=entries,
        anomalies=state.anomalies,
    )


def _turn_entries(number: int, turn: TurnState) -> list[TranscriptEntry]:
    info = TranscriptTurn(
        number=number,
        turn_id=turn.turn_id,
        reason=turn.reason,
        duration_seconds=turn.duration_seconds,
        started_sequence=turn.started_sequence,
    )
    found = []
    if turn.started_sequence is not None:
        found.append(
            TranscriptEntry(
                sequence=turn.started_sequence,
                kind="turn_started",
                time=turn.started_time,
                turn=info,
            )
        )
    if turn.ended_sequence is not None:
        found.append(
            TranscriptEntry(
                sequence=turn.ended_sequence, kind="turn_ended", time=turn.ended_time, turn=info
            )
        )
    return found


def _item_entry(item: ItemState, private_reasoning: bool) -> TranscriptEntry:
    parts = [
        part
        for part in item.content
        if private_reasoning
        or not (part.get("type") == "reasoning" and part.get("visibility") == "private")
    ]
    streamed = None
    if not item.completed and item.delta_count:
        # Until completion the deltas are the text; the started content's text parts are stale.
        parts = [part for part in parts if part.get("type") != "text"]
        streamed = item.text
    return TranscriptEntry(
        sequence=item.first_sequence,
        kind="item",
        item=TranscriptItem(
            item_id=item.item_id,
            kind=item.kind,
            role=item.role,
            status=item.status,
            parts=parts,
            streamed_text=streamed,
        ),
    )
