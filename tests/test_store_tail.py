"""``StreamTails``: whatever it answers is the committed event at that sequence, in order and
without gaps, whatever batches, gaps (other writers), deletes and subscriptions came before."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.store.tail import StreamTails, stored_bytes

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(session_id: str, sequence: int) -> UniversalEvent:
    return UniversalEvent(
        event_id=f"evt_{session_id}_{sequence}",
        sequence=sequence,
        time=T0,
        session_id=session_id,
        source="agent",
        type="item.delta",
        data={"item_id": "i", "delta": str(sequence)},
    )


# One step: ("append", batch size, whether this process sees it), ("query", how far behind,
# limit), ("delete",), ("subscribe",), ("unsubscribe",).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 40), st.booleans()),
        st.tuples(st.just("query"), st.integers(0, 600), st.integers(1, 50)),
        st.tuples(st.just("delete")),
        st.tuples(st.just("subscribe")),
        st.tuples(st.just("unsubscribe")),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, per_session=st.integers(1, 64))
def test_tail_answers_only_committed_events_in_order(
    steps: list[tuple[object, ...]], per_session: int
) -> None:
    tails = StreamTails(per_session=per_session)
    committed: list[UniversalEvent] = []  # the truth: the session's stream
    subscribers = 0
    for step in steps:
        match step:
            case ("append", int(size), bool(seen_here)):
                batch = [event("s", len(committed) + n) for n in range(1, size + 1)]
                committed += batch
                if seen_here:  # else another process appended it
                    tails.add("s", batch)
            case ("query", int(behind), int(limit)):
                after = max(0, len(committed) - behind)
                got = tails.after("s", after, limit)
                assert got == committed[after : after + limit][: len(got)]
            case ("delete",):
                tails.drop("s")
                committed = []
            case ("subscribe",):
                tails.subscribe("s")
                subscribers += 1
            case ("unsubscribe",) if subscribers:
                tails.unsubscribe("s")
                subscribers -= 1
    if subscribers == 0:
        assert tails.after("s", 0, 10) == []


def test_a_caught_up_subscriber_is_served_the_last_batch() -> None:
    tails = StreamTails(per_session=4)
    tails.subscribe("s")
    first = [event("s", n) for n in (1, 2, 3)]
    tails.add("s", first)
    assert tails.after("s", 0, 10) == first
    second = [event("s", n) for n in (4, 5, 6)]
    tails.add("s", second)
    assert tails.after("s", 3, 10) == second
    assert tails.after("s", 6, 10) == []  # nothing newer: the caller waits or reads
    # A gap (events 7-8 came from another process): the tail starts again at 9.
    tails.add("s", [event("s", 9)])
    assert tails.after("s", 6, 10) == []
    assert tails.after("s", 8, 10) == [event("s", 9)]


def test_sessions_without_subscribers_keep_nothing() -> None:
    tails = StreamTails()
    tails.add("s", [event("s", 1)])
    assert tails.after("s", 0, 10) == []
    tails.subscribe("s")
    tails.add("s", [event("s", 2)])
    tails.unsubscribe("s")
    assert tails.after("s", 1, 10) == []


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=80),
    max_bytes=st.integers(1, 5000),
    behind=st.integers(0, 80),
    limit=st.integers(1, 100),
)
def test_tail_bounds_its_bytes_and_each_answer(
    sizes: list[int], max_bytes: int, behind: int, limit: int
) -> None:
    """At most ``max_bytes`` held (twice between trims, the newest event whatever its size),
    and an answer of at most ``max_bytes`` (but at least one event) when asked for it."""
    tails = StreamTails(per_session=1000, max_bytes=max_bytes)
    tails.subscribe("s")
    committed = [event("s", n) for n in range(1, len(sizes) + 1)]
    for n, size in enumerate(sizes):
        tails.add("s", committed[n : n + 1], [size])
        held, held_bytes = tails.held("s")
        assert held == 1 or held_bytes <= 2 * max_bytes
    after = max(0, len(committed) - behind)
    got = tails.after("s", after, limit, max_bytes)
    assert got == committed[after : after + len(got)]
    if got:
        assert len(got) == 1 or sum(sizes[after : after + len(got)]) <= max_bytes


async def test_subscribe_batches_bounded_in_bytes_give_every_event_once() -> None:
    """Small events, then events larger than the bound: every event once, in order, and each
    batch within the bound or a single event."""
    async with await open_store("memory://") as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        deltas = ["x" * 100] * 300 + ["y" * 5000] * 20 + ["z" * 10] * 50
        for start in range(0, len(deltas), 100):
            drafts = [
                EventDraft(type="item.delta", data={"item_id": "i", "delta": d})
                for d in deltas[start : start + 100]
            ]
            await store.append("s", drafts, expected_sequence=start)
        got: list[UniversalEvent] = []
        batches = store.subscribe_batches("s", max_bytes=4000)
        async for batch in batches:
            size = sum(stored_bytes(e.model_dump_json(include={"data"}), None) for e in batch)
            assert len(batch) == 1 or size <= 4000 + 20 * len(batch)
            got += batch
            if len(got) >= len(deltas):
                break
        await batches.aclose()
        assert [e.sequence for e in got] == list(range(1, len(deltas) + 1))
        assert [e.data["delta"] for e in got] == deltas
