"""Export to JSON Lines and import back: lossless, idempotent, loud on conflicts."""

from __future__ import annotations

import io
import json

import pytest

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import TransferError, export_sessions, import_sessions
from sandbox_agent.store import EventStore, SessionNotFound, open_store

from replay_helpers import Stream, canonical_session, store_stream


def with_raw(session_id: str) -> list[UniversalEvent]:
    s = canonical_session(session_id)
    s.add(
        "agent.unparsed",
        {"error": "bad", "location": "stdout"},
        raw={"line": "{oops", "n": [1, 2.5]},
    )
    return s.events


async def export_text(store: EventStore, *ids: str) -> str:
    out = io.StringIO()
    await export_sessions(store, list(ids), out)
    return out.getvalue()


async def dump(store: EventStore, session_id: str) -> list[dict[str, object]]:
    return [e.model_dump(mode="json") for e in await store.read(session_id)]


async def test_export_then_import_copies_sessions_exactly() -> None:
    source, target = await open_store("memory://"), await open_store("memory://")
    await store_stream(source, with_raw("s1"))
    await store_stream(source, Stream("s2").started("other").turn().events, agent="other")
    text = await export_text(source, "s1", "s2")
    summary = await import_sessions(target, io.StringIO(text))
    assert summary.created == ["s1", "s2"] and summary.events_written == 33 + 2
    for session_id in ("s1", "s2"):
        assert await dump(target, session_id) == await dump(source, session_id)
    record = await target.get_session("s2")
    assert record is not None and record.agent == "other"
    assert (await target.read("s1"))[-1].raw == {"line": "{oops", "n": [1, 2.5]}


async def test_export_writes_a_header_line_then_one_event_a_line() -> None:
    source = await open_store("memory://")
    await store_stream(source, canonical_session().events)
    lines = [json.loads(line) for line in (await export_text(source, "s1")).splitlines()]
    assert lines[0]["kind"] == "session" and lines[0]["session"]["id"] == "s1"
    assert [line["event"]["sequence"] for line in lines[1:]] == list(range(1, 33))


async def test_importing_again_adds_nothing() -> None:
    source, target = await open_store("memory://"), await open_store("memory://")
    await store_stream(source, with_raw("s1"))
    text = await export_text(source, "s1")
    await import_sessions(target, io.StringIO(text))
    again = await import_sessions(target, io.StringIO(text))
    assert (again.created, again.events_written, again.events_skipped) == ([], 0, 33)
    assert await target.last_sequence("s1") == 33


async def test_import_resumes_a_partly_imported_session() -> None:
    source, target = await open_store("memory://"), await open_store("memory://")
    events = canonical_session().events
    await store_stream(source, events)
    await store_stream(target, events[:10])
    summary = await import_sessions(target, io.StringIO(await export_text(source, "s1")))
    assert (summary.events_skipped, summary.events_written) == (10, 22)
    assert await dump(target, "s1") == await dump(source, "s1")


async def test_import_refuses_a_session_that_holds_other_events() -> None:
    source, target = await open_store("memory://"), await open_store("memory://")
    await store_stream(source, canonical_session().events)
    await store_stream(target, Stream("s1").started("someone-else").turn().events)
    with pytest.raises(TransferError, match="already holds other events"):
        await import_sessions(target, io.StringIO(await export_text(source, "s1")))
    assert await target.last_sequence("s1") == 2


async def test_export_of_an_unknown_session_writes_nothing() -> None:
    source = await open_store("memory://")
    await store_stream(source, canonical_session().events)
    out = io.StringIO()
    with pytest.raises(SessionNotFound):
        await export_sessions(source, ["s1", "nope"], out)
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["not json"], "line 1: not a valid export line"),
        (['{"kind": "thing"}'], "line 1: expected a session or event line"),
        (['{"kind": "session", "session": {"agent": "x"}}'], "line 1: not a valid export line"),
        (["{}"], "line 1"),
    ],
)
async def test_a_bad_line_is_reported_with_its_number(lines: list[str], message: str) -> None:
    with pytest.raises(TransferError, match=message):
        await import_sessions(await open_store("memory://"), lines)


async def test_an_event_outside_its_session_or_with_a_gap_is_refused() -> None:
    source = await open_store("memory://")
    await store_stream(source, canonical_session().events)
    lines = (await export_text(source, "s1")).splitlines()
    with pytest.raises(TransferError, match="line 1: event of session 's1' is not under"):
        await import_sessions(await open_store("memory://"), lines[1:])
    with pytest.raises(TransferError, match=r"line 3: .* jumps from sequence 1 to 3"):
        await import_sessions(await open_store("memory://"), [lines[0], lines[1], lines[3]])
