"""Drafts that adapters and the session layer both build."""

from __future__ import annotations

from typing import Any

from sandbox_agent.events import EventDraft, TurnEndedData


def turn_ended_draft(
    reason: str, *, turn_id: str | None = None, metadata: dict[str, Any] | None = None
) -> EventDraft:
    """A daemon-made ``turn.ended`` (``completed``, ``cancelled``, ``interrupted``, ``error``).

    Without ``turn_id`` the session layer's normaliser fills in the open turn's.
    """
    return EventDraft(
        type="turn.ended",
        data=TurnEndedData(turn_id=turn_id, reason=reason, metadata=metadata),
        source="daemon",
        synthetic=True,
    )
