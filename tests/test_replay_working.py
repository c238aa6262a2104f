"""The working replayer (``Replayer(working=True)``): what a writer keeps of a session's state
agrees with the full fold, and does not grow with the stream."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import Replayer, SessionState, replay, working_state
from sandbox_agent.testing.strategies import arbitrary_stream, good_stream
from sandbox_agent.testing.streams import Stream

streams = st.one_of(arbitrary_stream(), good_stream())
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams, st.data())
def test_the_working_state_agrees_with_the_full_fold_on_every_field_it_keeps(
    events: list[UniversalEvent], data: st.DataObject
) -> None:
    # From a snapshot anywhere (what a loaded session starts from), then event by event.
    at = data.draw(st.integers(0, len(events)))
    snapshot = SessionState.model_validate(replay(events[:at]).to_json())
    working = Replayer(snapshot, working=True)
    for end in range(at + 1, len(events) + 1):
        working.apply(events[end - 1])
        full = replay(events[:end])
        assert working.state == working_state(full)
        assert working.turn_count == len(full.turns)
    full = replay(events)
    assert working.state == working_state(full)
    assert working.turn_count == len(full.turns)
    assert working.view.status == full.status and working.view.open_turn == full.open_turn


def _session(turns: int) -> list[UniversalEvent]:
    s = Stream("s1").started("mock")
    for n in range(1, turns + 1):
        s.turn(f"t{n}").user(f"u{n}", "a question " * 20).assistant(f"a{n}", "an answer " * 50)
        s.permission(f"p{n}", "write").error(f"e{n}")
        s.add("agent.unparsed", {"error": f"bad line {n} " * 10, "location": "stdout"})
        s.turn_end(f"t{n}")
    return s.events


def test_the_working_state_does_not_grow_with_the_stream() -> None:
    sizes = [len(Replayer(working=True).apply_all(_session(n)).to_json_text()) for n in (50, 500)]
    full = [len(replay(_session(n)).to_json_text()) for n in (50, 500)]
    assert full[1] > 5 * full[0]  # the history does grow
    assert sizes[1] <= sizes[0] + 64  # counters' digits, nothing per turn


def _always_session(turns: int) -> list[UniversalEvent]:
    # The client answers "always" once; the adapter then answers every later request of the
    # same action itself (hitl.AlwaysRules): a synthetic accept_for_session from the daemon.
    s = Stream("s1").started("mock")
    s.turn("t0").permission("p0", "file_change", "accept_for_session").turn_end("t0")
    for n in range(1, turns + 1):
        s.turn(f"t{n}").permission_request(f"p{n}", "file_change")
        data = {"permission_id": f"p{n}", "action": "file_change", "status": "accept_for_session"}
        s.add("permission.resolved", data, source="daemon", synthetic=True)
        s.turn_end(f"t{n}")
    return s.events


def test_the_working_state_keeps_the_clients_always_answers_not_the_daemons() -> None:
    events = _always_session(300)
    working = Replayer(working=True).apply_all(events)
    full = replay(events)
    assert len(full.resolved_permissions) == 301  # the history keeps every answer
    assert [p.automatic for p in full.resolved_permissions.values()].count(True) == 300
    assert list(working.state.resolved_permissions) == ["p0"]  # the one rule
    assert working.state == working_state(full)
    sizes = [
        len(Replayer(working=True).apply_all(_always_session(n)).to_json_text()) for n in (30, 300)
    ]
    assert sizes[1] <= sizes[0] + 64


def _cyclic_garbage(fold: Callable[[], object]) -> Counter[str]:
    """The objects that ``fold`` leaves in reference cycles (freed only by the collector), by
    type name: collected with the collector held, then found with ``DEBUG_SAVEALL``."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        fold()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        return Counter(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


@pytest.mark.parametrize("working", [False, True])
def test_a_fold_is_freed_when_dropped_not_left_to_the_collector(working: bool) -> None:
    # A replayer kept its handlers as bound methods: every fold (the replayer and the whole
    # state it built) was a reference cycle, freed only by a full collection, so a server's
    # memory grew with the length of the sessions it folded (issue 15, the soak).
    events = _session(30)
    replay(events)  # warm-up: first-use caches are not garbage of the fold

    def fold() -> None:
        replayer = Replayer(working=working).apply_all(events)
        assert replayer.finish().event_count == len(events)

    garbage = _cyclic_garbage(fold)
    kept = {name: n for name, n in garbage.items() if name in _STATE_TYPES}
    assert not kept, f"a fold left reference cycles: {dict(garbage.most_common(10))}"


_STATE_TYPES = {"Replayer", "SessionState", "ItemState", "TurnState", "PermissionState", "method"}
