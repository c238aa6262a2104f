"""The contract, group 'snapshots'."""

from __future__ import annotations

import json

import pytest

from sandbox_agent.store import (
    EventStore,
    SessionNotFound,
)
from sandbox_agent.testing.contract._frame import ContractFrame, group
from sandbox_agent.testing.support import (
    deltas,
    new_session,
)


@group("snapshots")
class SnapshotsContract(ContractFrame):
    async def test_load_snapshot_returns_the_newest_at_or_before(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.append(sid, deltas(10))
        for seq in (3, 7, 5):
            await store.save_snapshot(sid, seq, {"at": seq, "items": [seq]}, 1)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.state) == (7, {"at": 7, "items": [7]})
        assert snap.session_id == sid and snap.version == 1
        for at, want in ((10, 7), (7, 7), (6, 5), (5, 5), (4, 3), (3, 3)):
            snap = await store.load_snapshot(sid, at_or_before=at)
            assert snap is not None and snap.sequence == want, at
        assert await store.load_snapshot(sid, at_or_before=2) is None

    async def test_prune_snapshots_keeps_the_newest_and_one_per_span(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        for seq in range(10, 310, 10):
            await store.save_snapshot(sid, seq, {"at": seq}, 2)
        for seq in (50, 150):
            await store.save_snapshot(sid, seq, {"old": seq}, 1)
        assert await store.snapshot_keys(sid) == sorted(
            [(seq, 2) for seq in range(10, 310, 10)] + [(50, 1), (150, 1)]
        )
        deleted = await store.prune_snapshots(sid, keep_latest=2, keep_every=100, version=2)
        # Spans [0, 100), [100, 200), [200, 300), [300, 400): their newest, and 290, 300.
        kept = [(90, 2), (190, 2), (290, 2), (300, 2)]
        assert await store.snapshot_keys(sid) == kept
        assert deleted == 32 - len(kept)
        snap = await store.load_snapshot(sid, at_or_before=289)
        assert snap is not None and (snap.sequence, snap.state) == (190, {"at": 190})
        assert await store.prune_snapshots(sid, keep_latest=1) == 3  # newest only
        assert await store.snapshot_keys(sid) == [(300, 2)]
        assert await store.prune_snapshots("nobody", keep_latest=1) == 0
        with pytest.raises(ValueError):
            await store.prune_snapshots(sid, keep_latest=1, keep_every=0)

    async def test_load_snapshot_filters_by_version(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 2, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, {"v": 2}, 2)
        await store.save_snapshot(sid, 6, {"v": 1}, 1)
        snap = await store.load_snapshot(sid, version=2)
        assert snap is not None and (snap.sequence, snap.version, snap.state) == (4, 2, {"v": 2})
        snap = await store.load_snapshot(sid, at_or_before=5, version=1)
        assert snap is not None and (snap.sequence, snap.state) == (2, {"v": 1})
        assert await store.load_snapshot(sid, version=3) is None
        assert await store.load_snapshot(sid, at_or_before=3, version=2) is None

    async def test_load_snapshot_json_gives_what_load_snapshot_gives(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        state = {"text": 'caf\u00e9 \u0000 "q"', "n": [1, 2.5, None, True], "nested": {"a": {}}}
        await store.save_snapshot(sid, 2, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, state, 2)
        await store.save_snapshot(sid, 6, {"v": 3}, 1)
        for at, version in ((None, None), (5, None), (None, 2), (3, 1), (6, 1), (1, None)):
            snap = await store.load_snapshot(sid, at_or_before=at, version=version)
            text = await store.load_snapshot_json(sid, at_or_before=at, version=version)
            if snap is None:
                assert text is None, (at, version)
            else:
                assert text is not None and text[0] == snap.sequence, (at, version)
                assert json.loads(text[1]) == snap.state, (at, version)
        assert await store.load_snapshot_json("no-such-session") is None

    async def test_highest_version_wins_at_the_same_sequence(self, store: EventStore) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 5, {"v": 2}, 2)
        await store.save_snapshot(sid, 5, {"v": 1}, 1)
        await store.save_snapshot(sid, 4, {"v": 3}, 3)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.version, snap.state) == (5, 2, {"v": 2})
        snap = await store.load_snapshot(sid, version=1)
        assert snap is not None and (snap.sequence, snap.version) == (5, 1)

    async def test_save_snapshot_replaces_one_with_the_same_sequence_and_version(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.save_snapshot(sid, 5, {"old": True}, 1)
        saved = await store.save_snapshot(sid, 5, {"new": [1, {"x": None}]}, 1)
        assert saved.state == {"new": [1, {"x": None}]}
        snap = await store.load_snapshot(sid)
        assert snap is not None and snap.state == {"new": [1, {"x": None}]}
        assert await store.load_snapshot(sid, at_or_before=5, version=1) == snap

    async def test_load_snapshot_is_none_when_none_was_saved(self, store: EventStore) -> None:
        sid = await new_session(store)
        assert await store.load_snapshot(sid) is None

    async def test_save_snapshot_of_an_unknown_session_raises_session_not_found(
        self, store: EventStore
    ) -> None:
        with pytest.raises(SessionNotFound):
            await store.save_snapshot("nope", 1, {}, 1)

    async def test_save_snapshot_json_stores_the_text_as_that_state(
        self, store: EventStore
    ) -> None:
        sid = await new_session(store)
        await store.save_snapshot_json(sid, 3, '{"old":1}', 1)
        await store.save_snapshot_json(sid, 3, '{"a":[1,{"b":null}],"t":"\\u00e9"}', 1)
        await store.save_snapshot(sid, 2, {"v": 2}, 1)
        snap = await store.load_snapshot(sid)
        assert snap is not None and (snap.sequence, snap.version) == (3, 1)
        assert snap.state == {"a": [1, {"b": None}], "t": "\u00e9"}
        loaded = await store.load_snapshot_json(sid, version=1)
        assert loaded is not None and loaded[0] == 3
        assert json.loads(loaded[1]) == snap.state
        with pytest.raises(SessionNotFound):
            await store.save_snapshot_json("nope", 1, "{}", 1)
        with pytest.raises(ValueError):
            await store.save_snapshot_json(sid, 4, "[1, 2]", 1)
