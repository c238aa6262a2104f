"""The kit's server fixture and ``assert_consistent``: a real server that survives SIGKILL and
restart on the same URL and store, and a check that says exactly how a mirror differs."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sandbox_agent import SandboxAgent
from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.store import EventStore, SessionRecord, open_store
from sandbox_agent.testing.consistency import AssertConsistent, check_events
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess, create, stream_turn


def test_the_server_fixture_is_killed_and_restarted_on_the_same_url_and_store(
    sandbox_server: ServerProcess,
) -> None:
    url, store_url = sandbox_server.url, sandbox_server.store_url
    assert store_url.startswith("sqlite:///") and sandbox_server.log_path.exists()
    with sandbox_server.client() as client:
        create(client, "s")
        assert stream_turn(client, "s", OK_PROMPT)[-1]["type"] == "turn.ended"
    assert sandbox_server.proc is not None
    pid = sandbox_server.proc.pid
    sandbox_server.kill()
    assert sandbox_server.proc.returncode == -signal.SIGKILL and not sandbox_server.is_running()
    sandbox_server.restart()
    assert sandbox_server.url == url and sandbox_server.store_url == store_url
    assert sandbox_server.proc.pid != pid
    with sandbox_server.client() as client:
        assert client.get("/v1/sessions/s").json()["status"] == "idle"
        assert stream_turn(client, "s", OK_PROMPT)[-1]["type"] == "turn.ended"


def test_the_server_log_is_read_whole_not_its_end(tmp_path: Path) -> None:
    # A check such as "no Traceback in the log" must see a Traceback however early it came.
    log_path = tmp_path / "server.log"
    log_path.write_text("Traceback (most recent call last):\n" + "INFO ok\n" * 10_000)
    log = ServerProcess("sqlite:///unused.db", log_path).log()
    assert log.startswith("Traceback") and log == log_path.read_text()


async def _copy(events: list[UniversalEvent], session_id: str = "c") -> EventStore:
    """A fresh local store holding ``events`` (same ids) as session ``session_id``."""
    store = await open_store("memory://")
    await store.create_session(SessionRecord(id=session_id, agent="mock"))
    if events:
        await store.append(session_id, [EventDraft.from_event(e) for e in events])
    return store


async def test_assert_consistent_holds_for_a_mirror_and_names_what_differs(
    sandbox_server: ServerProcess, assert_consistent: AssertConsistent
) -> None:
    url = sandbox_server.url
    async with (
        await open_store("memory://") as store,
        await SandboxAgent.connect(url, store=store) as sdk,
    ):
        session = await sdk.create_session("c", agent="mock")
        await session.prompt("markdown")
        await assert_consistent(store, url, "c")
        stored = await store.read("c")
    last = stored[-1]

    async with await _copy(stored[:3]) as short:
        with pytest.raises(AssertionError) as lagging:
            await assert_consistent(short, url, "c", timeout=0.2)
    assert f"local: 3 events (1..3), server: {len(stored)} events (1..{last.sequence})" in str(
        lagging.value
    )
    assert "(still, after 0.2 s)" in str(lagging.value)
    assert f"missing locally: #4 {stored[3].type} {stored[3].event_id}" in str(lagging.value)

    extra = EventDraft(type="item.started", data={"item": {"item_id": "extra"}})
    async with await _copy(stored) as longer:
        [added] = await longer.append("c", [extra])
        with pytest.raises(AssertionError, match="only in the local store: #") as longer_error:
            await assert_consistent(longer, url, "c")
    assert f"#{added.sequence} item.started {added.event_id}" in str(longer_error.value)

    changed = [*stored[:-1], last.model_copy(update={"event_id": "evt_other"})]
    async with await _copy(changed) as other:
        with pytest.raises(AssertionError) as differs:
            await assert_consistent(other, url, "c")
    assert (
        f"first difference:\n    local:  #{last.sequence} {last.type} evt_other\n"
        f"    server: #{last.sequence} {last.type} {last.event_id}"
    ) in str(differs.value)

    async with await open_store("memory://") as empty:
        with pytest.raises(AssertionError, match="session 'c' is not in the local store"):
            await assert_consistent(empty, url, "c")
        with pytest.raises(AssertionError, match="answered 404 for the events of session 'x'"):
            await assert_consistent(await _copy([], "x"), url, "x")


def test_check_events_names_the_gap_and_each_anomaly() -> None:
    started = UniversalEvent.model_validate(
        {
            "event_id": "evt_1",
            "session_id": "s",
            "sequence": 1,
            "time": "2026-01-01T00:00:00Z",
            "type": "session.started",
            "source": "daemon",
            "data": {},
        }
    )
    later = started.model_copy(update={"event_id": "evt_2", "sequence": 3})
    with pytest.raises(
        AssertionError, match=r"stream: sequences are not 1\.\.2: expected 2, found 3"
    ):
        check_events([started, later])
    twice = [started, later.model_copy(update={"sequence": 2})]
    with pytest.raises(
        AssertionError, match=r"1 replay anomaly in 2 events:\n  #2 session_started_twice"
    ):
        check_events(twice)
    check_events(twice, allow={"session_started_twice"})
