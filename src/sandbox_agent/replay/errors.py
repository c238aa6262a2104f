"""Errors of the replay engine. Every one is a ``ReplayError``."""

from __future__ import annotations

from sandbox_agent.replay.state import Anomaly


class ReplayError(Exception):
    """Base of every error the replay engine raises (store errors pass through unchanged)."""


class SequencePastEnd(ReplayError, ValueError):
    """``state_at`` was asked for a sequence the session has not reached."""

    def __init__(self, session_id: str, sequence: int, last_sequence: int) -> None:
        super().__init__(
            f"session {session_id!r} ends at sequence {last_sequence}; "
            f"sequence {sequence} is past the end"
        )
        self.session_id = session_id
        self.sequence = sequence
        self.last_sequence = last_sequence


class InvariantViolation(ReplayError):
    """Raised in strict mode at the first anomaly."""

    def __init__(self, anomaly: Anomaly) -> None:
        super().__init__(f"sequence {anomaly.sequence}: {anomaly.kind}: {anomaly.message}")
        self.anomaly = anomaly


class TransferError(ReplayError):
    """An export file cannot be read or imported (bad line, stream that does not fit)."""
