"""The kinds of anomaly the reducer reports, each tied to an invariant of ``events.md``."""

from __future__ import annotations

from typing import Literal

AnomalyKind = Literal[
    "sequence_gap",
    "sequence_repeat",
    "foreign_session",
    "malformed_event",
    "missing_session_started",
    "session_started_not_first",
    "session_started_twice",
    "event_after_session_ended",
    "item_started_twice",
    "item_started_late",
    "delta_before_start",
    "delta_after_completion",
    "user_item_with_delta",
    "completed_without_start",
    "item_completed_twice",
    "completed_without_delta",
    "turn_started_while_running",
    "turn_ended_without_start",
    "turn_id_mismatch",
    "turn_open_at_session_end",
    "permission_requested_twice",
    "resolved_unknown_permission",
    "permission_resolved_twice",
    "question_requested_twice",
    "resolved_unknown_question",
    "question_resolved_twice",
    "prompt_queued_twice",
    "dequeued_unknown_prompt",
]

#: kind -> (invariant number in events.md, what it means). 0: not a numbered invariant.
ANOMALY_KINDS: dict[AnomalyKind, tuple[int, str]] = {
    "sequence_gap": (1, "sequence numbers skip one or more values"),
    "sequence_repeat": (1, "a sequence number repeats or goes back"),
    "foreign_session": (0, "an event carries another session's id"),
    "malformed_event": (0, "a known event type whose payload does not match its schema"),
    "missing_session_started": (2, "the first event is not session.started"),
    "session_started_not_first": (2, "session.started arrives after other events"),
    "session_started_twice": (2, "a second session.started"),
    "event_after_session_ended": (9, "an event other than session.resumed after session.ended"),
    "item_started_twice": (3, "a second item.started for the same item"),
    "item_started_late": (3, "item.started after the item's deltas or completion"),
    "delta_before_start": (3, "item.delta for an item that has not started"),
    "delta_after_completion": (5, "item.delta for an item already completed (its text ignored)"),
    "user_item_with_delta": (6, "a user message item receives a delta"),
    "completed_without_start": (3, "item.completed for an item that never started"),
    "item_completed_twice": (3, "a second item.completed for the same item"),
    "completed_without_delta": (4, "an agent message completes with text but got no delta"),
    "turn_started_while_running": (7, "turn.started while another turn runs"),
    "turn_ended_without_start": (7, "turn.ended with no turn running"),
    "turn_id_mismatch": (7, "turn.ended names another turn than the running one"),
    "turn_open_at_session_end": (7, "session.ended while a turn runs, without its turn.ended"),
    "permission_requested_twice": (8, "permission.requested for an id already requested"),
    "resolved_unknown_permission": (8, "permission.resolved for an id never requested"),
    "permission_resolved_twice": (8, "permission.resolved for an id already resolved"),
    "question_requested_twice": (8, "question.requested for an id already requested"),
    "resolved_unknown_question": (8, "question.resolved for an id never requested"),
    "question_resolved_twice": (8, "question.resolved for an id already resolved"),
    "prompt_queued_twice": (0, "prompt.queued for a queue id already used"),
    "dequeued_unknown_prompt": (0, "prompt.dequeued for a prompt that is not waiting"),
}

#: What ``replay --check`` adds from the store (``EventStore.verify``: the session's row against
#: its stored events), before the reducer's anomalies: ``StoreCorrupt.kind`` -> (anomaly kind,
#: what it means). A damaged store, not a bad stream: no writer produced these.
STORE_ANOMALY_KINDS: dict[str, tuple[str, str]] = {
    "gap": ("events_missing", "events missing below the last sequence the session's row records"),
    "row_mismatch": (
        "row_mismatch",
        "the session's row and its stored events disagree (event count, last sequence, order)",
    ),
    "undecodable": ("undecodable_event", "a stored event that does not decode"),
    "database": ("database_corrupt", "the database reports its file or pages damaged"),
}
