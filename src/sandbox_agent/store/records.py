"""Plain records the store returns: sessions, pages, snapshots, positioned events."""

from __future__ import annotations

from typing import Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sandbox_agent.events import UniversalEvent
from sandbox_agent.events.envelope import EventTime, utc_now

SessionStatus = Literal["active", "ended"]

T = TypeVar("T")

#: The largest sequence a store can number (a signed 64-bit column): no read goes past it.
MAX_SEQUENCE = 2**63 - 1


class SessionRecord(BaseModel):
    """A session's row: what it was created with, plus a projection of its stream.

    ``last_sequence``, ``event_count``, ``status``, ``ended_at``, ``updated_at`` and
    ``native_session_id`` are maintained by the store in the same transaction as each append;
    values passed in by a caller of ``create_session`` for them are ignored.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    title: str | None = None
    directory: str | None = None
    native_session_id: str | None = None
    status: SessionStatus = "active"
    created_at: EventTime = Field(default_factory=utc_now)
    updated_at: EventTime = Field(default_factory=utc_now)
    ended_at: EventTime | None = None
    last_sequence: int = 0
    event_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    init: dict[str, Any] = Field(default_factory=dict)


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated listing; pass ``next_cursor`` back to get the next."""

    items: list[T]
    next_cursor: str | None = None


class Snapshot(BaseModel):
    """A reducer state saved at ``sequence`` by reducer ``version``."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    sequence: int
    version: int
    state: dict[str, Any]
    created_at: EventTime = Field(default_factory=utc_now)


class PositionedEvent(NamedTuple):
    """An event with its global ``position`` in the whole store (``read_all``)."""

    position: int
    event: UniversalEvent


class PruneResult(BaseModel):
    """What ``prune`` removed."""

    sessions: list[str]
    events: int
