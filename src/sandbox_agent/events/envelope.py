"""The event envelope (``UniversalEvent``) and what writers hand to the store (``EventDraft``)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from sandbox_agent.events.payloads import EventData, EventType, normalise_data, parse_data

EventSource = Literal["agent", "daemon", "client"]

# What format_time writes, for strptime. Write with format_time: strftime("%Y") leaves years
# below 1000 unpadded.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds, always the same width (so strings sort as times)."""
    text = value.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):  # already UTC, as stored times are: one call, not three
        return text[:-6] + "Z"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as 2 characters


class _MonotonicUlid:
    """ULIDs that increase strictly within this process (the ULID spec's monotonic mode).

    Made by hand because the append path makes one per event: this is about 4x cheaper than
    ``str(ULID())``, and ids made in the same millisecond still sort in creation order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._ms = -1
        self._random = 0
        self._prefix = ""

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._ms:
                self._ms = ms
                self._random = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
                self._prefix = "".join(
                    _CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5)
                )
            else:
                self._random += 1
            r = self._random
            prefix = self._prefix
        pairs = _PAIRS
        return (
            f"{prefix}{pairs[(r >> 70) & 1023]}{pairs[(r >> 60) & 1023]}{pairs[(r >> 50) & 1023]}"
            f"{pairs[(r >> 40) & 1023]}{pairs[(r >> 30) & 1023]}{pairs[(r >> 20) & 1023]}"
            f"{pairs[(r >> 10) & 1023]}{pairs[r & 1023]}"
        )


_next_ulid = _MonotonicUlid()
# A forked child must not continue the parent's sequence (both would make the same ids).
os.register_at_fork(after_in_child=_next_ulid._reset)


def new_event_id() -> str:
    """A fresh, time-ordered event id: ``evt_`` + ULID (monotonic within a process)."""
    return f"evt_{_next_ulid()}"


# AwareDatetime rejects naive times; the value keeps its offset, and equality compares instants.
EventTime = Annotated[
    AwareDatetime, PlainSerializer(format_time, return_type=str, when_used="json")
]


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

    def to_event(
        self, *, session_id: str, sequence: int, event_id: str, time: datetime
    ) -> UniversalEvent:
        """The stored form of this draft (no validation: the draft is already valid)."""
        return trusted_event(
            {
                "event_id": event_id,
                "sequence": sequence,
                "time": time,
                "session_id": session_id,
                "native_session_id": self.native_session_id,
                "source": self.source,
                "synthetic": self.synthetic,
                "type": self.type,
                "data": self.data,
                "raw": self.raw,
            }
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


def trusted_draft(
    event_type: str,
    data: dict[str, Any],
    *,
    source: EventSource = "agent",
    synthetic: bool = False,
) -> EventDraft:
    """A draft whose ``data`` is already canonical (what ``normalise_data`` returns), built
    without validating it again. Only for payloads this package builds on a hot path (the
    prompt's drafts, the mock's scripts); a test pins each against its validated form."""
    # What model_construct does, minus its per-call bookkeeping (as trusted_event below).
    draft = EventDraft.__new__(EventDraft)
    fields = {
        "type": event_type,
        "data": data,
        "source": source,
        "synthetic": synthetic,
        "event_id": None,
        "time": None,
        "native_session_id": None,
        "raw": None,
    }
    object.__setattr__(draft, "__dict__", fields)
    object.__setattr__(draft, "__pydantic_fields_set__", set(_DRAFT_FIELDS))
    object.__setattr__(draft, "__pydantic_extra__", None)
    object.__setattr__(draft, "__pydantic_private__", None)
    return draft


_DRAFT_FIELDS = frozenset(EventDraft.model_fields)


_EVENT_FIELDS = frozenset(UniversalEvent.model_fields)


def trusted_event(fields: dict[str, Any]) -> UniversalEvent:
    """A ``UniversalEvent`` of values that are already valid (a draft's, or a stored row's once
    validated as a whole page): what ``model_construct`` does, minus its per-call bookkeeping
    (about 4x cheaper). ``fields`` must hold every field of ``UniversalEvent``."""
    event = _new_event(UniversalEvent)
    _set(event, "__dict__", fields)
    _set(event, "__pydantic_fields_set__", _ALL_EVENT_FIELDS)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


_new_event = UniversalEvent.__new__
_set = object.__setattr__
# One set shared by every trusted event (every field is set in each): copying it per event cost
# a third of building one. Safe because the model is frozen and pydantic copies the set before
# it changes it (model_copy, __copy__); it must be a set, not a frozenset, for that copy.
_ALL_EVENT_FIELDS = set(_EVENT_FIELDS)
