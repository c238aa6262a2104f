"""The append-only event store: ``open_store(url)`` and its drivers (memory, SQLite, Postgres)."""

from sandbox_agent.store.base import EventStore
from sandbox_agent.store.errors import (
    IdempotencyConflict,
    InvalidCursor,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.paths import data_dir, default_store_url
from sandbox_agent.store.records import (
    Page,
    PositionedEvent,
    PruneResult,
    SessionRecord,
    SessionStatus,
    Snapshot,
)
from sandbox_agent.store.url import open_store

__all__ = [
    "EventStore",
    "IdempotencyConflict",
    "InvalidCursor",
    "Page",
    "PositionedEvent",
    "PruneResult",
    "SequenceConflict",
    "SessionExists",
    "SessionNotFound",
    "SessionRecord",
    "SessionStatus",
    "Snapshot",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "data_dir",
    "default_store_url",
    "open_store",
]
