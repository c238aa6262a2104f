"""The append-only event store: ``open_store(url)``, the ``EventStore`` every part uses, and the
``StorageDriver`` contract its drivers implement (memory, SQLite, Postgres built in; others by
``register_driver`` or the ``sandbox_agent.store_drivers`` entry point)."""

from sandbox_agent.store.driver import (
    EventRow,
    IntegrityReport,
    PositionedRow,
    RewrittenRow,
    SessionChange,
    SnapshotRow,
    StorageDriver,
    StoredRow,
)
from sandbox_agent.store.errors import (
    DuplicateEventId,
    IdempotencyConflict,
    InvalidCursor,
    InvalidText,
    NotSupported,
    SchemaVersionError,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    StoreCorrupt,
    StoreError,
    StoreKeyError,
    StoreNotFound,
    StoreUnavailable,
)
from sandbox_agent.store.event_store import EventStore
from sandbox_agent.store.leases import (
    DEFAULT_LEASE_SECONDS,
    Lease,
    LeaseDriver,
    LeaseHolder,
    SessionLeases,
    SessionOwned,
)
from sandbox_agent.store.ownership import Owner, StoreOwned
from sandbox_agent.store.paths import data_dir, default_store_url
from sandbox_agent.store.records import (
    Page,
    PositionedEvent,
    PruneResult,
    SessionRecord,
    SessionStatus,
    Snapshot,
)
from sandbox_agent.store.registry import register_driver, registered_schemes
from sandbox_agent.store.seal import Keyring, Sealer
from sandbox_agent.store.url import open_store

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DuplicateEventId",
    "EventRow",
    "EventStore",
    "IdempotencyConflict",
    "IntegrityReport",
    "InvalidCursor",
    "InvalidText",
    "Keyring",
    "Lease",
    "LeaseDriver",
    "LeaseHolder",
    "NotSupported",
    "Owner",
    "Page",
    "PositionedEvent",
    "PositionedRow",
    "PruneResult",
    "RewrittenRow",
    "SchemaVersionError",
    "Sealer",
    "SequenceConflict",
    "SessionChange",
    "SessionExists",
    "SessionLeases",
    "SessionNotFound",
    "SessionOwned",
    "SessionRecord",
    "SessionStatus",
    "Snapshot",
    "SnapshotRow",
    "StorageDriver",
    "StoreConfigError",
    "StoreCorrupt",
    "StoreError",
    "StoreKeyError",
    "StoreNotFound",
    "StoreOwned",
    "StoreUnavailable",
    "StoredRow",
    "data_dir",
    "default_store_url",
    "open_store",
    "register_driver",
    "registered_schemes",
]
