"""The properties of ``replay.md``, checked with hypothesis."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import (
    Replayer,
    SessionState,
    diff,
    format_diff,
    render_transcript,
    replay,
    restore_entries,
    restore_text,
)
from sandbox_agent.replay.restore import ELLIPSIS, HEADER
from sandbox_agent.testing.strategies import arbitrary_stream, good_stream

streams = st.one_of(arbitrary_stream(), good_stream())
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_by_one(events: list[UniversalEvent]) -> SessionState:
    state = SessionState()
    for event in events:
        state = replay([event], state=state)
    return state


def through_snapshot(events: list[UniversalEvent], k: int) -> SessionState:
    """Replay 1..k, save it as a snapshot would (JSON), load it, and replay the rest."""
    saved = json.loads(json.dumps(replay(events[:k]).to_json()))
    return Replayer(SessionState.model_validate(saved)).apply_all(events[k:]).finish()


@SETTINGS
@given(streams, st.data())
def test_one_go_equals_one_by_one_equals_snapshot_plus_rest(
    events: list[UniversalEvent], data: st.DataObject
) -> None:
    whole = replay(events)
    assert one_by_one(events) == whole
    k = data.draw(st.integers(0, len(events)), label="k")
    assert through_snapshot(events, k) == whole


@SETTINGS
@given(arbitrary_stream(max_size=60))
def test_replay_is_total_on_any_well_typed_stream(events: list[UniversalEvent]) -> None:
    state = replay(events)  # never raises in non-strict mode
    assert state.event_count == len(events)
    assert sum(state.counts.values()) == len(events)
    for anomaly in state.anomalies:
        assert anomaly.message


@SETTINGS
@given(streams)
def test_any_reachable_state_round_trips_through_json(events: list[UniversalEvent]) -> None:
    state = replay(events)
    assert SessionState.model_validate_json(state.model_dump_json()) == state
    assert SessionState.model_validate(json.loads(json.dumps(state.to_json()))) == state


@SETTINGS
@given(good_stream())
def test_a_well_behaved_writer_produces_no_anomaly(events: list[UniversalEvent]) -> None:
    state = replay(events, strict=True)
    assert state.anomalies == []
    assert state.status in ("idle", "ended")


@SETTINGS
@given(streams, st.data())
def test_rendering_and_diff_work_on_any_state(
    events: list[UniversalEvent], data: st.DataObject
) -> None:
    state = replay(events)
    for fmt in ("markdown", "text", "json"):
        assert render_transcript(state, fmt).endswith("\n")  # type: ignore[arg-type]
    k = data.draw(st.integers(0, len(events)), label="k")
    earlier = replay(events[:k])
    changes = diff(earlier, state)
    assert changes.events == len(events) - k
    assert format_diff(changes)
    assert diff(state, state).empty


@SETTINGS
@given(streams, st.integers(1, 12), st.integers(1, 3000))
def test_restore_text_stays_in_bounds_and_keeps_the_newest(
    events: list[UniversalEvent], max_events: int, max_chars: int
) -> None:
    state = replay(events)
    entries = restore_entries(state)
    text = restore_text(state, max_events=max_events, max_chars=max_chars)
    assert len(text) <= max_chars
    if not entries:
        assert text == ""
        return
    newest = entries[-1]
    assert text, "there is history, so something is replayed"
    if text.startswith(HEADER):
        body = text.split("\n", 1)[1]
        left_out = len(entries) - max_events
        if left_out > 0:
            assert body.startswith("["), "a line says how much was left out"
            said = int(body[1:].split(" ", 1)[0])
            assert said >= left_out
        if text.endswith(str(newest)):
            return
    # Too little room for the newest entry: its end is kept.
    assert newest.body.endswith(text.rsplit(ELLIPSIS, 1)[-1]) or str(newest).endswith(text)


@SETTINGS
@given(good_stream(), st.integers(1, 8))
def test_restore_text_drops_the_oldest_entries_first(events: list[UniversalEvent], n: int) -> None:
    state = replay(events)
    entries = restore_entries(state)
    text = restore_text(state, max_events=n, max_chars=10**6)
    kept = entries[-n:]
    assert text.endswith("\n".join(str(e) for e in kept))
    if len(entries) > n:
        assert f"[{len(entries) - n} earlier entr" in text
