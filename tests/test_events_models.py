"""Behaviour of the event schema models (``events.md``): what a newer writer adds is kept,
known payloads are validated and canonical, times and ids have one wire form, and drafts and
events convert into each other."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from ulid import ULID

from sandbox_agent.events import (
    KNOWN_EVENT_TYPES,
    EventDraft,
    ItemDeltaData,
    JsonPart,
    UniversalEvent,
    UniversalItem,
    UnknownEventData,
    format_time,
    new_event_id,
)
from sandbox_agent.events.parts import KNOWN_PART_TYPES

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
JSON_OBJECTS = st.dictionaries(st.text(), JSON_VALUES, max_size=6)
UNKNOWN_EVENT_TYPES = st.text().filter(lambda name: name not in KNOWN_EVENT_TYPES)
UNKNOWN_PART_TYPES = st.text().filter(lambda name: name not in KNOWN_PART_TYPES)
OFFSETS = st.integers(-23 * 60 + 1, 23 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
AWARE_TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)

RFC3339_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
EVENT_ID = re.compile(r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")  # Crockford base32, as ULIDs are written
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def as_json(value: Any) -> str:
    # Compare JSON text, not Python values: 1 == 1.0 == True in Python, not on the wire.
    return json.dumps(value, sort_keys=True)


def stored(draft: EventDraft, sequence: int = 1) -> UniversalEvent:
    return draft.to_event(session_id="ses_1", sequence=sequence, event_id="evt_1", time=T0)


def envelope(**changes: Any) -> dict[str, Any]:
    """The fields of a valid stored event, with ``changes``."""
    base = {"event_id": "evt_1", "sequence": 1, "time": T0, "session_id": "ses_1"}
    return {**base, "source": "agent", "type": "x", "data": {}, **changes}


# --- what a newer writer adds is kept ----------------------------------------------------------


@given(event_type=UNKNOWN_EVENT_TYPES, data=JSON_OBJECTS, raw=JSON_VALUES)
def test_unknown_event_type_round_trips_unchanged(
    event_type: str, data: dict[str, Any], raw: Any
) -> None:
    draft = EventDraft(type=event_type, data=data, raw=raw)
    event = stored(draft)

    assert as_json(draft.data) == as_json(data)
    assert EventDraft.model_validate(draft.model_dump()) == draft
    assert EventDraft.model_validate_json(draft.model_dump_json()) == draft
    again = UniversalEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert as_json(again.data) == as_json(data)
    assert as_json(again.raw) == as_json(raw)
    typed = again.typed_data()
    assert isinstance(typed, UnknownEventData)
    assert as_json(typed.model_dump()) == as_json(data)


@given(part_type=UNKNOWN_PART_TYPES, fields=JSON_OBJECTS)
def test_unknown_content_part_type_round_trips_unchanged(
    part_type: str, fields: dict[str, Any]
) -> None:
    part = {**fields, "type": part_type}
    text = {"type": "text", "text": "before"}
    draft = EventDraft(
        type="item.completed", data={"item": {"item_id": "itm_1", "content": [text, part]}}
    )

    assert draft.data["item"]["content"] == [text, part]
    assert as_json(draft.data["item"]["content"][1]) == as_json(part)
    item = UniversalItem.model_validate(draft.data["item"])
    assert as_json(item.model_dump(mode="json", by_alias=True)["content"]) == as_json([text, part])
    again = UniversalEvent.model_validate_json(stored(draft).model_dump_json())
    assert as_json(again.data["item"]["content"][1]) == as_json(part)


def test_unknown_fields_survive_in_payloads_items_and_parts() -> None:
    draft = EventDraft(
        type="session.ended",
        data={
            "reason": "error",
            "terminated_by": "daemon",
            "stderr": {"head": "boom", "truncated": False, "encoding": "utf-8"},
            "signal": "SIGKILL",
        },
    )
    item_draft = EventDraft(
        type="item.started",
        data={
            "item": {
                "item_id": "itm_1",
                "kind": "memory",
                "role": "planner",
                "status": "paused",
                "priority": 3,
                "content": [{"type": "text", "text": "hi", "lang": "en"}],
            },
            "cause": "resume",
        },
    )

    for draft_ in (draft, item_draft):
        again = UniversalEvent.model_validate_json(stored(draft_).model_dump_json())
        assert again.data == draft_.data
    assert draft.data["signal"] == "SIGKILL"
    assert draft.data["stderr"]["encoding"] == "utf-8"
    assert item_draft.data["cause"] == "resume"
    item = item_draft.data["item"]
    assert (item["kind"], item["role"], item["status"]) == ("memory", "planner", "paused")
    assert item["priority"] == 3
    assert item["content"] == [{"type": "text", "text": "hi", "lang": "en"}]


# --- known payloads: validated, canonical -------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("item.delta", {"delta": "no item id"}),
        ("item.delta", {"item_id": "itm_1"}),
        ("item.completed", {"item": {"content": []}}),
        ("item.completed", {"item": {"item_id": "itm_1", "content": [{"type": "text"}]}}),
        (
            "item.completed",
            {
                "item": {
                    "item_id": "i",
                    "content": [{"type": "file_ref", "path": "a", "action": "rm"}],
                }
            },
        ),
        ("item.started", {"item": {"item_id": "itm_1", "content": [{"text": "no type"}]}}),
        ("session.ended", {"terminated_by": "agent"}),
        ("permission.requested", {"action": "bash", "status": "requested"}),
        ("question.requested", {"question_id": "q", "prompt": "?", "options": "yes"}),
        ("turn.ended", {"phase": "started"}),
        ("error", {"code": "E1"}),
        ("agent.unparsed", {"error": "bad json"}),
    ],
)
def test_a_known_payload_that_breaks_its_model_is_rejected_at_draft_creation(
    event_type: str, data: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        EventDraft(type=event_type, data=data)


def test_a_stored_event_with_a_bad_known_payload_fails_only_when_typed() -> None:
    # Readers take stored events as they are (nothing is lost); writers are the strict side.
    event = UniversalEvent.model_validate(envelope(type="item.delta", data={"delta": "x"}))
    with pytest.raises(ValidationError):
        event.typed_data()


def test_equivalent_known_payloads_normalise_to_the_same_canonical_json() -> None:
    spellings = [
        EventDraft(type="item.delta", data={"item_id": "itm_1", "delta": "hi"}),
        EventDraft(
            type="item.delta", data={"delta": "hi", "native_item_id": None, "item_id": "itm_1"}
        ),
        EventDraft(type="item.delta", data=ItemDeltaData(item_id="itm_1", delta="hi")),
        EventDraft.model_validate_json(
            '{"type": "item.delta", "data": {"delta": "hi", "item_id": "itm_1"}}'
        ),
    ]

    # Key order too: equal drafts must encode to equal bytes (idempotent appends compare them).
    texts = {json.dumps(draft.data) for draft in spellings}
    assert texts == {'{"item_id": "itm_1", "native_item_id": null, "delta": "hi"}'}


def test_normalisation_fills_defaults_down_to_items_and_parts() -> None:
    draft = EventDraft(
        type="item.completed",
        data={"item": {"item_id": "itm_1", "content": [{"type": "reasoning", "text": "hmm"}]}},
    )
    assert draft.data == {
        "item": {
            "item_id": "itm_1",
            "native_item_id": None,
            "parent_id": None,
            "kind": "message",
            "role": None,
            "status": "in_progress",
            "content": [{"type": "reasoning", "text": "hmm", "visibility": "public"}],
        }
    }
    assert EventDraft(type="turn.started").data == {
        "phase": "started",
        "turn_id": None,
        "metadata": None,
    }


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("session.started", {"metadata": {"agent": "mock", "model": None}}),
        ("session.resumed", {"reason": "reopened"}),
        ("turn.ended", {"reason": "cancelled", "turn_id": "t1"}),
        ("item.completed", {"item": {"item_id": "i", "content": [{"type": "json", "json": [1]}]}}),
        ("permission.resolved", {"permission_id": "p", "action": "bash", "status": "reject"}),
        ("question.resolved", {"question_id": "q", "prompt": "?", "status": "answered"}),
        ("error", {"message": "m", "details": {"x": [1, 2]}}),
        ("agent.unparsed", {"error": "e", "location": "stdout:3"}),
    ],
)
def test_normalisation_is_idempotent(event_type: str, data: dict[str, Any]) -> None:
    once = EventDraft(type=event_type, data=data)
    twice = EventDraft(type=event_type, data=once.data)

    assert json.dumps(twice.data) == json.dumps(once.data)


def test_json_part_is_written_and_read_under_its_wire_name_json() -> None:
    payload = {"k": [1, {"n": None}]}
    part = JsonPart.model_validate({"type": "json", "json": payload})
    draft = EventDraft(type="item.completed", data={"item": {"item_id": "i", "content": [part]}})

    assert part.value == payload
    assert part.model_dump(mode="json", by_alias=True) == {"type": "json", "json": payload}
    assert draft.data["item"]["content"] == [{"type": "json", "json": payload}]
    wire = json.loads(stored(draft).model_dump_json())
    assert wire["data"]["item"]["content"] == [{"type": "json", "json": payload}]
    item = UniversalItem.model_validate(wire["data"]["item"])
    assert isinstance(item.content[0], JsonPart)
    assert item.content[0].value == payload


# --- time and ids ---------------------------------------------------------------------------


def test_time_is_written_as_rfc3339_utc_with_microseconds_even_when_zero() -> None:
    event = stored(EventDraft(type="error", data={"message": "m"}))
    plus_two = datetime(2026, 1, 2, 5, 4, 5, 7, tzinfo=timezone(timedelta(hours=2)))

    assert event.model_dump(mode="json")["time"] == "2026-01-02T03:04:05.000000Z"
    assert json.loads(event.model_dump_json())["time"] == "2026-01-02T03:04:05.000000Z"
    draft = EventDraft(type="x", time=plus_two)
    assert draft.model_dump(mode="json")["time"] == "2026-01-02T03:04:05.000007Z"


@given(moment=AWARE_TIMES, other=AWARE_TIMES)
def test_time_text_has_one_width_reads_back_as_the_same_instant_and_sorts_as_time(
    moment: datetime, other: datetime
) -> None:
    text = format_time(moment)

    assert RFC3339_UTC_MICROS.match(text), text
    assert datetime.fromisoformat(text) == moment
    assert (text < format_time(other)) == (moment < other)
    draft = EventDraft(type="x", time=moment)
    assert EventDraft.model_validate_json(draft.model_dump_json()).time == moment


@pytest.mark.parametrize("naive", [datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"])
def test_naive_times_are_rejected(naive: datetime | str) -> None:
    with pytest.raises(ValidationError):
        EventDraft(type="x", time=naive)
    with pytest.raises(ValidationError):
        UniversalEvent.model_validate(envelope(time=naive))


def test_new_event_id_is_evt_and_a_ulid_of_now() -> None:
    before = datetime.now(UTC)
    event_id = new_event_id()
    after = datetime.now(UTC)

    assert EVENT_ID.match(event_id), event_id
    made = ULID.from_str(event_id.removeprefix("evt_")).datetime
    # ULIDs keep milliseconds.
    assert before - timedelta(milliseconds=1) <= made <= after


def test_event_ids_sort_in_the_order_they_were_made() -> None:
    ids: list[str] = []
    for _ in range(5):
        ids.extend(new_event_id() for _ in range(200))
        time.sleep(0.002)  # and across milliseconds

    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


# --- drafts and events ------------------------------------------------------------------------


def test_event_to_draft_and_back_gives_the_same_event() -> None:
    event = UniversalEvent.model_validate(
        envelope(
            event_id="evt_01KB0000000000000000000000",
            sequence=7,
            native_session_id="native-1",
            source="daemon",
            synthetic=True,
            type="turn.ended",
            data={"phase": "ended", "turn_id": "t1", "reason": "interrupted", "metadata": None},
            raw={"native": [1, 2]},
        )
    )

    draft = EventDraft.from_event(event)
    assert (draft.event_id, draft.time, draft.raw) == (event.event_id, event.time, event.raw)
    assert EventDraft.model_validate(draft.model_dump()) == draft  # a valid, canonical draft
    assert draft.event_id is not None
    assert draft.time is not None
    back = draft.to_event(
        session_id=event.session_id,
        sequence=event.sequence,
        event_id=draft.event_id,
        time=draft.time,
    )
    assert back == event
    assert back.model_dump_json() == event.model_dump_json()


@given(event_type=UNKNOWN_EVENT_TYPES, data=JSON_OBJECTS, raw=JSON_VALUES, sequence=st.integers(1))
def test_draft_to_event_to_draft_keeps_everything(
    event_type: str, data: dict[str, Any], raw: Any, sequence: int
) -> None:
    draft = EventDraft(
        type=event_type,
        data=data,
        raw=raw,
        source="client",
        event_id="evt_x",
        time=T0,
        native_session_id="n",
    )
    event = draft.to_event(session_id="s", sequence=sequence, event_id="evt_x", time=T0)

    assert UniversalEvent.model_validate_json(event.model_dump_json()) == event
    assert EventDraft.from_event(event) == draft
