"""Snapshots and time travel over real stores (memory and SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_agent.replay import (
    REDUCER_VERSION,
    SequencePastEnd,
    SessionState,
    SnapshotRetention,
    SnapshotWriter,
    replay,
    state_at,
    write_snapshot_if_due,
)
from sandbox_agent.store import EventStore, SessionNotFound, SessionRecord, open_store

from replay_helpers import Stream, canonical_session, drafts_of, store_stream


@pytest.fixture(params=["memory", "sqlite"])
async def replay_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'replay.db'}"
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


def long_session(turns: int = 6) -> Stream:
    s = Stream().started()
    for n in range(turns):
        s.turn(f"t{n}").user(f"u{n}", f"prompt {n}")
        s.assistant(f"a{n}", "thinking ", "about ", f"answer {n}")
        s.turn_end(f"t{n}")
    return s.ended()


async def test_state_at_equals_replay_of_the_prefix_at_every_sequence(
    replay_store: EventStore,
) -> None:
    events = canonical_session().events
    await store_stream(replay_store, events)
    for k in range(len(events) + 1):
        assert await state_at(replay_store, "s1", k) == replay(
            events[:k], state=SessionState(session_id="s1")
        )
    assert await state_at(replay_store, "s1") == replay(events)


async def test_state_at_starts_from_the_newest_snapshot_of_this_version(
    replay_store: EventStore,
) -> None:
    events = long_session().events
    await store_stream(replay_store, events)
    # A snapshot that differs from the truth shows whether it was used.
    marked = replay(events[:10]).model_copy(update={"title": "from the snapshot"})
    await replay_store.save_snapshot("s1", 10, marked.to_json(), REDUCER_VERSION)
    assert (await state_at(replay_store, "s1", 15)).title == "from the snapshot"
    assert (await state_at(replay_store, "s1", 9)).title is None  # before the snapshot
    assert (await state_at(replay_store, "s1", 15, use_snapshots=False)).title is None


async def test_snapshots_of_another_reducer_version_are_ignored(replay_store: EventStore) -> None:
    events = long_session().events
    await store_stream(replay_store, events)
    stale = replay(events[:10]).model_copy(
        update={"title": "stale", "version": REDUCER_VERSION + 1}
    )
    await replay_store.save_snapshot("s1", 10, stale.to_json(), REDUCER_VERSION + 1)
    await replay_store.save_snapshot("s1", 12, {"not": "a state"}, REDUCER_VERSION)  # unreadable
    assert await state_at(replay_store, "s1") == replay(events)


async def test_state_at_rebuilds_missing_snapshots_when_asked(replay_store: EventStore) -> None:
    events = long_session().events
    await store_stream(replay_store, events)
    assert await replay_store.load_snapshot("s1", version=REDUCER_VERSION) is None
    await state_at(replay_store, "s1", snapshot_every=10)
    saved = await replay_store.load_snapshot("s1", version=REDUCER_VERSION)
    assert saved is not None and saved.sequence == (len(events) // 10) * 10
    assert SessionState.model_validate(saved.state) == replay(events[: saved.sequence])


async def test_state_at_rejects_a_sequence_past_the_end(replay_store: EventStore) -> None:
    events = canonical_session().events
    await store_stream(replay_store, events)
    with pytest.raises(SequencePastEnd, match="past the end") as caught:
        await state_at(replay_store, "s1", len(events) + 1)
    assert caught.value.last_sequence == len(events)


async def test_state_at_an_unknown_session_raises_session_not_found(
    replay_store: EventStore,
) -> None:
    with pytest.raises(SessionNotFound):
        await state_at(replay_store, "nobody")


async def test_state_at_zero_is_the_empty_state(replay_store: EventStore) -> None:
    await store_stream(replay_store, canonical_session().events)
    assert await state_at(replay_store, "s1", 0) == SessionState(session_id="s1")


async def test_a_snapshot_writer_saves_when_appends_cross_a_multiple(
    replay_store: EventStore,
) -> None:
    events = long_session().events
    await replay_store.create_session(SessionRecord(id="s1", agent="mock"))
    # Every snapshot kept (no retention): each is checked below.
    writer = await SnapshotWriter.open(replay_store, "s1", snapshot_every=10, retention=None)
    saved_at = []
    for start in range(0, len(events), 3):  # batches of 3 jump over some multiples of 10
        batch = events[start : start + 3]
        stored = await replay_store.append(
            "s1", drafts_of(batch), expected_sequence=writer.last_sequence
        )
        saved = await writer.record(stored)
        if saved is not None:
            saved_at.append(saved)
    assert saved_at == [12, 21, 30, 42, 51]  # the end of each batch that passed 10, 20, ...
    assert writer.state == replay(events)
    for sequence in saved_at:
        snapshot = await replay_store.load_snapshot(
            "s1", at_or_before=sequence, version=REDUCER_VERSION
        )
        assert snapshot is not None
        assert SessionState.model_validate(snapshot.state) == replay(events[:sequence])
    assert await state_at(replay_store, "s1") == replay(events)


async def test_write_snapshot_if_due_only_when_a_multiple_is_crossed(
    replay_store: EventStore,
) -> None:
    events = long_session().events
    await store_stream(replay_store, events)
    at_20 = replay(events[:20])
    assert await write_snapshot_if_due(replay_store, replay(events[:19]), 10) is None
    assert await write_snapshot_if_due(replay_store, at_20, 10) is not None
    assert await write_snapshot_if_due(replay_store, at_20, 10, previous_sequence=20) is None
    at_23 = replay(events[:23])
    assert await write_snapshot_if_due(replay_store, at_23, 10, previous_sequence=18) is not None
    snapshot = await replay_store.load_snapshot("s1", version=REDUCER_VERSION)
    assert snapshot is not None and snapshot.sequence == 23


def kept_by_policy(saved: list[int], keep_latest: int, keep_every: int | None) -> list[int]:
    """What SnapshotRetention promises to keep of snapshots saved at ``saved`` (ascending)."""
    kept = set(saved[-keep_latest:])
    if keep_every is not None:
        spans: dict[int, int] = {}
        for sequence in saved:
            spans[sequence // keep_every] = sequence
        kept |= set(spans.values())
    return sorted(kept)


@settings(max_examples=40, deadline=None)
@given(
    snapshot_every=st.integers(1, 7),
    keep_latest=st.integers(1, 3),
    keep_every=st.none() | st.integers(1, 20),
    batch=st.integers(1, 5),
)
def test_thinned_snapshots_keep_time_travel_exact(
    snapshot_every: int, keep_latest: int, keep_every: int | None, batch: int
) -> None:
    """Whatever a writer's retention deleted, ``state_at`` every point equals the replay of
    that prefix, and exactly the snapshots the policy names are left (older versions gone)."""
    events = long_session(4).events
    retention = SnapshotRetention(keep_latest=keep_latest, keep_every=keep_every)

    async def run() -> None:
        async with await open_store("memory://") as store:
            await store.create_session(SessionRecord(id="s1", agent="mock"))
            await store.save_snapshot("s1", 1, {"old": True}, REDUCER_VERSION - 1)
            writer = await SnapshotWriter.open(
                store, "s1", snapshot_every=snapshot_every, retention=retention
            )
            saved: list[int] = []
            for start in range(0, len(events), batch):
                stored = await store.append(
                    "s1",
                    drafts_of(events[start : start + batch]),
                    expected_sequence=writer.last_sequence,
                )
                sequence = await writer.record(stored)
                if sequence is not None:
                    saved.append(sequence)
            keys = await store.snapshot_keys("s1")
            assert keys == [
                (sequence, REDUCER_VERSION)
                for sequence in kept_by_policy(saved, keep_latest, keep_every)
            ]
            for k in range(len(events) + 1):
                assert await state_at(store, "s1", k) == replay(
                    events[:k], state=SessionState(session_id="s1")
                )

    asyncio.run(run())


async def test_a_long_session_keeps_few_snapshots(replay_store: EventStore) -> None:
    # 60 turns, a snapshot every 10 events: over 50 saved, 2 + one per 100 kept.
    events = long_session(60).events
    await replay_store.create_session(SessionRecord(id="s1", agent="mock"))
    retention = SnapshotRetention(keep_latest=2, keep_every=100)
    writer = await SnapshotWriter.open(replay_store, "s1", snapshot_every=10, retention=retention)
    for event in events:
        stored = await replay_store.append(
            "s1", drafts_of([event]), expected_sequence=writer.last_sequence
        )
        await writer.record(stored)
    keys = [sequence for sequence, _ in await replay_store.snapshot_keys("s1")]
    saved = list(range(10, len(events) + 1, 10))
    assert len(saved) > 50
    assert keys == kept_by_policy(saved, 2, 100) == [90, 190, 290, 390, 490, *saved[-2:]]
    assert await state_at(replay_store, "s1", 250) == replay(
        events[:250], state=SessionState(session_id="s1")
    )
