"""Rows decode into exactly the events that ``UniversalEvent`` validation gives: a page
validated as a whole (``decode_rows``) accepts what one ``model_validate`` per row accepts,
refuses what it refuses, and builds equal events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import to_json

from sandbox_agent.store.codec import (
    _events,
    decode_event,
    decode_positioned_rows,
    decode_rows,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
times = st.one_of(
    aware,
    aware.map(lambda t: t.astimezone(timezone(timedelta(hours=5)))),
    aware.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    aware.map(lambda t: t.replace(tzinfo=None)),  # naive: made UTC (asyncpg's edge values)
    st.sampled_from(["", "yesterday", "2026-13-01T00:00:00Z"]),
)
rows = st.tuples(
    st.integers(min_value=-1, max_value=10**12) | st.sampled_from(["3", "x", 2.5]),
    st.text(max_size=8) | st.none(),
    times,
    st.sampled_from(["item.delta", "session.ended", "x.future", ""]) | st.integers(),
    st.sampled_from(["agent", "daemon", "client", "other"]),
    st.sampled_from([True, False, 0, 1, 2, "yes"]),
    st.none() | st.text(max_size=5),
    st.dictionaries(st.text(max_size=3), json_values, max_size=3).map(lambda d: to_json(d))
    | json_values.map(lambda v: to_json(v).decode())
    | st.just("{not json"),
    st.none() | json_values.map(lambda v: to_json(v).decode()) | st.just("]"),
)


def per_row(row: tuple[Any, ...]) -> Any:
    try:
        return decode_event("s", *row).model_dump()
    except ValueError:  # a ValidationError, or JSON that does not parse
        return "refused"


def row_path_only(row: tuple[Any, ...]) -> bool:
    """What only the row-by-row path takes: a naive time (asyncpg's edge values, made UTC) and
    any truthy value as ``synthetic`` (``bool()`` of it)."""
    naive = isinstance(row[2], datetime) and row[2].tzinfo is None
    return naive or row[5] not in (True, False, "yes")


@settings(max_examples=400, deadline=None)
@given(rows)
def test_a_page_accepts_and_builds_what_model_validation_does(row: tuple[Any, ...]) -> None:
    expected = per_row(row)
    try:
        _events(["s"], *zip(row, strict=True))  # the page path alone, without its fallback
    except ValidationError:
        # Refused as a page: then only a row that validation refuses too, or a naive time,
        # which decode_rows hands to the row-by-row path.
        assert expected == "refused" or row_path_only(row)
        if expected == "refused":
            with pytest.raises(ValueError):
                decode_rows("s", [row])
        else:
            assert [e.model_dump() for e in decode_rows("s", [row])] == [expected]
        return
    assert expected != "refused"
    assert [e.model_dump() for e in decode_rows("s", [row])] == [expected]


@settings(max_examples=200, deadline=None)
@given(st.lists(rows, max_size=4))
def test_decode_rows_of_a_page_is_the_events_row_by_row_or_the_same_error(
    page: list[tuple[Any, ...]],
) -> None:
    expected = [per_row(row) for row in page]
    if "refused" in expected:
        with pytest.raises(ValueError):
            decode_rows("s", page)
    else:
        assert [event.model_dump() for event in decode_rows("s", page)] == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1), st.sampled_from(["a", "b"]), rows), max_size=3))
def test_positioned_rows_decode_like_rows_of_their_session(
    page: list[tuple[int, str, tuple[Any, ...]]],
) -> None:
    flat = [(position, session, *row) for position, session, row in page]
    expected = []
    for position, session, row in page:
        try:
            expected.append((position, decode_event(session, *row).model_dump()))
        except ValueError:
            expected.append("refused")
    if "refused" in expected:
        with pytest.raises(ValueError):
            decode_positioned_rows(flat)
    else:
        got = decode_positioned_rows(flat)
        assert [(p.position, p.event.model_dump()) for p in got] == expected


def test_a_naive_time_from_a_database_library_is_taken_as_utc() -> None:
    # asyncpg gives timestamptz values at the edge of its range without a timezone.
    row = (1, "e1", datetime(1, 1, 1), "x.future", "agent", False, None, "{}", None)
    (event,) = decode_rows("s", [row])
    assert event.time == datetime(1, 1, 1, tzinfo=UTC)


def test_equal_instants_in_other_offsets_keep_each_its_own_offset() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    plus5 = utc.astimezone(timezone(timedelta(hours=5)))
    rows = [
        (n, f"e{n}", t, "x", "agent", False, None, "{}", None) for n, t in [(1, utc), (2, plus5)]
    ]
    first, second = decode_rows("s", rows)
    assert first.time.utcoffset() == timedelta(0)
    assert second.time.utcoffset() == timedelta(hours=5)


def test_rows_with_equal_payloads_get_payloads_of_their_own() -> None:
    time = "2026-01-02T03:04:05.000006Z"
    row = (1, "e1", time, "x", "agent", False, None, '{"a": []}', '{"b": []}')
    first, second = decode_rows("s", [row, (2, "e2", *row[2:])])
    assert first.time == second.time == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert first.data is not second.data and first.raw is not second.raw
