"""The replay engine: the one reducer from a session's events to its state, and what is built on
it (snapshots and time travel, diffs, transcripts, restore text, export and import).

Imports only ``sandbox_agent.events`` and ``sandbox_agent.store``.
"""

from sandbox_agent.replay.anomalies import ANOMALY_KINDS, STORE_ANOMALY_KINDS, AnomalyKind
from sandbox_agent.replay.check import check_session
from sandbox_agent.replay.diff import StateDiff, diff, format_diff
from sandbox_agent.replay.errors import (
    InvariantViolation,
    ReplayError,
    SequencePastEnd,
    TransferError,
)
from sandbox_agent.replay.reducer import Replayer, replay, working_state
from sandbox_agent.replay.render import TranscriptFormat, render_transcript
from sandbox_agent.replay.restore import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_EVENTS,
    replayed_entries,
    restore_entries,
    restore_text,
)
from sandbox_agent.replay.snapshots import (
    DEFAULT_RETENTION,
    DEFAULT_SNAPSHOT_EVERY,
    SnapshotRetention,
    SnapshotWriter,
    state_at,
    write_snapshot_if_due,
)
from sandbox_agent.replay.state import (
    REDUCER_VERSION,
    Anomaly,
    EndedInfo,
    ErrorEntry,
    ItemState,
    PermissionState,
    QuestionState,
    QueuedPrompt,
    ResumeInfo,
    SessionState,
    SessionStatus,
    TurnState,
    UnparsedEntry,
)
from sandbox_agent.replay.transcript import Transcript, build_transcript
from sandbox_agent.replay.transfer import (
    ExportSummary,
    ImportSummary,
    export_sessions,
    import_sessions,
)

__all__ = [
    "ANOMALY_KINDS",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_RETENTION",
    "DEFAULT_SNAPSHOT_EVERY",
    "REDUCER_VERSION",
    "STORE_ANOMALY_KINDS",
    "Anomaly",
    "AnomalyKind",
    "EndedInfo",
    "ErrorEntry",
    "ExportSummary",
    "ImportSummary",
    "InvariantViolation",
    "ItemState",
    "PermissionState",
    "QuestionState",
    "QueuedPrompt",
    "ReplayError",
    "Replayer",
    "ResumeInfo",
    "SequencePastEnd",
    "SessionState",
    "SessionStatus",
    "SnapshotRetention",
    "SnapshotWriter",
    "StateDiff",
    "Transcript",
    "TranscriptFormat",
    "TransferError",
    "TurnState",
    "UnparsedEntry",
    "build_transcript",
    "check_session",
    "diff",
    "export_sessions",
    "format_diff",
    "import_sessions",
    "render_transcript",
    "replay",
    "replayed_entries",
    "restore_entries",
    "restore_text",
    "state_at",
    "working_state",
    "write_snapshot_if_due",
]
