"""The reducer on hand-written streams: the state it builds and each anomaly at its sequence."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import (
    ANOMALY_KINDS,
    InvariantViolation,
    Replayer,
    SessionState,
    replay,
)

from replay_helpers import Stream, canonical_session, make_event


def kinds(state: SessionState) -> list[tuple[int, str]]:
    return [(a.sequence, a.kind) for a in state.anomalies]


# -- the state ----------------------------------------------------------------------------------
def test_canonical_session_replays_without_anomalies_and_with_every_field() -> None:
    state = replay(canonical_session().events)
    assert state.anomalies == []
    assert (state.session_id, state.agent, state.agent_mode, state.model) == (
        "s1",
        "mock",
        "build",
        "mock-1",
    )
    assert state.title == "Fix the greeting"
    assert state.status == "ended"
    assert state.ended is not None and state.ended.exit_code == 0
    assert state.last_sequence == state.event_count == 32
    assert state.counts["item.delta"] == 5
    assert [t.reason for t in state.turns] == ["completed", "completed"]
    assert state.turns[0].duration_seconds == pytest.approx(4.5)
    assert state.resolved_permissions["p1"].status == "accept"
    assert state.resolved_questions["q1"].response == "pytest"
    assert [e.code for e in state.errors] == ["rate_limit"]
    assert [i.item_id for i in state.items] == ["u1", "r1", "c1", "c1r", "c2r", "a1", "u2", "a2"]
    a1 = state.item("a1")
    assert a1 is not None
    assert (a1.text, a1.delta_count, a1.status) == (
        "Fixed: the greeting now says hello.",
        2,
        "completed",
    )
    assert (a1.first_sequence, a1.started_sequence, a1.completed_sequence) == (16, 16, 19)


def test_status_follows_turns_hitl_end_and_resume() -> None:
    s = Stream().started()
    seen = []

    def status() -> None:
        seen.append(replay(s.events).status)

    status()
    s.turn("t1")
    status()
    s.permission_request("p1", "run ls")
    status()
    s.permission_resolve("p1", "run ls", "accept")
    status()
    s.question_ask("q1", "ok?")
    status()
    s.question_answer("q1", "ok?", None)
    s.turn_end("t1")
    status()
    s.ended()
    status()
    s.add("session.resumed", {"reason": "reopened"}, source="daemon")
    status()
    assert seen == [
        "idle",
        "running",
        "awaiting_input",
        "running",
        "awaiting_input",
        "idle",
        "ended",
        "idle",
    ]
    state = replay(s.events)
    assert state.ended is None and [r.reason for r in state.resumes] == ["reopened"]
    assert state.resolved_questions["q1"].status == "rejected"


def test_deltas_build_the_text_until_the_completion_replaces_it() -> None:
    s = Stream().started().turn().item_start("a1").delta("a1", "Hel").delta("a1", "lo")
    streaming = replay(s.events).item("a1")
    assert streaming is not None and (streaming.text, streaming.status) == ("Hello", "in_progress")
    s.item_done("a1", [{"type": "text", "text": "Hello, world."}])
    done = replay(s.events).item("a1")
    assert done is not None
    assert (done.text, done.delta_count, done.status) == ("Hello, world.", 2, "completed")
    assert done.content == [{"type": "text", "text": "Hello, world."}]


def test_deltas_fold_the_same_whether_read_between_them_or_not() -> None:
    s = Stream().started().turn().item_start("a1")
    replayer = Replayer()
    replayer.apply_all(s.events)
    for number, chunk in enumerate(["a", "b", "c"]):
        replayer.apply(s.add("item.delta", {"item_id": "a1", "delta": chunk}))
        if number == 1:
            assert replayer.state.item("a1").text == "ab"  # type: ignore[union-attr]
    assert replayer.finish() == replay(s.events)


def test_unparsed_keeps_a_count_and_the_newest_entries() -> None:
    s = Stream().started()
    for n in range(25):
        s.add("agent.unparsed", {"error": f"bad {n}", "location": "stdout"})
    state = replay(s.events)
    assert state.unparsed_count == 25
    assert [u.error for u in state.unparsed] == [f"bad {n}" for n in range(5, 25)]


def test_unknown_event_types_are_counted_not_flagged() -> None:
    s = Stream().started()
    s.add("x.future", {"whatever": 1})
    state = replay(s.events)
    assert state.counts["x.future"] == 1 and state.anomalies == []


def test_native_session_id_comes_from_the_envelope() -> None:
    s = Stream().started()
    event = s.add("turn.started", {"turn_id": "t1"})
    s.events[-1] = UniversalEvent(**{**event.model_dump(), "native_session_id": "n-1"})
    assert replay(s.events).native_session_id == "n-1"


def test_replay_leaves_the_starting_state_unchanged() -> None:
    s = Stream().started().turn()
    start = replay(s.events[:1])
    copy = start.model_copy(deep=True)
    replay(s.events[1:], state=start)
    replay([s.events[1]], state=start)
    assert start == copy


def test_a_finished_replayer_cannot_be_reused() -> None:
    replayer = Replayer()
    replayer.finish()
    with pytest.raises(RuntimeError):
        replayer.apply(Stream().started().events[0])


# -- anomalies ----------------------------------------------------------------------------------
def _started() -> Stream:
    return Stream().started()


def stream_gap() -> Stream:
    s = _started().turn("t1")
    s.add("turn.ended", {"turn_id": "t1"}, sequence=5)
    return s


def stream_repeat() -> Stream:
    s = _started().turn("t1")
    s.add("turn.ended", {"turn_id": "t1"}, sequence=2)
    return s


def stream_foreign() -> Stream:
    s = _started()
    s.events.append(make_event("other", 2, "error", {"message": "x"}))
    return s


def stream_malformed() -> Stream:
    s = _started()
    s.events.append(make_event("s1", 2, "item.started", {"item": {"kind": "message"}}))
    s.events.append(make_event("s1", 3, "item.delta", {"item_id": 7, "delta": "x"}))
    s.events.append(make_event("s1", 4, "error", {"code": "no message"}))
    return s


def stream_missing_start() -> Stream:
    return Stream().turn("t1").started()


def stream_started_twice() -> Stream:
    return _started().started()


def stream_after_end() -> Stream:
    s = _started().ended().turn("t1")
    s.add("session.resumed", {"reason": "reopened"})
    return s.turn_end("t1").turn("t2")  # after the resume, events are fine again


def stream_item_started_twice() -> Stream:
    return _started().turn().item_start("a1").item_start("a1")


def stream_delta_before_start() -> Stream:
    return _started().turn().delta("a1", "x").delta("a1", "y").item_start("a1")


def stream_delta_after_completion() -> Stream:
    return _started().turn().assistant("a1", "x").delta("a1", "late")


def stream_user_item_with_delta() -> Stream:
    return _started().turn().item_start("u1", "user").delta("u1", "x").delta("u1", "y")


def stream_completed_without_start() -> Stream:
    s = _started().turn()
    part = {"type": "tool_call", "name": "ls", "arguments": "{}", "call_id": "c"}
    return s.item_done("c1", [part], kind="tool_call")


def stream_completed_twice() -> Stream:
    s = _started().turn().assistant("a1", "x")
    return s.item_done("a1", [{"type": "text", "text": "x"}])


def stream_completed_without_delta() -> Stream:
    s = _started().turn().item_start("a1")
    return s.item_done("a1", [{"type": "text", "text": "all at once"}])


def stream_turn_while_running() -> Stream:
    return _started().turn("t1").turn("t2")


def stream_turn_end_without_start() -> Stream:
    return _started().turn_end("t1")


def stream_turn_id_mismatch() -> Stream:
    return _started().turn("t1").turn_end("t2")


def stream_turn_open_at_end() -> Stream:
    return _started().turn("t1").ended()


def stream_permission_twice() -> Stream:
    return _started().permission_request("p1", "x").permission_request("p1", "x")


def stream_permission_unknown() -> Stream:
    return _started().permission_resolve("p9", "x", "accept")


def stream_permission_resolved_twice() -> Stream:
    return _started().permission("p1", "x").permission_resolve("p1", "x", "reject")


def stream_question_twice() -> Stream:
    return _started().question_ask("q1", "?").question_ask("q1", "?")


def stream_question_unknown() -> Stream:
    return _started().question_answer("q9", "?", "a")


def stream_question_resolved_twice() -> Stream:
    return (
        _started()
        .question_ask("q1", "?")
        .question_answer("q1", "?", "a")
        .question_answer("q1", "?", "b")
    )


def stream_queued_twice() -> Stream:
    return _started().turn("t1").queued("q_1").queued("q_1")


def stream_dequeued_unknown() -> Stream:
    return _started().turn("t1").queued("q_1").dequeued("q_2", "cancelled")


ANOMALY_STREAMS: dict[str, tuple[Callable[[], Stream], list[tuple[int, str]]]] = {
    "sequence_gap": (stream_gap, [(5, "sequence_gap")]),
    "sequence_repeat": (stream_repeat, [(2, "sequence_repeat")]),
    "foreign_session": (stream_foreign, [(2, "foreign_session")]),
    "malformed_event": (
        stream_malformed,
        [(2, "malformed_event"), (3, "malformed_event"), (4, "malformed_event")],
    ),
    "missing_session_started": (
        stream_missing_start,
        [(1, "missing_session_started"), (2, "session_started_not_first")],
    ),
    "session_started_twice": (stream_started_twice, [(2, "session_started_twice")]),
    "event_after_session_ended": (stream_after_end, [(3, "event_after_session_ended")]),
    "item_started_twice": (stream_item_started_twice, [(4, "item_started_twice")]),
    "delta_before_start": (
        stream_delta_before_start,
        [(3, "delta_before_start"), (5, "item_started_late")],
    ),
    "delta_after_completion": (stream_delta_after_completion, [(6, "delta_after_completion")]),
    "user_item_with_delta": (stream_user_item_with_delta, [(4, "user_item_with_delta")]),
    "completed_without_start": (stream_completed_without_start, [(3, "completed_without_start")]),
    "item_completed_twice": (stream_completed_twice, [(6, "item_completed_twice")]),
    "completed_without_delta": (stream_completed_without_delta, [(4, "completed_without_delta")]),
    "turn_started_while_running": (stream_turn_while_running, [(3, "turn_started_while_running")]),
    "turn_ended_without_start": (stream_turn_end_without_start, [(2, "turn_ended_without_start")]),
    "turn_id_mismatch": (stream_turn_id_mismatch, [(3, "turn_id_mismatch")]),
    "turn_open_at_session_end": (stream_turn_open_at_end, [(3, "turn_open_at_session_end")]),
    "permission_requested_twice": (stream_permission_twice, [(3, "permission_requested_twice")]),
    "resolved_unknown_permission": (
        stream_permission_unknown,
        [(2, "resolved_unknown_permission")],
    ),
    "permission_resolved_twice": (
        stream_permission_resolved_twice,
        [(4, "permission_resolved_twice")],
    ),
    "question_requested_twice": (stream_question_twice, [(3, "question_requested_twice")]),
    "resolved_unknown_question": (stream_question_unknown, [(2, "resolved_unknown_question")]),
    "question_resolved_twice": (stream_question_resolved_twice, [(4, "question_resolved_twice")]),
    "prompt_queued_twice": (stream_queued_twice, [(4, "prompt_queued_twice")]),
    "dequeued_unknown_prompt": (stream_dequeued_unknown, [(4, "dequeued_unknown_prompt")]),
}


def test_the_queue_holds_the_prompts_waiting_in_order_until_they_leave_it() -> None:
    s = _started().turn("t1").queued("q_1", "one").queued("q_2", "two").queued("q_3", "three")
    waiting = replay(s.events)
    assert [(p.queue_id, p.message, p.queued_sequence) for p in waiting.queued] == [
        ("q_1", "one", 3),
        ("q_2", "two", 4),
        ("q_3", "three", 5),
    ]
    assert waiting.queued_count == 3 and waiting.status == "running"
    s.dequeued("q_2", "cancelled").turn_end("t1").dequeued("q_1", "started").turn("t2")
    state = replay(s.events)
    assert [p.queue_id for p in state.queued] == ["q_3"] and state.anomalies == []
    # A snapshot keeps the queue.
    assert SessionState.model_validate(state.to_json()).queued == state.queued


@pytest.mark.parametrize("name", sorted(ANOMALY_STREAMS))
def test_each_broken_invariant_is_found_at_its_sequence(name: str) -> None:
    build, expected = ANOMALY_STREAMS[name]
    state = replay(build().events)
    assert kinds(state) == expected
    assert all(a.message for a in state.anomalies)


def test_every_anomaly_kind_has_a_hand_written_stream() -> None:
    found = {kind for _, expected in ANOMALY_STREAMS.values() for _, kind in expected}
    assert found == set(ANOMALY_KINDS)


@pytest.mark.parametrize("name", sorted(ANOMALY_STREAMS))
def test_strict_mode_raises_at_the_first_anomaly(name: str) -> None:
    build, expected = ANOMALY_STREAMS[name]
    with pytest.raises(InvariantViolation) as caught:
        replay(build().events, strict=True)
    assert (caught.value.anomaly.sequence, caught.value.anomaly.kind) == expected[0]


def test_strict_mode_accepts_a_good_stream() -> None:
    assert replay(canonical_session().events, strict=True).anomalies == []


def test_a_gap_says_which_sequences_are_missing() -> None:
    (anomaly,) = replay(stream_gap().events).anomalies
    assert "3..4 missing" in anomaly.message


def test_a_late_delta_does_not_change_the_completed_text() -> None:
    item = replay(stream_delta_after_completion().events).item("a1")
    assert item is not None and item.text == "x"


def test_a_delta_before_start_still_keeps_its_text() -> None:
    item = replay(stream_delta_before_start().events).item("a1")
    assert item is not None and item.text == "xy" and item.started_sequence == 5


def test_the_view_is_the_live_state_without_a_copy() -> None:
    s = canonical_session()
    replayer = Replayer().apply_all(s.events[:5])
    view = replayer.view
    assert view == replay(s.events[:5])
    replayer.apply_all(s.events[5:])
    assert replayer.view is view and view == replay(s.events)
