"""The contract, groups 'fork', 'prune' and 'opening'."""

from __future__ import annotations

import asyncio

import pytest

from sandbox_agent.events import utc_now
from sandbox_agent.store import (
    EventStore,
    SessionExists,
    SessionNotFound,
    StoreConfigError,
    open_store,
)
from sandbox_agent.testing.contract._frame import ContractFrame, group
from sandbox_agent.testing.support import (
    delta,
    deltas,
    dumped,
    ended,
    new_session,
    resumed,
    take,
    with_option,
)


@group("fork")
class ForkContract(ContractFrame):
    async def test_fork_session_copies_the_whole_stream_with_new_ids(
        self, store: EventStore
    ) -> None:
        src = await new_session(store, "src", agent="claude", title="t", metadata={"k": 1})
        source = await store.append(
            src,
            [delta("a", native_session_id="n1", raw={"r": 1}), delta("b", synthetic=True)],
        )
        source += await store.append(src, [ended()])
        fork = await store.fork_session(src, "fork")
        assert fork.id == "fork"
        assert fork.agent == "claude" and fork.title == "t"
        assert fork.metadata == {"k": 1, "forked_from": {"session_id": "src", "sequence": 3}}
        assert (fork.last_sequence, fork.event_count, fork.status) == (3, 3, "ended")
        assert await store.get_session("fork") == fork
        copied = await store.read("fork")
        assert [e.sequence for e in copied] == [1, 2, 3]
        assert {e.event_id for e in copied}.isdisjoint({e.event_id for e in source})
        assert len({e.event_id for e in copied}) == 3
        keep = ("type", "data", "source", "synthetic", "native_session_id", "raw", "time")
        for c, s in zip(copied, source, strict=True):
            assert c.session_id == "fork"
            assert {k: getattr(c, k) for k in keep} == {k: getattr(s, k) for k in keep}
        assert dumped(await store.read(src)) == dumped(source)

    async def test_fork_session_at_k_copies_events_one_to_k(self, store: EventStore) -> None:
        src = await new_session(store, "src")
        source = await store.append(src, [*deltas(4), ended(), resumed(), delta()])
        fork = await store.fork_session(src, "f3", at=3)
        assert fork.metadata["forked_from"] == {"session_id": "src", "sequence": 3}
        assert (fork.last_sequence, fork.event_count, fork.status) == (3, 3, "active")
        assert [e.data for e in await store.read("f3")] == [e.data for e in source[:3]]
        ended_fork = await store.fork_session(src, "f5", at=5)
        assert (ended_fork.status, ended_fork.ended_at) == ("ended", source[4].time)
        empty = await store.fork_session(src, "f0", at=0)
        assert (empty.last_sequence, await store.read("f0")) == (0, [])
        # The fork is a stream of its own: it grows without touching the source.
        await store.append("f3", deltas(2), expected_sequence=3)
        assert await store.last_sequence("f3") == 5
        assert await store.last_sequence(src) == 7

    async def test_fork_session_of_an_unknown_source_or_to_a_taken_id_fails(
        self, store: EventStore
    ) -> None:
        await new_session(store, "src")
        await store.append("src", deltas(2))
        with pytest.raises(SessionNotFound):
            await store.fork_session("nope", "f")
        await new_session(store, "taken")
        with pytest.raises(SessionExists):
            await store.fork_session("src", "taken")
        assert await store.read("taken") == []
        assert await store.get_session("f") is None


@group("prune")
class PruneContract(ContractFrame):
    async def test_prune_removes_ended_sessions_by_default(self, store: EventStore) -> None:
        done1 = await new_session(store)
        live = await new_session(store)
        done2 = await new_session(store)
        await store.append(done1, [*deltas(3), ended()])
        await store.append(live, deltas(2))
        await store.append(done2, [ended()])
        await store.save_snapshot(done1, 2, {"x": 1}, 1)
        result = await store.prune()
        assert sorted(result.sessions) == sorted([done1, done2])
        assert result.events == 5
        assert await store.get_session(done1) is None and await store.get_session(done2) is None
        assert [s.id for s in (await store.list_sessions()).items] == [live]
        assert {p.event.session_id for p in await store.read_all()} == {live}
        # Nothing left to prune.
        assert (await store.prune()).sessions == []

    async def test_prune_with_status_none_removes_sessions_of_any_status(
        self, store: EventStore
    ) -> None:
        a, b = await new_session(store), await new_session(store)
        await store.append(a, deltas(2))
        await store.append(b, [ended()])
        result = await store.prune(status=None)
        assert (sorted(result.sessions), result.events) == (sorted([a, b]), 3)
        assert (await store.list_sessions()).items == []

    async def test_prune_with_status_active_spares_ended_sessions(self, store: EventStore) -> None:
        a, b = await new_session(store), await new_session(store)
        await store.append(a, deltas(2))
        await store.append(b, [ended()])
        result = await store.prune(status="active")
        assert (result.sessions, result.events) == ([a], 2)
        assert await store.get_session(b) is not None

    async def test_prune_older_than_spares_recently_updated_sessions(
        self, store: EventStore
    ) -> None:
        old = [await new_session(store) for _ in range(2)]
        for sid in old:
            await store.append(sid, [delta(), ended()])
        await asyncio.sleep(0.01)
        cutoff = utc_now()
        await asyncio.sleep(0.01)
        recent = await new_session(store)
        await store.append(recent, [ended()])
        # Created before the cutoff but updated after it: recent too.
        touched = old[1]
        await store.append(touched, [resumed(), ended()])
        result = await store.prune(older_than=cutoff)
        assert (result.sessions, result.events) == ([old[0]], 2)
        assert await store.get_session(recent) is not None
        assert await store.get_session(touched) is not None

    async def test_prune_keep_latest_spares_the_newest(self, store: EventStore) -> None:
        sids = [await new_session(store, f"s{i}") for i in range(5)]
        for n, sid in enumerate(sids, start=1):
            await store.append(sid, [*deltas(n - 1), ended()])
        live = await new_session(store, "live")
        result = await store.prune(keep_latest=2)
        assert sorted(result.sessions) == ["s0", "s1", "s2"]
        assert result.events == 1 + 2 + 3
        assert [s.id for s in (await store.list_sessions()).items] == ["live", "s4", "s3"]
        assert await store.get_session(live) is not None


@group("opening")
class OpeningContract(ContractFrame):
    async def test_open_store_rejects_an_unknown_option(self, contract_url: str) -> None:
        with pytest.raises(StoreConfigError, match="no_such_option"):
            await open_store(with_option(contract_url, "no_such_option=1"))
        with pytest.raises(StoreConfigError, match="no_such_option"):
            await open_store(contract_url, no_such_option=1)

    async def test_store_is_an_async_context_manager_that_closes_it(
        self, contract_url: str
    ) -> None:
        async with await open_store(contract_url) as store:
            sid = await new_session(store)
            reader = asyncio.create_task(take(store, sid, 1))
            await asyncio.sleep(0.05)
        # Closing ended the subscriber without an event.
        assert await asyncio.wait_for(reader, 5) == []
