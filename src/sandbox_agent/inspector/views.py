"""What the inspector shows, built from the store and the replay engine: list rows, the
transcript, the state at a sequence, a diff, raw events. No HTTP here (``app.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import (
    Anomaly,
    PermissionState,
    QuestionState,
    SessionState,
    StateDiff,
    Transcript,
    build_transcript,
    diff,
    state_at,
)
from sandbox_agent.store import EventStore, SessionRecord, SessionStatus
from sandbox_agent.store.event_store import encode_session_cursor

#: Sessions on one page of the list.
PAGE_SIZE = 50
#: The most sessions one search request reads before it answers with what it found (and a
#: cursor to go on): a search never walks the whole store at once.
SEARCH_SCAN = 2000
#: Transcript entries shown at a sequence: the newest ones (the slider reaches the older). The
#: bound keeps a move of the slider on a long session small (a page of about 100 KB).
TRANSCRIPT_ENTRIES = 100
#: Items listed in the state panel: the newest ones.
STATE_ITEMS = 30
#: Raw events on one page, and the most read to fill a page when filtering by type.
EVENTS_PAGE = 100
EVENTS_SCAN = 5000
#: Characters of one event's JSON shown in the raw events table (the rest is cut, and said).
EVENT_CHARS = 4000


@dataclass
class ListPage:
    rows: list[SessionRecord]
    next_cursor: str | None
    scanned: int = 0


def matches(record: SessionRecord, query: str) -> bool:
    """Whether ``query`` (case-insensitive) is in the session's id, title, agent or model."""
    needle = query.casefold()
    return any(
        needle in value.casefold()
        for value in (record.id, record.title, record.agent, record.model)
        if value
    )


async def list_page(
    store: EventStore,
    cursor: str | None,
    status: SessionStatus | None,
    agent: str | None,
    query: str,
    limit: int = PAGE_SIZE,
) -> ListPage:
    """One page of sessions, newest first, over the store's keyset pages; with ``query``, the
    matches among at most ``SEARCH_SCAN`` sessions from ``cursor``."""
    found: list[SessionRecord] = []
    scanned = 0
    next_cursor = cursor
    while True:
        page = await store.list_sessions(
            limit=limit if not query else 200, cursor=next_cursor, status=status, agent=agent
        )
        scanned += len(page.items)
        for index, record in enumerate(page.items):
            if not query or matches(record, query):
                found.append(record)
                if len(found) == limit and query and index + 1 < len(page.items):
                    # Stop here: the cursor of the last row shown continues the search.
                    return ListPage(found, encode_session_cursor(record), scanned)
        next_cursor = page.next_cursor
        if not query or next_cursor is None or len(found) >= limit or scanned >= SEARCH_SCAN:
            break
    return ListPage(found, next_cursor, scanned)


async def anomaly_count(store: EventStore, record: SessionRecord) -> int:
    """How many anomalies the reducer finds in the session (from its newest snapshot on)."""
    if not record.last_sequence:
        return 0
    return len((await state_at(store, record.id)).anomalies)


@dataclass
class AtView:
    """The session at one sequence: its state and the newest transcript entries."""

    state: SessionState
    transcript: Transcript
    omitted: int
    items: list[Any] = field(default_factory=list)


async def at_view(store: EventStore, session_id: str, sequence: int | None) -> AtView:
    state = await state_at(store, session_id, sequence)
    transcript, omitted = newest_entries(state, TRANSCRIPT_ENTRIES)
    return AtView(state, transcript, omitted, state.items[-STATE_ITEMS:])


def _entry_sequences(state: SessionState) -> list[int]:
    """The sequence of every entry ``build_transcript`` would make, cheaply (no model built)."""
    found = [item.first_sequence for item in state.items]
    for turn in state.turns:
        found += [s for s in (turn.started_sequence, turn.ended_sequence) if s is not None]
    requests: list[PermissionState | QuestionState] = [
        *state.pending_permissions.values(),
        *state.resolved_permissions.values(),
        *state.pending_questions.values(),
        *state.resolved_questions.values(),
    ]
    for request in requests:
        found.append(request.requested_sequence or request.resolved_sequence or 0)
    found += [e.sequence for e in state.errors] + [r.sequence for r in state.resumes]
    if state.ended is not None:
        found.append(state.ended.sequence)
    return found


def newest_entries(state: SessionState, limit: int) -> tuple[Transcript, int]:
    """The transcript's newest ``limit`` entries (about: ties at the cut are kept), and how many
    older ones were left out. Built from the part of the state they come from: a long session's
    full transcript costs a model per item (0.4 s for 7,000 items), the window a few ms."""
    sequences = _entry_sequences(state)
    if len(sequences) <= limit:
        return build_transcript(state, private_reasoning=True), 0
    cut = sorted(sequences)[-limit]
    turns = [t for t in state.turns if max(t.started_sequence or 0, t.ended_sequence or 0) >= cut]
    first_turn = len(state.turns) - len(turns)

    def recent(requests: dict[str, Any]) -> dict[str, Any]:
        return {
            key: r
            for key, r in requests.items()
            if (r.requested_sequence or r.resolved_sequence or 0) >= cut
        }

    window = state.model_copy(
        update={
            "items": [item for item in state.items if item.first_sequence >= cut],
            "turns": turns,
            "pending_permissions": recent(state.pending_permissions),
            "resolved_permissions": recent(state.resolved_permissions),
            "pending_questions": recent(state.pending_questions),
            "resolved_questions": recent(state.resolved_questions),
            "errors": [e for e in state.errors if e.sequence >= cut],
            "resumes": [r for r in state.resumes if r.sequence >= cut],
        }
    )
    transcript = build_transcript(window, private_reasoning=True)
    transcript.entries = [e for e in transcript.entries if e.sequence >= cut]
    if first_turn:
        # Numbered as in the whole session (a turn's two entries share one TranscriptTurn).
        turns_seen = {id(e.turn): e.turn for e in transcript.entries if e.turn is not None}
        for info in turns_seen.values():
            info.number += first_turn
    return transcript, sum(1 for s in sequences if s < cut)


async def diff_view(store: EventStore, session_id: str, a: int, b: int) -> StateDiff:
    return diff(await state_at(store, session_id, a), await state_at(store, session_id, b))


@dataclass
class EventRow:
    sequence: int
    time: datetime
    type: str
    source: str
    synthetic: bool
    body: str
    cut: int


@dataclass
class EventsPage:
    rows: list[EventRow]
    #: Where the next page starts (``after``): the last event read.
    next_after: int
    #: Whether the page reached the end of the stream (as stored when it was read).
    end: bool = False


def event_row(event: UniversalEvent) -> EventRow:
    body = json.dumps(event.data, ensure_ascii=False, default=str)
    cut = max(0, len(body) - EVENT_CHARS)
    return EventRow(
        event.sequence,
        event.time,
        event.type,
        event.source,
        event.synthetic,
        body[:EVENT_CHARS],
        cut,
    )


async def events_page(
    store: EventStore, session_id: str, after: int, types: set[str], limit: int = EVENTS_PAGE
) -> EventsPage:
    """Up to ``limit`` events after ``after`` (of ``types`` when given: reading at most
    ``EVENTS_SCAN`` events to find them)."""
    rows: list[EventRow] = []
    last = after
    read = 0
    while len(rows) < limit and read < EVENTS_SCAN:
        page = await store.read(session_id, after=last, limit=limit if not types else 1000)
        if not page:
            return EventsPage(rows, last, end=True)
        read += len(page)
        for event in page:
            last = event.sequence
            if not types or event.type in types:
                rows.append(event_row(event))
                if len(rows) == limit:
                    break
    return EventsPage(rows, last)


def anomaly_sequences(anomalies: Sequence[Anomaly]) -> list[int]:
    return sorted({a.sequence for a in anomalies})
