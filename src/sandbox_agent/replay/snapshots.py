"""Snapshots and time travel (``replay.md``, "Snapshots and time travel").

``state_at`` rebuilds a session's state at any sequence from the newest usable snapshot plus the
events after it, so its cost follows the events after the snapshot, not the whole stream.
Writers keep snapshots coming with ``write_snapshot_if_due`` (or a ``SnapshotWriter``) after each
append; a snapshot carries ``REDUCER_VERSION`` and one of another version is never used.

Each snapshot holds the whole state, which grows with the session, so keeping them all costs
storage quadratic in the session's length (1.1 GB for a 100k-event session of short deltas).
After each save the writer thins them (``SnapshotRetention``): by default the newest two, plus the
newest in each span of 10,000 sequences, so that ``state_at`` any point replays less than two
spans of events, and snapshots of other reducer versions go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay.errors import SequencePastEnd
from sandbox_agent.replay.reducer import Replayer
from sandbox_agent.replay.state import REDUCER_VERSION, SessionState
from sandbox_agent.store import EventStore

DEFAULT_SNAPSHOT_EVERY = 1000
PAGE_SIZE = 1000


@dataclass(frozen=True)
class SnapshotRetention:
    """Which snapshots a writer keeps after it saves one (``EventStore.prune_snapshots``): the
    newest ``keep_latest``, plus the newest in each span of ``keep_every`` sequences (None:
    only the newest), all of this reducer version."""

    keep_latest: int = 2
    keep_every: int | None = 10_000

    def __post_init__(self) -> None:
        if self.keep_latest < 1 or (self.keep_every is not None and self.keep_every <= 0):
            raise ValueError("keep_latest must be >= 1 and keep_every > 0")


DEFAULT_RETENTION = SnapshotRetention()


async def state_at(
    store: EventStore,
    session_id: str,
    sequence: int | None = None,
    *,
    use_snapshots: bool = True,
    snapshot_every: int | None = None,
    page_size: int = PAGE_SIZE,
) -> SessionState:
    """The state of ``session_id`` after event ``sequence`` (the latest when None; 0 gives the
    empty state).

    Starts from the newest snapshot of this reducer version at or before ``sequence`` (unless
    ``use_snapshots`` is False) and replays the rest in pages. With ``snapshot_every``, saves a
    snapshot at each multiple of it that the replay passes, which rebuilds the snapshots of a
    session whose snapshots are missing or of another version. Raises ``SessionNotFound`` (a
    ``StoreError``) for an unknown session and ``SequencePastEnd`` beyond its last event.
    """
    last = await store.last_sequence(session_id)
    if sequence is not None and sequence < 0:
        raise ValueError(f"sequence must be >= 0, got {sequence}")
    if sequence is not None and sequence > last:
        raise SequencePastEnd(session_id, sequence, last)
    target = last if sequence is None else sequence
    replayer = Replayer(SessionState(session_id=session_id), copy=False)
    if use_snapshots and target > 0:
        state = await load_state(store, session_id, target)
        if state is not None:
            replayer = Replayer(state, copy=False)
    done = replayer.last_sequence
    while done < target:
        page = await store.read(session_id, after=done, limit=min(page_size, target - done))
        if not page:
            break
        if snapshot_every:
            await _apply_saving(store, replayer, page, snapshot_every)
        else:
            replayer.apply_all(page)
        done = page[-1].sequence
    return replayer.finish()


async def load_state(store: EventStore, session_id: str, at_or_before: int) -> SessionState | None:
    """The state of the newest usable snapshot at or before ``at_or_before``, if any."""
    snapshot = await store.load_snapshot_json(
        session_id, at_or_before=at_or_before, version=REDUCER_VERSION
    )
    if snapshot is None:
        return None
    sequence, text = snapshot
    try:
        # Straight from the text: one pass, no intermediate dict. With the collector on: held
        # off, it owes one collection over every new container at the end, which costs more
        # than the young collections along the way (61-79 ms against 43-46 ms for 22 MB).
        state = SessionState.model_validate_json(text)
    except ValidationError:
        return None  # unreadable: replaying from the start is slower but right
    if state.version != REDUCER_VERSION or state.last_sequence != sequence:
        return None
    return state


async def _apply_saving(
    store: EventStore, replayer: Replayer, page: Sequence[UniversalEvent], every: int
) -> None:
    for event in page:
        replayer.apply(event)
        if event.sequence % every == 0 and replayer.last_sequence == event.sequence:
            await save_state(store, replayer)


async def save_state(
    store: EventStore,
    state: SessionState | Replayer,
    *,
    retention: SnapshotRetention | None = DEFAULT_RETENTION,
) -> int:
    """Save ``state`` as the snapshot at its ``last_sequence``, then thin the session's
    snapshots by ``retention`` (None keeps them all); return that sequence.

    The state goes to the store as JSON text made in one pass (``save_snapshot_json``): a
    writer saves its live state on its event loop, and a long session's state is tens of MB."""
    session_id = state.session_id
    if session_id is None:
        raise ValueError("cannot snapshot the state of an empty stream")
    if isinstance(state, Replayer) and state.working:
        raise ValueError("a working replayer's state is not a snapshot (write_snapshot_if_due)")
    sequence = state.last_sequence
    await store.save_snapshot_json(session_id, sequence, state.to_json_text(), REDUCER_VERSION)
    if retention is not None:
        await store.prune_snapshots(
            session_id,
            keep_latest=retention.keep_latest,
            keep_every=retention.keep_every,
            version=REDUCER_VERSION,
        )
    return sequence


async def write_snapshot_if_due(
    store: EventStore,
    state: SessionState | Replayer,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    *,
    previous_sequence: int | None = None,
    retention: SnapshotRetention | None = DEFAULT_RETENTION,
    page_size: int = PAGE_SIZE,
) -> int | None:
    """Save a snapshot when the last append crossed a multiple of ``snapshot_every``.

    Call it after each append with the state after it; ``previous_sequence`` is the last
    sequence before the append (default: one event appended). A batch that jumps over a
    multiple (995 -> 1005) saves at its end (1005). Returns the sequence of the snapshot saved,
    if any.

    A working replayer (``Replayer(working=True)``) holds no full state: the snapshot is then
    folded from the store (the newest snapshot before it plus the events since, ``state_at``),
    which gives the same state as a full fold of the whole stream, read ``page_size`` events at
    a time.
    """
    last = state.last_sequence
    before = last - 1 if previous_sequence is None else previous_sequence
    if not snapshot_due(last, before, snapshot_every):
        return None
    if isinstance(state, Replayer) and state.working:
        session_id = state.session_id
        if session_id is None:
            raise ValueError("cannot snapshot the state of an empty stream")
        state = await state_at(store, session_id, last, page_size=page_size)
    return await save_state(store, state, retention=retention)


def snapshot_due(last: int, before: int, snapshot_every: int) -> bool:
    """Whether an append that took a stream from ``before`` to ``last`` crossed a multiple of
    ``snapshot_every`` (``write_snapshot_if_due`` saves one then)."""
    return snapshot_every > 0 and last > 0 and last // snapshot_every > before // snapshot_every


class SnapshotWriter:
    """A writer's live view of one session: feed it what was appended, it keeps the state and
    saves a snapshot every ``snapshot_every`` events.

    Example::

        writer = await SnapshotWriter.open(store, "s1")
        stored = await store.append("s1", drafts, expected_sequence=writer.last_sequence)
        await writer.record(stored)
    """

    def __init__(
        self,
        store: EventStore,
        state: SessionState,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        retention: SnapshotRetention | None = DEFAULT_RETENTION,
    ) -> None:
        self._store = store
        self._replayer = Replayer(state)
        self._every = snapshot_every
        self._retention = retention

    @classmethod
    async def open(
        cls,
        store: EventStore,
        session_id: str,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        retention: SnapshotRetention | None = DEFAULT_RETENTION,
    ) -> SnapshotWriter:
        """Start from the session's current state (read with ``state_at``)."""
        state = await state_at(store, session_id)
        return cls(store, state, snapshot_every=snapshot_every, retention=retention)

    @property
    def last_sequence(self) -> int:
        return self._replayer.last_sequence

    @property
    def state(self) -> SessionState:
        return self._replayer.state

    async def record(self, events: Sequence[UniversalEvent]) -> int | None:
        """Fold the events just appended; save a snapshot if one is due (its sequence)."""
        before = self._replayer.last_sequence
        self._replayer.apply_all(events)
        return await write_snapshot_if_due(
            self._store,
            self._replayer,
            self._every,
            previous_sequence=before,
            retention=self._retention,
        )
