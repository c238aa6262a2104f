"""The newest committed events of each subscribed session, kept in memory for its subscribers.

A subscriber that is caught up wants exactly what the last append stored, and every subscriber
of the session wants it: without the tail each of them reads it back from the database (one
query, and for SQLite one thread hop, per subscriber per commit). With it, an append in this
process hands its stored events to ``StreamTails.add`` and the subscribers take them from here.

Correctness never depends on what the tail holds: it is always a contiguous run of committed
events of one session, so any event it gives is the stored event at that sequence. Whatever it
cannot answer (a subscriber further behind, events another process appended, a session that
is not subscribed) is read from the database as before.

Limits: only sessions with a subscriber in this process have a tail, one per session however
many subscribers it has, of at most ``TAIL_EVENTS`` events and ``TAIL_BYTES`` bytes of stored
JSON each (twice that between trims; the newest event is kept whatever its size); a subscriber
further behind reads the database.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox_agent.events import UniversalEvent

#: Events kept per subscribed session (a subscriber further behind reads the database).
TAIL_EVENTS = 256
#: Bytes of stored JSON (``data`` and ``raw``) kept per subscribed session: large events would
#: otherwise make 256 of them cost hundreds of megabytes.
TAIL_BYTES = 1 << 20


#: What an event costs besides its ``data`` and ``raw`` (ids, time, type, sequence), in bytes.
ENVELOPE_BYTES = 160


def stored_bytes(data: str | bytes, raw: str | bytes | None) -> int:
    """The size measure of an event for the byte bounds: its stored JSON and its envelope."""
    return ENVELOPE_BYTES + len(data) + (0 if raw is None else len(raw))


def fitting(sizes: Sequence[int], max_bytes: int) -> int:
    """How many of the first ``sizes`` fit in ``max_bytes``: at least one, so that a single
    event larger than the bound still goes through."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > max_bytes:
            return max(count, 1)
    return len(sizes)


class StreamTails:
    """Per session: how many subscribers it has here, and its newest committed events with
    the size of each."""

    def __init__(self, per_session: int = TAIL_EVENTS, max_bytes: int = TAIL_BYTES) -> None:
        self._per_session = per_session
        self._max_bytes = max_bytes
        self._subscribers: dict[str, int] = {}
        self._tails: dict[str, list[UniversalEvent]] = {}
        self._sizes: dict[str, list[int]] = {}
        self._bytes: dict[str, int] = {}

    def subscribe(self, session_id: str) -> None:
        self._subscribers[session_id] = self._subscribers.get(session_id, 0) + 1

    def unsubscribe(self, session_id: str) -> None:
        left = self._subscribers.get(session_id, 0) - 1
        if left > 0:
            self._subscribers[session_id] = left
        else:
            self._subscribers.pop(session_id, None)
            self.drop(session_id)

    def watched(self, session_id: str) -> bool:
        """Whether ``add`` keeps the session's events (it has a subscriber in this process)."""
        return session_id in self._subscribers

    def add(
        self, session_id: str, events: Sequence[UniversalEvent], sizes: Sequence[int] | None = None
    ) -> None:
        """Record events just committed (one batch, in sequence order) with the bytes of each
        one's stored JSON (0 each when not given)."""
        if not events or session_id not in self._subscribers:
            return
        sizes = list(sizes) if sizes is not None else [0] * len(events)
        tail = self._tails.get(session_id)
        if tail and tail[-1].sequence + 1 == events[0].sequence:
            tail.extend(events)
            self._sizes[session_id].extend(sizes)
            self._bytes[session_id] += sum(sizes)
        else:
            # The first batch, or a gap (another writer committed in between): start again.
            self._tails[session_id] = tail = list(events)
            self._sizes[session_id] = sizes
            self._bytes[session_id] = sum(sizes)
        # Trim in steps, not on every append.
        if len(tail) > 2 * self._per_session or self._bytes[session_id] > 2 * self._max_bytes:
            self._trim(session_id)

    def _trim(self, session_id: str) -> None:
        tail, sizes = self._tails[session_id], self._sizes[session_id]
        keep = fitting(sizes[::-1], self._max_bytes)  # the newest that fit, at least one
        keep = min(keep, self._per_session)
        del tail[:-keep], sizes[:-keep]
        self._bytes[session_id] = sum(sizes)

    def drop(self, session_id: str) -> None:
        """Forget the session's events (it was deleted)."""
        self._tails.pop(session_id, None)
        self._sizes.pop(session_id, None)
        self._bytes.pop(session_id, None)

    def held(self, session_id: str) -> tuple[int, int]:
        """How many events the session's tail holds, and their bytes."""
        return len(self._tails.get(session_id, ())), self._bytes.get(session_id, 0)

    def newest(self, session_id: str) -> int:
        """The sequence of the newest event held (0 when none)."""
        tail = self._tails.get(session_id)
        return tail[-1].sequence if tail else 0

    def after(
        self, session_id: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[UniversalEvent]:
        """Up to ``limit`` events from ``after + 1`` on (and at most ``max_bytes`` of stored
        JSON, but at least one event), or [] when the tail does not hold ``after + 1`` (then
        the database must answer)."""
        tail = self._tails.get(session_id)
        if not tail:
            return []
        start = after + 1 - tail[0].sequence
        if start < 0 or start >= len(tail):
            return []
        end = start + limit
        if max_bytes is not None:
            end = start + fitting(self._sizes[session_id][start:end], max_bytes)
        return tail[start:end]
