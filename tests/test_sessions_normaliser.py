"""The normaliser: ids, synthetic starts and deltas, drops, rebuild from stored events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sandbox_agent.agents import turn_ended_draft
from sandbox_agent.events import (
    ContentPart,
    EventDraft,
    ItemDeltaData,
    ItemEventData,
    JsonPart,
    SessionEndedData,
    TextPart,
    TurnStartedData,
    UniversalEvent,
    UniversalItem,
)
from sandbox_agent.replay import SessionState, replay
from sandbox_agent.sessions.normaliser import RECENT_ITEMS, Normaliser

from agent_contract import number, stream_violations, summary


def item_draft(
    event_type: str,
    item_id: str = "",
    native: str | None = None,
    *,
    kind: str = "message",
    role: str | None = "assistant",
    text: str | None = "hi",
    parent: str | None = None,
    status: str | None = None,
    native_session_id: str | None = None,
) -> EventDraft:
    content: list[ContentPart] = [] if text is None else [TextPart(text=text)]
    item = UniversalItem(
        item_id=item_id,
        native_item_id=native,
        parent_id=parent,
        kind=kind,
        role=role,
        status=status or ("in_progress" if event_type == "item.started" else "completed"),
        content=content,
    )
    return EventDraft(
        type=event_type, data=ItemEventData(item=item), native_session_id=native_session_id
    )


def delta(item_id: str = "", native: str | None = None, text: str = "d") -> EventDraft:
    return EventDraft(
        type="item.delta", data=ItemDeltaData(item_id=item_id, native_item_id=native, delta=text)
    )


def turn_started(turn_id: str | None = None) -> EventDraft:
    return EventDraft(type="turn.started", data=TurnStartedData(turn_id=turn_id), source="daemon")


def session_started(native: str | None = None) -> EventDraft:
    return EventDraft(type="session.started", source="daemon", native_session_id=native)


def session_ended(reason: str = "completed") -> EventDraft:
    data = SessionEndedData(reason=reason, terminated_by="agent")
    return EventDraft(type="session.ended", data=data)


def lines(drafts: Sequence[EventDraft]) -> list[str]:
    return summary(number(drafts, "s"))


def test_drafts_inherit_the_native_session_id_and_the_latest_wins() -> None:
    n = Normaliser()
    out = n.normalise(
        [session_started(), turn_started(), item_draft("item.started", "a", native_session_id="x")]
    )
    out += n.normalise([item_draft("item.completed", "a")])
    out += n.normalise([item_draft("item.started", "b", native_session_id="y"), delta("b")])
    assert [d.native_session_id for d in out] == [None, None, "x", "x", "x", "y", "y"]
    assert n.native_session_id == "y"
    assert (
        Normaliser(native_session_id="m").normalise([session_started()])[0].native_session_id == "m"
    )


def test_native_item_ids_get_stable_itm_ids() -> None:
    n = Normaliser()
    out = n.normalise(
        [
            item_draft("item.started", native="n1"),
            delta(native="n1"),
            item_draft("item.started", native="n2"),
            item_draft("item.completed", native="n1"),
        ]
    )
    out += n.normalise([delta(native="n2"), item_draft("item.completed", native="n2")])
    assert lines(out) == [
        "item.started itm_1",
        "item.delta itm_1",
        "item.started itm_2",
        "item.completed itm_1",
        "item.delta itm_2",
        "item.completed itm_2",
    ]
    assert out[0].data["item"]["native_item_id"] == "n1"


def test_items_without_any_id_each_get_a_fresh_one() -> None:
    out = Normaliser().normalise([item_draft("item.started"), item_draft("item.started")])
    assert lines(out) == ["item.started itm_1", "item.started itm_2"]


def test_ids_the_adapter_chose_are_kept_and_learnt() -> None:
    n = Normaliser()
    out = n.normalise(
        [item_draft("item.started", "mock_1_ok", "mock_1_ok"), delta(native="mock_1_ok")]
    )
    assert lines(out) == ["item.started mock_1_ok", "item.delta mock_1_ok"]


def test_new_item_ids_skip_those_already_in_the_stream() -> None:
    n = Normaliser()
    n.normalise([item_draft("item.started", "itm_5")])
    assert n.new_item_id() == "itm_6"
    assert lines(n.normalise([item_draft("item.started", native="z")])) == ["item.started itm_7"]


def test_a_known_native_parent_id_is_translated_and_others_are_kept() -> None:
    n = Normaliser()
    out = n.normalise(
        [
            item_draft("item.started", native="call"),
            item_draft("item.started", native="result", parent="call"),
            item_draft("item.started", native="orphan", parent="unknown"),
            item_draft("item.started", "own", parent="itm_1"),
        ]
    )
    assert [d.data["item"]["parent_id"] for d in out] == [None, "itm_1", "unknown", "itm_1"]


def test_a_completion_of_an_item_never_started_gets_a_synthetic_start_first() -> None:
    n = Normaliser()
    out = n.normalise([item_draft("item.completed", "t", kind="tool_call", status="failed")])
    assert lines(out) == ["item.started t", "item.completed t"]
    start, completed = out
    assert (start.source, start.synthetic) == ("daemon", True)
    assert start.data["item"] == {**completed.data["item"], "status": "in_progress"}
    assert (completed.source, completed.synthetic) == ("agent", False)


def test_a_delta_of_an_item_never_started_gets_a_stub_start_first() -> None:
    out = Normaliser().normalise([delta(native="n1", text="x")])
    assert lines(out) == ["item.started itm_1", "item.delta itm_1"]
    stub = out[0].data["item"]
    assert (stub["kind"], stub["role"], stub["status"], stub["content"]) == (
        "message",
        "assistant",
        "in_progress",
        [],
    )
    assert out[0].synthetic


def test_a_text_message_completed_without_deltas_gets_one_full_text_delta() -> None:
    completion = EventDraft(
        type="item.completed",
        data=ItemEventData(
            item=UniversalItem(
                item_id="a",
                role="system",
                content=[TextPart(text="one"), JsonPart(value=1), TextPart(text="two")],
            )
        ),
    )
    out = Normaliser().normalise([item_draft("item.started", "a"), completion])
    assert lines(out) == ["item.started a", "item.delta a", "item.completed a"]
    synthetic = out[1]
    assert synthetic.data["delta"] == "one\ntwo"
    assert (synthetic.source, synthetic.synthetic) == ("daemon", True)


@pytest.mark.parametrize(
    "completion",
    [
        item_draft("item.completed", "a", role="user"),
        item_draft("item.completed", "a", kind="system", role="system"),
        item_draft("item.completed", "a", kind="tool_result", role="tool"),
        item_draft("item.completed", "a", text=None),
        item_draft("item.completed", "a", text=""),
    ],
    ids=["user", "system-kind", "tool", "no-text", "empty-text"],
)
def test_no_synthetic_delta_for_items_that_need_none(completion: EventDraft) -> None:
    out = Normaliser().normalise([completion])
    assert [d.type for d in out] == ["item.started", "item.completed"]


def test_no_synthetic_delta_once_the_agent_sent_one() -> None:
    out = Normaliser().normalise(
        [item_draft("item.started", "a"), delta("a", text="h"), item_draft("item.completed", "a")]
    )
    assert [d.synthetic for d in out] == [False, False, False]


def test_a_second_session_started_and_a_second_item_start_are_dropped() -> None:
    n = Normaliser()
    first = n.normalise([session_started(), item_draft("item.started", "a")])
    second = n.normalise(
        [
            session_started(),
            item_draft("item.started", "a"),
            item_draft("item.completed", "a"),
            item_draft("item.started", "a"),
        ]
    )
    assert lines(first + second) == [
        "session.started",
        "item.started a",
        "item.delta a",
        "item.completed a",
    ]
    # Dropped drafts are simply not there: the store numbers what is left 1..N.
    assert [e.sequence for e in number(first + second, "s")] == [1, 2, 3, 4]


def test_a_turn_ended_outside_a_turn_is_dropped_and_inside_gets_the_turn_id() -> None:
    n = Normaliser()
    assert n.normalise([turn_ended_draft("completed")]) == []
    out = n.normalise([turn_started("t1"), turn_ended_draft("completed")])
    assert out[1].data["turn_id"] == "t1"
    assert n.normalise([turn_ended_draft("cancelled")]) == []
    assert not n.turn_open


@pytest.mark.parametrize(
    ("reason", "turn_reason"),
    [("completed", "completed"), ("error", "error"), ("terminated", "interrupted")],
)
def test_a_session_end_inside_a_turn_closes_the_turn_first(reason: str, turn_reason: str) -> None:
    n = Normaliser()
    out = n.normalise([turn_started("t"), session_ended(reason)])
    assert [d.type for d in out] == ["turn.started", "turn.ended", "session.ended"]
    assert out[1].data["reason"] == turn_reason
    assert out[1].data["turn_id"] == "t"
    assert out[1].synthetic
    assert [d.type for d in n.normalise([session_ended()])] == ["session.ended"]


@pytest.mark.parametrize("reason", ["cancelled", "error", "interrupted"])
def test_items_open_at_a_turn_end_other_than_completed_are_closed_failed(reason: str) -> None:
    # events.md invariant 10: a cancelled (timed out, failed, interrupted) turn leaves no item
    # open, so the next turn's output cannot land in one.
    n = Normaliser()
    out = n.normalise(
        [
            session_started(),
            turn_started("t"),
            item_draft("item.started", native="m", text=None),
            delta(native="m", text="Hel"),
            delta(native="m", text="lo"),
            item_draft("item.started", native="call", kind="tool_call", text="ls"),
            item_draft("item.started", native="done", text=None),
            item_draft("item.completed", native="done", text="x"),
        ]
    )
    m, call = out[2].data["item"]["item_id"], out[5].data["item"]["item_id"]
    closing = n.normalise([turn_ended_draft(reason)])
    assert [d.type for d in closing] == ["item.completed", "item.completed", "turn.ended"]
    assert all(d.synthetic and d.source == "daemon" for d in closing)
    first, second = (ItemEventData.model_validate(d.data).item for d in closing[:2])
    assert (first.item_id, first.status, first.content) == (m, "failed", [TextPart(text="Hello")])
    assert (second.item_id, second.status) == (call, "failed")
    assert second.content == [TextPart(text="ls")]  # what it started with
    stored = number(out + closing, "s")
    assert stream_violations(stored) == []
    state = replay(stored)
    assert state.item(m).text == "Hello"  # type: ignore[union-attr]
    # The next turn's text starts a new item, even under the same native id.
    after = n.normalise([turn_started("t2"), delta(native="m2", text="new")])
    assert after[1].type == "item.started" and after[1].data["item"]["item_id"] not in (m, call)


def test_items_open_at_a_completed_turn_end_are_left_to_the_agent() -> None:
    n = Normaliser()
    n.normalise([turn_started("t"), item_draft("item.started", native="m", text=None)])
    assert [d.type for d in n.normalise([turn_ended_draft("completed")])] == ["turn.ended"]


def test_a_session_end_closes_the_open_items_before_the_turn() -> None:
    n = Normaliser()
    n.normalise([turn_started("t"), item_draft("item.started", native="m", text=None)])
    out = n.normalise([session_ended("completed")])
    assert [d.type for d in out] == ["item.completed", "turn.ended", "session.ended"]
    assert out[0].data["item"]["status"] == "failed"


def test_a_normaliser_rebuilt_from_stored_events_equals_the_live_one() -> None:
    live = Normaliser()
    drafts = [
        session_started("nat"),
        turn_started("t"),
        item_draft("item.started", native="n1"),
        delta(native="n1"),
        item_draft("item.completed", native="n2"),
    ]
    stored = number(live.normalise(drafts), "s")
    rebuilt = Normaliser.from_events(stored)
    assert rebuilt == live
    assert rebuilt.native_session_id == "nat"
    assert rebuilt.turn_open
    follow = [item_draft("item.completed", native="n1"), delta(native="n3")]
    assert rebuilt.normalise(follow) == live.normalise(follow)


# -- properties ---------------------------------------------------------------------------
# A small universe of items, so that random drafts keep running into each other.
ITEMS: list[dict[str, Any]] = [
    {"item_id": "", "native": "n1", "kind": "message", "role": "assistant"},
    {"item_id": "", "native": "n2", "kind": "message", "role": "user"},
    {"item_id": "own_1", "native": "own_1", "kind": "message", "role": "assistant"},
    {"item_id": "", "native": None, "kind": "message", "role": "assistant"},
    {"item_id": "", "native": "n3", "kind": "tool_call", "role": "assistant"},
    {"item_id": "own_2", "native": None, "kind": "system", "role": "system"},
    {"item_id": "", "native": "n4", "kind": "message", "role": "system"},
    {"item_id": "own_3", "native": "n5", "kind": "message", "role": None, "parent": "n1"},
]
NON_USER = [i for i, spec in enumerate(ITEMS) if spec["role"] != "user"]


@st.composite
def agent_drafts(draw: st.DrawFn) -> EventDraft:
    choice = draw(st.sampled_from(["item"] * 6 + ["delta"] * 3 + ["other"]))
    native_session = draw(st.sampled_from([None] * 6 + ["nat-a", "nat-b"]))
    if choice == "item":
        spec = ITEMS[draw(st.integers(0, len(ITEMS) - 1))]
        return item_draft(
            draw(st.sampled_from(["item.started", "item.completed"])),
            spec["item_id"],
            spec["native"],
            kind=spec["kind"],
            role=spec["role"],
            parent=spec.get("parent"),
            text=draw(st.sampled_from([None, "", "text"])),
            native_session_id=native_session,
        )
    if choice == "delta":
        spec = ITEMS[draw(st.sampled_from(NON_USER))]
        draft = delta(spec["item_id"], spec["native"])
        return draft.model_copy(update={"native_session_id": native_session})
    return draw(
        st.sampled_from(
            [
                session_started(),
                turn_ended_draft("completed"),
                turn_ended_draft("cancelled"),
                session_ended("error"),
                EventDraft(type="error", data={"message": "boom"}),
            ]
        )
    )


@st.composite
def batches(draw: st.DrawFn) -> list[list[EventDraft]]:
    """The batches a session layer would append: session.started, then turns (each closing a
    turn left open first, as the session layer does) whose drafts arrive in random batches."""
    result: list[list[EventDraft]] = [[session_started()]]
    for _ in range(draw(st.integers(0, 4))):
        result.append([turn_ended_draft("interrupted"), turn_started()])
        drafts = draw(st.lists(agent_drafts(), max_size=12))
        while drafts:
            size = draw(st.integers(1, len(drafts)))
            result.append(drafts[:size])
            drafts = drafts[size:]
    return result


def run_all(normaliser: Normaliser, all_batches: list[list[EventDraft]]) -> list[EventDraft]:
    return [draft for batch in all_batches for draft in normaliser.normalise(batch)]


@settings(max_examples=300, deadline=None)
@given(batches())
def test_the_normalised_stream_keeps_the_invariants(all_batches: list[list[EventDraft]]) -> None:
    out = run_all(Normaliser(), all_batches)
    events = number(out, "s")
    # No second start, every delta/completion after its start, every non-user text message
    # completion after a delta, turns bracketed, sequences 1..N although drafts were dropped.
    assert stream_violations(events, lifecycle=False) == []
    assert all(e.data["item"]["item_id"] for e in events if "item" in e.data)
    assert all(e.data["item_id"] for e in events if e.type == "item.delta")
    for draft in out:
        if draft.synthetic:
            assert (draft.source, draft.raw) == ("daemon", None)


@settings(max_examples=300, deadline=None)
@given(batches())
def test_only_synthetic_drafts_are_added_and_the_rest_keep_their_order(
    all_batches: list[list[EventDraft]],
) -> None:
    given_types = [d.type for batch in all_batches for d in batch]
    kept_types = [d.type for d in run_all(Normaliser(), all_batches) if not d.synthetic]
    remaining = iter(given_types)
    assert all(t in remaining for t in kept_types), "not a subsequence of the input"


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_a_rebuilt_normaliser_continues_exactly_like_the_live_one(
    all_batches: list[list[EventDraft]], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(all_batches)))
    live = Normaliser()
    stored = number(run_all(live, all_batches[:split]), "s")
    rebuilt = Normaliser.from_events(stored)
    assert rebuilt == live
    assert run_all(rebuilt, all_batches[split:]) == run_all(live, all_batches[split:])


@settings(max_examples=300, deadline=None)
@given(batches())
def test_normalising_a_normalised_stream_changes_nothing(
    all_batches: list[list[EventDraft]],
) -> None:
    out = run_all(Normaliser(), all_batches)
    assert Normaliser().normalise(out) == out


def refers_to_forgotten_items(stream: Sequence[UniversalEvent], recent_items: int) -> bool:
    """Whether an event of ``stream`` refers to an item completed more than ``recent_items``
    completions before it."""
    completed: dict[str, None] = {}
    forgotten: set[str] = set()
    for event in stream:
        item = event.data.get("item")
        item_id = item.get("item_id") if isinstance(item, dict) else event.data.get("item_id")
        if event.type not in ("item.started", "item.delta", "item.completed"):
            continue
        if item_id in forgotten:
            return True
        if event.type == "item.completed":
            completed.pop(item_id, None)
            completed[item_id] = None
            while len(completed) > recent_items:
                oldest = next(iter(completed))
                del completed[oldest]
                forgotten.add(oldest)
    return False


@pytest.mark.parametrize("recent_items", [RECENT_ITEMS, 2])
@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_a_normaliser_built_from_a_snapshot_state_equals_the_one_folded_from_every_event(
    recent_items: int, all_batches: list[list[EventDraft]], data: st.DataObject
) -> None:
    # The session layer folds a stream once: reducer state from its newest snapshot, then the
    # normaliser from that state plus the events after it. With a small window, completed items
    # are forgotten alike either way.
    live = Normaliser(recent_items=recent_items)
    stored = number(run_all(live, all_batches), "s")
    # What the window assumes of agents: no word about an item it has forgotten.
    assume(not refers_to_forgotten_items(stored, recent_items))
    at = data.draw(st.integers(0, len(stored)))
    snapshot = SessionState.model_validate(replay(stored[:at]).to_json())
    rebuilt = Normaliser.from_state(snapshot, recent_items=recent_items)
    for event in stored[at:]:
        rebuilt.observe(event)
    assert rebuilt == live == Normaliser.from_events(stored, recent_items=recent_items)
