"""The newest committed events of each subscribed session, kept in memory for its subscribers.

A subscriber that is caught up wants exactly what the last append stored, and every subscriber
of the session wants it: without the tail each of them reads it back from the database (one
query, and for SQLite one thread hop, per subscriber per commit). With it, an append in this
process hands its stored events to ``StreamTails.add`` and the subscribers take them from here.

Correctness never depends on what the tail holds: it is always a contiguous run of committed
events of one session, so any event it gives is the stored event at that sequence. Whatever it
cannot answer (a subscriber further behind, events another process appended, a session that
is not subscribed) is read from the database as before.

Limits: only sessions with a subscriber in this process have a tail, of at most
``TAIL_EVENTS`` events each; a subscriber further behind reads the database.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox_agent.events import UniversalEvent

#: Events kept per subscribed session (a subscriber further behind reads the database).
TAIL_EVENTS = 256


class StreamTails:
    """Per session: how many subscribers it has here, and its newest committed events."""

    def __init__(self, per_session: int = TAIL_EVENTS) -> None:
        self._per_session = per_session
        self._subscribers: dict[str, int] = {}
        self._tails: dict[str, list[UniversalEvent]] = {}

    def subscribe(self, session_id: str) -> None:
        self._subscribers[session_id] = self._subscribers.get(session_id, 0) + 1

    def unsubscribe(self, session_id: str) -> None:
        left = self._subscribers.get(session_id, 0) - 1
        if left > 0:
            self._subscribers[session_id] = left
        else:
            self._subscribers.pop(session_id, None)
            self._tails.pop(session_id, None)

    def add(self, session_id: str, events: Sequence[UniversalEvent]) -> None:
        """Record events just committed (one batch, in sequence order)."""
        if not events or session_id not in self._subscribers:
            return
        tail = self._tails.get(session_id)
        if tail and tail[-1].sequence + 1 == events[0].sequence:
            tail.extend(events)
            if len(tail) > 2 * self._per_session:  # trim in steps, not on every append
                del tail[: -self._per_session]
        else:
            # The first batch, or a gap (another writer committed in between): start again.
            self._tails[session_id] = list(events[-self._per_session :])

    def drop(self, session_id: str) -> None:
        """Forget the session's events (it was deleted)."""
        self._tails.pop(session_id, None)

    def after(self, session_id: str, after: int, limit: int) -> list[UniversalEvent]:
        """Up to ``limit`` events from ``after + 1`` on, or [] when the tail does not hold
        ``after + 1`` (then the database must answer)."""
        tail = self._tails.get(session_id)
        if not tail:
            return []
        start = after + 1 - tail[0].sequence
        if start < 0 or start >= len(tail):
            return []
        return tail[start : start + limit]
