"""Errors of the event store. Every one is a ``StoreError``."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises."""


class StoreConfigError(StoreError):
    """The store URL or an option is wrong (bad URL, unknown driver, bad option value)."""


class StoreNotFound(StoreConfigError):
    """``open_store(url, create=False)``: no store at ``url`` (a SQLite file that does not
    exist)."""


class NotSupported(StoreError):
    """The store's driver lacks an optional primitive (consumer checkpoints, say)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, opened or written: its connection, the network or the
    disk failed (refused or reset connections, timeouts, SQLite's "disk I/O error" and
    "database or disk is full"). Not the data's fault, unlike corruption or a conflict: the
    same call may succeed once the database answers again. The server answers 503
    ``store_unavailable`` meanwhile."""


class SessionExists(StoreError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class SessionNotFound(StoreError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SequenceConflict(StoreError):
    """``expected_sequence`` did not match: another writer appended first. Nothing was written."""

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"session {session_id!r}: expected last sequence {expected}, but it is {actual}; "
            "another writer appended first (nothing was written)"
        )
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class IdempotencyConflict(StoreError):
    """An ``event_id`` of the batch is stored with other content, or the batch is partly
    stored. Nothing was written."""

    def __init__(self, session_id: str, event_id: str, reason: str) -> None:
        super().__init__(
            f"session {session_id!r}, event {event_id!r}: {reason} (nothing was written)"
        )
        self.session_id = session_id
        self.event_id = event_id


class InvalidCursor(StoreError, ValueError):
    def __init__(self, cursor: str) -> None:
        super().__init__(f"invalid cursor {cursor!r}: pass back a next_cursor this store returned")
        self.cursor = cursor


class DuplicateEventId(StoreError):
    """Raised by a driver's ``insert_events`` when an event id of the batch is stored already
    for the session (nothing was written); ``EventStore`` turns it into the stored events of a
    retry or an ``IdempotencyConflict``."""

    def __init__(self, session_id: str, detail: str = "") -> None:
        super().__init__(
            f"session {session_id!r}: an event id of the batch is stored already"
            + (f" ({detail})" if detail else "")
        )
        self.session_id = session_id


#: What ``InvalidText`` names.
NUL = "a NUL character (U+0000)"
SURROGATE = "a lone surrogate (U+D800..U+DFFF: not UTF-8)"


class InvalidText(StoreError, ValueError):
    """A text the store cannot keep: a field kept in a column of its own (a session's id, agent,
    modes, model, variant, title, directory, native session id; an event's id and type) holds a
    NUL character (U+0000), which Postgres' text cannot keep, so no driver does; or any text,
    JSON payloads included, holds a lone surrogate (U+D800..U+DFFF), which is not UTF-8.
    ``EventStore`` refuses it before the database is touched. Nothing was written. JSON payloads
    (``data``, ``raw``, ``metadata``, ``init``) keep NUL."""

    def __init__(self, session_id: str, field: str, what: str = NUL) -> None:
        super().__init__(
            f"session {session_id!r}: {field} holds {what}, which the store does not keep "
            "(nothing was written)"
        )
        self.session_id = session_id
        self.field = field


class StoreCorrupt(StoreError):
    """What the store holds for a session is damaged: events missing below the session's last
    sequence (a gap, a page shorter than the session's row promises), a stored row that does
    not decode, or the database itself reporting corruption. Not transient: reading again gives
    the same answer until the database is repaired or restored. ``sequence`` is the first
    sequence concerned (0 when unknown); ``kind`` is ``gap``, ``row_mismatch``, ``undecodable``
    or ``database``; ``session_id`` is None when the database's report names no session."""

    def __init__(
        self, session_id: str | None, detail: str, *, sequence: int = 0, kind: str = "gap"
    ) -> None:
        where = "stored data" if session_id is None else f"session {session_id!r}: stored stream"
        super().__init__(f"{where} damaged: {detail}")
        self.session_id = session_id
        self.detail = detail
        self.sequence = sequence
        self.kind = kind


class StoreKeyError(StoreError):
    """A sealed payload names a key id that this store's keyring lacks (or the store was opened
    without keys): nothing is wrong with the data, the key is missing. Names the session, the
    place (sequence or snapshot, and field) and the key id."""

    def __init__(self, session_id: str, where: str, key_id: str, why: str) -> None:
        super().__init__(
            f"session {session_id!r}, {where}: sealed with key id {key_id!r}, which cannot be "
            f"used: {why} (open the store with keys=env:NAME or keys=file:PATH holding it)"
        )
        self.session_id = session_id
        self.where = where
        self.key_id = key_id


class SchemaVersionError(StoreError):
    """An event stored at an old schema version cannot be read in the current shape: the
    upcaster of a step is not registered, or it failed (events/versions.py). The stored rows
    are intact; registering the missing upcaster makes them readable."""
