"""``replay --check`` of one session: the store's own findings (its row against its events:
gaps, rows that do not decode, counts that disagree) beside the reducer's invariant anomalies
over every event that can be read."""

from __future__ import annotations

from sandbox_agent.replay.anomalies import STORE_ANOMALY_KINDS
from sandbox_agent.replay.reducer import Replayer
from sandbox_agent.replay.snapshots import state_at
from sandbox_agent.replay.state import Anomaly, SessionState
from sandbox_agent.store import EventStore, StoreCorrupt

PAGE = 1000


def store_anomaly(finding: StoreCorrupt) -> Anomaly:
    kind, _ = STORE_ANOMALY_KINDS.get(finding.kind, STORE_ANOMALY_KINDS["database"])
    return Anomaly(sequence=finding.sequence, kind=kind, message=finding.detail)


async def check_session(store: EventStore, session_id: str, at: int | None = None) -> SessionState:
    """The state of a full replay (no snapshot trusted) after ``at`` (all when None), whose
    anomalies start with what ``EventStore.verify`` found. A damaged stream is folded as far
    as it reads; ``event_count`` then says how far that was."""
    findings = await store.verify(session_id)
    try:
        state = await state_at(store, session_id, at, use_snapshots=False)
    except StoreCorrupt:
        state = await _readable(store, session_id, at)
    state.anomalies[:0] = [store_anomaly(finding) for finding in findings]
    return state


async def _readable(store: EventStore, session_id: str, at: int | None) -> SessionState:
    """The fold of the events before the first damage: pages while they read, then one event
    at a time up to it."""
    replayer = Replayer(SessionState(session_id=session_id), copy=False)
    limit = PAGE
    while at is None or replayer.last_sequence < at:
        after = replayer.last_sequence
        want = limit if at is None else min(limit, at - after)
        try:
            page = await store.read(session_id, after=after, limit=want)
        except StoreCorrupt:
            if limit == 1:
                break
            limit = 1
            continue
        if not page:
            break
        replayer.apply_all(page)
    return replayer.finish()
