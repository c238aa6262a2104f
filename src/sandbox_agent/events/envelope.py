"""The event envelope (``UniversalEvent``) and what writers hand to the store (``EventDraft``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from ulid import ULID

from sandbox_agent.events.payloads import EventData, EventType, normalise_data, parse_data

EventSource = Literal["agent", "daemon", "client"]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds, always the same width (so strings sort as times)."""
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    """A fresh, time-ordered event id: ``evt_`` + ULID."""
    return f"evt_{ULID()}"


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must carry a timezone (RFC 3339)")
    return value.astimezone(UTC)


EventTime = Annotated[datetime, PlainSerializer(format_time, return_type=str, when_used="json")]


class UniversalEvent(BaseModel):
    """One stored event of a session's stream (``events.md``, "Envelope")."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    sequence: int = Field(ge=1)
    time: EventTime
    session_id: str
    native_session_id: str | None = None
    source: EventSource
    synthetic: bool = False
    type: EventType | str
    data: dict[str, Any]
    raw: Any = None

    _check_time = field_validator("time")(classmethod(lambda cls, v: _as_utc(v)))

    def typed_data(self) -> EventData:
        """The payload as its pydantic model (``UnknownEventData`` for an unknown type)."""
        return parse_data(self.type, self.data)

    def without_raw(self) -> UniversalEvent:
        return self if self.raw is None else self.model_copy(update={"raw": None})


class EventDraft(BaseModel):
    """An event before the store numbers it. ``event_id`` and ``time`` are filled in at append."""

    model_config = ConfigDict(frozen=True)

    type: EventType | str
    data: dict[str, Any] = Field(default_factory=dict)
    source: EventSource = "agent"
    synthetic: bool = False
    event_id: str | None = None
    time: EventTime | None = None
    native_session_id: str | None = None
    raw: Any = None

    @model_validator(mode="before")
    @classmethod
    def _normalise_payload(cls, values: Any) -> Any:
        # Known types are validated and put in canonical form once, here, so that equal
        # drafts always store equal payloads (idempotent retries compare payloads).
        if isinstance(values, dict) and "type" in values:
            data = values.get("data")
            if data is None:
                data = {}
            if isinstance(data, EventData | dict):
                values = {**values, "data": normalise_data(values["type"], data)}
        return values

    _check_time = field_validator("time")(
        classmethod(lambda cls, v: None if v is None else _as_utc(v))
    )

    def to_event(
        self, *, session_id: str, sequence: int, event_id: str, time: datetime
    ) -> UniversalEvent:
        """The stored form of this draft (no validation: the draft is already valid)."""
        return UniversalEvent.model_construct(
            event_id=event_id,
            sequence=sequence,
            time=time,
            session_id=session_id,
            native_session_id=self.native_session_id,
            source=self.source,
            synthetic=self.synthetic,
            type=self.type,
            data=self.data,
            raw=self.raw,
        )

    @classmethod
    def from_event(cls, event: UniversalEvent) -> EventDraft:
        """A draft that re-appends ``event`` with the same id and time (copies, mirrors)."""
        return cls.model_construct(
            type=event.type,
            data=event.data,
            source=event.source,
            synthetic=event.synthetic,
            event_id=event.event_id,
            time=event.time,
            native_session_id=event.native_session_id,
            raw=event.raw,
        )
