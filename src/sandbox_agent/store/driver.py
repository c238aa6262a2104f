"""The storage driver contract: the few primitives a backend implements for ``EventStore``.

``EventStore`` (``store/event_store.py``) is the one public store. It owns everything that is
the same for every backend: validating and encoding drafts, idempotent retries, the session
projection of a batch, snapshot decoding and retention, subscribe and tail, fork and prune. A
driver only keeps rows and answers for them atomically. One file per driver: ``memory.py``,
``sqlite.py``, ``postgres.py``; a driver outside this package registers its URL scheme with
``register_driver`` or the ``sandbox_agent.store_drivers`` entry point (``store/registry.py``).

What a driver must do, in plain words:

- ``insert_events`` is the only write that must be clever. In one atomic step it checks that the
  session exists (else ``SessionNotFound``) and that its last sequence equals
  ``expected_sequence`` when one is given (else ``SequenceConflict`` with the actual value),
  numbers the rows ``last + 1 ..`` in order, gives each a global position larger than every
  position committed before it, stores them, and applies ``change`` to the session row. If an
  event id of the batch is already stored for this session it raises ``DuplicateEventId``. On
  any error nothing at all is written. It returns the last sequence before the batch.
- Reads return ``StoredRow`` tuples (what the database gives back, in that column order), not
  events: ``EventStore`` validates them. ``select_events`` raises ``SessionNotFound`` for an
  unknown session; the other selects answer None or [].
- Snapshots are opaque JSON text keyed by ``(session, sequence, version)``; a second insert
  with the same key replaces the first.
- Errors are ``StoreError`` subclasses (``store/errors.py``): ``StoreUnavailable`` when the
  backend cannot be reached, ``StoreError`` for anything else, never a driver library's own.
- ``EventStore`` checks what reads return: a page that skips a sequence, or ends before the
  session row's ``last_sequence``, is ``StoreCorrupt``; a driver need not check it. A driver may
  raise ``StoreCorrupt`` itself for its database's own report of corruption, and may offer that
  database's integrity check (``check_integrity``; by default "not supported").
- ``rewrite_events`` is optional (``db rekey`` and ``db upcast`` need it): new payload texts
  (and schema versions, when given) for stored events, in one transaction; the default raises
  ``StoreError``.
- Wake-ups: ``EventStore`` wakes its own subscribers after each commit. A driver whose database
  is shared with other processes either calls the ``wake`` callback given to ``attach`` with a
  session id when it learns of another process's append (Postgres ``LISTEN``), or sets
  ``poll_interval`` so that subscribers read again that often (SQLite).

``sandbox_agent.testing.contract.StoreContract`` checks every promise above through
``EventStore``; ``docs/drivers.md`` writes a driver from scratch.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sandbox_agent.store.checkpoints import CheckpointRow, CheckpointTransaction
from sandbox_agent.store.errors import NotSupported, StoreError
from sandbox_agent.store.leases import LeaseDriver
from sandbox_agent.store.ownership import OwnershipLock
from sandbox_agent.store.records import SessionRecord, SessionStatus

#: A stored event as a driver returns it, in this column order: ``(sequence, event_id, time,
#: type, source, synthetic, native_session_id, data, raw, schema_version)``. ``time`` is an
#: aware ``datetime`` or its RFC 3339 text; ``synthetic`` a bool or 0/1; ``data`` JSON text (str
#: or bytes) of an object; ``raw`` JSON text or None (no raw payload); ``schema_version`` the int
#: stored with the row (``EventRow.schema_version``). Any indexable row type will do (tuples,
#: ``sqlite3`` rows, ``asyncpg`` records).
StoredRow = Sequence[Any]

#: A row of the global log: ``(position, session_id, *StoredRow)``.
PositionedRow = Sequence[Any]


class EventRow(NamedTuple):
    """One event of a batch, encoded for storage by ``EventStore``."""

    event_id: str
    time: datetime
    type: str
    source: str
    synthetic: bool
    native_session_id: str | None
    data: str  # JSON text of an object
    raw: str | None  # JSON text; None when the event has no raw payload
    schema_version: int  # the version of ``data``'s shape (events/versions.py)


class RewrittenRow(NamedTuple):
    """New stored payloads for the event at ``sequence`` (``rewrite_events``): ``data`` JSON
    text of an object, ``raw`` JSON text or None, as in ``EventRow``."""

    sequence: int
    data: str
    raw: str | None
    schema_version: int | None = None  # the payload's new schema version; None: unchanged


@dataclass(frozen=True, slots=True)
class SessionChange:
    """What one committed batch does to its session's row: ``last_sequence`` and
    ``event_count`` grow by ``count``, ``updated_at`` is set; ``status`` and ``ended_at`` change
    together when ``status`` is not None (``ended_at`` is None for "active"); the native session
    id changes when it is not None."""

    count: int
    updated_at: datetime
    status: SessionStatus | None = None
    ended_at: datetime | None = None
    native_session_id: str | None = None

    def applied_to(self, record: SessionRecord) -> SessionRecord:
        """The record after this change (for drivers that keep records, not SQL rows)."""
        update: dict[str, Any] = {
            "last_sequence": record.last_sequence + self.count,
            "event_count": record.event_count + self.count,
            "updated_at": self.updated_at,
        }
        if self.status is not None:
            update["status"] = self.status
            update["ended_at"] = self.ended_at
        if self.native_session_id is not None:
            update["native_session_id"] = self.native_session_id
        return record.model_copy(update=update)


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """What a database's own integrity check found (``StorageDriver.check_integrity``).
    ``supported`` False: the driver has no check to run (``method`` says why); else ``ok``
    when ``problems`` is empty. ``method`` names what ran (``PRAGMA integrity_check``)."""

    supported: bool
    method: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.supported and not self.problems


class SnapshotRow(NamedTuple):
    """A stored snapshot: its state as JSON text of an object."""

    sequence: int
    version: int
    state: str
    created_at: datetime


class StorageDriver(abc.ABC):
    """The primitives behind an ``EventStore``. Every method is a coroutine but ``attach``;
    every error is a ``StoreError``. See the module's docstring for the whole contract."""

    #: Seconds between re-reads by caught-up subscribers, for appends made by other processes
    #: that the driver is not told about (None: never poll).
    poll_interval: float | None = None
    #: True for a driver that drops a session's oldest events by design (the memory driver's
    #: ``max_events_per_session``): a stream that starts after sequence 1 is then no damage.
    drops_oldest_events: bool = False

    def attach(self, wake: Callable[[str], None]) -> None:  # noqa: B027 (optional hook)
        """Called once by ``EventStore``: ``wake(session_id)`` wakes that session's
        subscribers. Drivers that hear of other processes' appends keep it and call it."""

    # -- sessions -------------------------------------------------------------------------
    @abc.abstractmethod
    async def insert_session(self, record: SessionRecord) -> None:
        """Store a new session row as given. ``SessionExists`` if the id is taken."""

    @abc.abstractmethod
    async def select_session(self, session_id: str) -> SessionRecord | None:
        """The session's row, or None."""

    @abc.abstractmethod
    async def select_sessions(
        self,
        *,
        limit: int,
        before: tuple[datetime, str] | None,
        status: SessionStatus | None,
        agent: str | None,
    ) -> list[SessionRecord]:
        """At most ``limit`` sessions ordered by ``(created_at, id)`` descending, only those
        whose key is below ``before`` when given, filtered by ``status`` and ``agent``."""

    @abc.abstractmethod
    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> bool:
        """Set these columns (``title``, ``metadata``, ``updated_at``) of the session's row;
        False when there is no such session."""

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> bool:
        """Remove the session with its events and snapshots in one step, waiting for an
        insert in flight to that session. False when there was none."""

    # -- events ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        """Append ``rows`` (never empty) atomically; return the last sequence before them.
        Raises ``SessionNotFound``, ``SequenceConflict`` or ``DuplicateEventId``, having
        written nothing."""

    @abc.abstractmethod
    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        """The rows with ``sequence > after`` in order, at most ``limit`` (all when None).
        ``SessionNotFound`` for an unknown session."""

    @abc.abstractmethod
    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        """The session's rows with these event ids, in any order (those that exist)."""

    @abc.abstractmethod
    async def select_last_sequence(self, session_id: str) -> int | None:
        """The session's last sequence (0 when empty), or None for an unknown session."""

    @abc.abstractmethod
    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        """Rows of every session with ``position > after_position``, by position, at most
        ``limit``. A reader resuming after the last position it saw must never miss a row
        that commits later: positions become visible in increasing order."""

    # -- snapshots ------------------------------------------------------------------------
    @abc.abstractmethod
    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        """Store (or replace) a snapshot. ``SessionNotFound`` for an unknown session."""

    @abc.abstractmethod
    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        """The snapshot with the highest ``(sequence, version)`` such that ``sequence <=
        at_or_before`` (any when None) and of ``version`` when given; None if there is none."""

    @abc.abstractmethod
    async def select_snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        """``(sequence, version)`` of each snapshot of the session, ascending."""

    @abc.abstractmethod
    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        """Delete the session's snapshots with these keys; how many there were."""

    # -- optional -------------------------------------------------------------------------
    async def rewrite_events(self, session_id: str, rows: Sequence[RewrittenRow]) -> None:
        """Optional (``sandbox-agent db rekey``): replace the ``data`` and ``raw`` of these
        stored events, atomically, leaving everything else of them as it is. ``SessionNotFound``
        for an unknown session; ``StoreError`` naming it for a sequence that is not stored
        (nothing written then). The default: not supported."""
        raise StoreError(
            f"rewriting stored events (db rekey) is not supported by {type(self).__name__}"
        )

    # -- lifecycle ------------------------------------------------------------------------
    async def schema_status(self) -> tuple[str | None, str] | None:
        """For a driver with a migrated schema: (the database's revision, None if never
        migrated; the newest revision this driver has). None for a schemaless one (the
        default). ``sandbox-agent db current|upgrade`` report it."""
        return None

    async def check_integrity(self) -> IntegrityReport:
        """Run the database's own integrity check (``replay --check --deep``). The default, for
        a driver that has none: not supported. Raise nothing for what the check finds: report
        it in ``problems``."""
        return IntegrityReport(
            supported=False, method=f"{type(self).__name__} has no integrity check"
        )

    def ownership_lock(self) -> OwnershipLock | None:
        """The lock a server takes to own the store (``store/ownership.py``); None (the
        default) for a store that no other process can open."""
        return None

    def session_leases(self) -> LeaseDriver | None:
        """Optional: per-session leases, for several servers on one store
        (``store/leases.py``). None (the default): one server per store."""
        return None

    # -- consumer checkpoints (optional; store/checkpoints.py) ------------------------------
    def checkpoint_transaction(
        self, name: str
    ) -> AbstractAsyncContextManager[CheckpointTransaction]:
        """Optional: a transaction holding consumer ``name``'s checkpoint row locked (made at
        0 when missing); a clean exit writes its ``position`` and commits, then runs its
        ``on_commit`` callbacks; an error rolls it all back. Default: ``NotSupported``."""
        raise self._no_consumers()

    async def select_checkpoints(self) -> list[CheckpointRow]:
        """Optional: every consumer's checkpoint with its lag, by name. Default:
        ``NotSupported``."""
        raise self._no_consumers()

    async def write_checkpoint(self, name: str, position: int | None) -> bool:
        """Optional: set consumer ``name``'s checkpoint to ``position`` (made when missing), or
        delete it when None; whether it existed before. Default: ``NotSupported``."""
        raise self._no_consumers()

    def _no_consumers(self) -> NotSupported:
        return NotSupported(
            f"{type(self).__name__} does not support consumer checkpoints "
            '(see docs/drivers.md, "Consumer checkpoints")'
        )

    async def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release connections. Called once, by ``EventStore.close``."""
