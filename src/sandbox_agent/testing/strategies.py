"""Hypothesis strategies: drafts of every kind, valid session streams as agents produce them,
and arbitrary (anomalous) streams.

- ``drafts()``: ``EventDraft``s of a few kinds with odd text, raw payloads, native ids and times;
  ``draft_specs`` and ``make_draft`` are the same as plain tuples (the state machine uses them).
- ``good_stream()``: a stream a correct writer could produce (turns, prompts, streamed answers,
  tools, permissions, questions, errors, an optional end and resume).
- ``arbitrary_stream()``: well-typed events in any order: valid and broken payloads, gaps,
  repeats, foreign session ids (what a replay must survive).
- ``event_payload()``: a ``(type, data)`` pair, mostly valid, some malformed or unknown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.testing.streams import Stream, make_event

__all__ = [
    "DRAFT_KINDS",
    "ITEM_IDS",
    "TEXT",
    "arbitrary_stream",
    "draft_specs",
    "drafts",
    "event_payload",
    "good_stream",
    "make_draft",
]

ITEM_IDS = ["i1", "i2", "i3"]
TEXT = st.text(alphabet="abc xyz\n", max_size=12)


@st.composite
def event_payload(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A (type, data) pair: mostly valid payloads of every type, some malformed or unknown."""
    kind = draw(
        st.sampled_from(
            [
                "session.started",
                "session.ended",
                "session.resumed",
                "turn.started",
                "turn.ended",
                "item.started",
                "item.delta",
                "item.delta",
                "item.completed",
                "permission.requested",
                "permission.resolved",
                "question.requested",
                "question.resolved",
                "error",
                "agent.unparsed",
                "x.future_type",
                "malformed",
            ]
        )
    )
    item_id = draw(st.sampled_from(ITEM_IDS))
    role = draw(st.sampled_from(["user", "assistant", "tool", None]))
    parts = draw(
        st.lists(
            st.one_of(
                st.builds(lambda t: {"type": "text", "text": t}, TEXT),
                st.builds(
                    lambda t: {"type": "reasoning", "text": t, "visibility": "private"}, TEXT
                ),
                st.just({"type": "tool_call", "name": "ls", "arguments": "{}", "call_id": "c"}),
                st.just({"type": "hologram", "depth": 3}),
            ),
            max_size=3,
        )
    )
    turn_id = draw(st.sampled_from([None, "t1", "t2"]))
    pid = draw(st.sampled_from(["p1", "p2"]))
    qid = draw(st.sampled_from(["q1", "q2"]))
    payloads: dict[str, dict[str, Any]] = {
        "session.started": {
            "metadata": {"agent": "mock", "model": draw(st.sampled_from(["m1", None]))}
        },
        "session.ended": {"reason": "completed", "terminated_by": "agent"},
        "session.resumed": {"reason": "reopened", "native_resume": False, "replayed_events": 2},
        "turn.started": {"phase": "started", "turn_id": turn_id},
        "turn.ended": {"phase": "ended", "turn_id": turn_id, "reason": "completed"},
        "item.started": {"item": {"item_id": item_id, "role": role, "content": parts}},
        "item.delta": {"item_id": item_id, "delta": draw(TEXT)},
        "item.completed": {
            "item": {"item_id": item_id, "role": role, "status": "completed", "content": parts}
        },
        "permission.requested": {"permission_id": pid, "action": "run", "status": "requested"},
        "permission.resolved": {"permission_id": pid, "action": "run", "status": "accept"},
        "question.requested": {"question_id": qid, "prompt": "why?", "status": "requested"},
        "question.resolved": {
            "question_id": qid,
            "prompt": "why?",
            "status": "answered",
            "response": "because",
        },
        "error": {"message": draw(TEXT), "code": None, "details": {"n": 1}},
        "agent.unparsed": {"error": "bad json", "location": "stdout"},
        "x.future_type": {"anything": [1, "two"]},
    }
    if kind == "malformed":
        broken = draw(st.sampled_from(sorted(payloads)))
        garbages: list[dict[str, Any]] = [
            {},
            {"item": 5},
            {"item_id": 3, "delta": None},
            {"message": 7},
        ]
        garbage = draw(st.sampled_from(garbages))
        return broken, garbage
    return kind, payloads[kind]


#: The kinds ``drafts`` makes: a delta, the two that change a session's status, an unknown one.
DRAFT_KINDS = ["item.delta", "session.ended", "session.resumed", "x.future"]

times = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)
raws = st.sampled_from([None, 42, -7, 3.5, "text", "12", True, [1, "x"], {"k": [None]}]) | (
    st.dictionaries(st.text(max_size=3), st.integers() | st.booleans() | st.none(), max_size=2)
)
#: A draft as a tuple: kind, text, native session id, time (None: the store picks), synthetic,
#: raw. ``make_draft`` turns one into an ``EventDraft``.
draft_specs = st.tuples(
    st.sampled_from(DRAFT_KINDS),
    st.text(max_size=6),
    st.none() | st.sampled_from(["n1", "n2"]),
    st.none() | times,
    st.booleans(),
    raws,
)


def make_draft(event_id: str, spec: tuple[Any, ...]) -> EventDraft:
    """The ``EventDraft`` of a ``draft_specs`` tuple, with ``event_id``."""
    kind, text, native, time, synthetic, raw = spec
    data: dict[str, Any] = {
        "item.delta": {"item_id": "i", "delta": text},
        "session.ended": {"reason": "completed", "terminated_by": "agent", "message": text},
        "session.resumed": {"reason": "reopened", "native_resume": bool(text)},
        "x.future": {"text": text, "list": [text, None, 1.5]},
    }[kind]
    return EventDraft(
        type=kind,
        data=data,
        event_id=event_id,
        native_session_id=native,
        time=time,
        synthetic=synthetic,
        raw=raw,
    )


@st.composite
def drafts(draw: st.DrawFn) -> EventDraft:
    """An ``EventDraft`` of one of ``DRAFT_KINDS``, with an event id of its own."""
    event_id = draw(st.uuids()).hex
    return make_draft(f"evt_{event_id}", draw(draft_specs))


@st.composite
def arbitrary_stream(draw: st.DrawFn, max_size: int = 40) -> list[UniversalEvent]:
    """Well-typed events in any order: valid and broken payloads, gaps, repeats, foreign ids."""
    pairs = draw(st.lists(event_payload(), max_size=max_size))
    events = []
    for number, (kind, data) in enumerate(pairs, start=1):
        sequence = (
            draw(st.one_of(st.just(number), st.integers(1, max_size + 2)))
            if draw(st.integers(0, 9)) == 0
            else number
        )
        session = "s2" if draw(st.integers(0, 29)) == 0 else "s1"
        events.append(make_event(session, sequence, kind, data))
    return events


@st.composite
def good_stream(draw: st.DrawFn) -> list[UniversalEvent]:
    """A stream a correct writer could produce: turns with prompts, streamed answers, tools,
    permissions and questions, errors, an optional end and resume."""
    s = Stream("s1").started("mock")
    counter = 0

    def new_id(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"

    for _ in range(draw(st.integers(0, 4))):
        turn_id = new_id("t")
        s.turn(turn_id).user(new_id("u"), draw(TEXT))
        for _ in range(draw(st.integers(0, 4))):
            step = draw(st.sampled_from(["answer", "tool", "permission", "question", "error"]))
            if step == "answer":
                chunks = draw(st.lists(TEXT.filter(bool), min_size=1, max_size=4))
                s.assistant(new_id("a"), *chunks)
            elif step == "tool":
                call = new_id("call")
                s.tool_call(new_id("c"), "bash", {"cmd": draw(TEXT)}, call)
                s.tool_result(new_id("r"), call, draw(TEXT))
            elif step == "permission":
                s.permission(new_id("p"), "write", draw(st.sampled_from(["accept", "reject"])))
            elif step == "question":
                qid = new_id("q")
                s.question_ask(qid, "which?", ["a", "b"])
                s.question_answer(qid, "which?", draw(st.sampled_from(["a", "b", None])))
            else:
                s.error(draw(TEXT) or "boom")
        s.turn_end(turn_id, draw(st.sampled_from(["completed", "cancelled", "error"])))
    if draw(st.booleans()):
        s.ended()
        if draw(st.booleans()):
            s.add("session.resumed", {"reason": "reopened"}, source="daemon")
    return s.events
