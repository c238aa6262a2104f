"""``sandbox-agent fork`` run as the real command on SQLite and Postgres, then the forks served
by a session engine on the same store: each continues with the mock agent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents import AgentSettings
from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay.restore import HEADER
from sandbox_agent.sessions import SessionConfig, SessionEngine
from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import check_events
from sandbox_agent.testing.databases import driver_params, fresh_url, sqlite_url


@pytest.fixture(params=driver_params(("sqlite", "postgres")))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_url(str(request.param), tmp_path) as fresh:
        yield fresh


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "fork", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def content(event: UniversalEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude={"event_id", "session_id"})


async def _engine_turns(engine: SessionEngine, session_id: str, message: str) -> list[str]:
    """Send ``message`` to the session and return what the mock said in that turn."""
    live = await engine.get(session_id)
    await live.send_message(message)
    said: list[str] = []
    async with asyncio.timeout(10):
        async for event in engine.store.subscribe(session_id, after=live.last_sequence - 3):
            if event.type == "item.completed" and event.data["item"]["role"] == "assistant":
                said += [p["text"] for p in event.data["item"]["content"] if p["type"] == "text"]
            if event.type == "turn.ended" and event.data["reason"] == "completed":
                return said
    raise AssertionError("unreachable")


async def _make_source(url: str) -> int:
    """A mock session ``src`` with two turns; returns the sequence where its first ended."""
    async with await open_store(url) as store:
        engine = SessionEngine(store, settings=AgentSettings(mock_delay_ms=0))
        try:
            await engine.create("src", SessionConfig(agent="mock"))
            await _engine_turns(engine, "src", "echo the password is swordfish")
            await _engine_turns(engine, "src", "echo second answer")
        finally:
            await engine.shutdown()
        events = await store.read("src", limit=1000)
        return next(e.sequence for e in events if e.type == "turn.ended")


async def _serve_forks(url: str, point: int) -> None:
    async with await open_store(url) as store:
        source = await store.read("src", limit=1000)
        for fork, upto in (("at-end", len(source)), ("at-point", point)):
            copied = await store.read(fork, limit=1000)
            assert [content(e) for e in copied] == [content(e) for e in source[:upto]]
        engine = SessionEngine(store, settings=AgentSettings(mock_delay_ms=0))
        try:
            # A server starting on the store recovers both (active) forks: each continues.
            assert set(await engine.recover()) >= {"at-end", "at-point"}
            assert await _engine_turns(engine, "at-end", "echo hi") == ["hi"]
            (said,) = await _engine_turns(engine, "at-point", "what was the password?")
            assert said.startswith(HEADER) and "swordfish" in said and "second" not in said
            for fork, native in (("at-end", True), ("at-point", False)):
                events = await store.read(fork, limit=1000)
                resumed = [e.data for e in events if e.type == "session.resumed"]
                assert [(r["reason"], r["native_resume"]) for r in resumed] == [("forked", native)]
                check_events(events)
            # The source only got its own recovery's mark.
            after = await store.read("src", limit=1000)
            assert after[: len(source)] == source
            assert [e.data["reason"] for e in after[len(source) :]] == ["server_restart"]
        finally:
            await engine.shutdown()


def test_fork_copies_a_session_offline_and_a_server_continues_it(url: str) -> None:
    point = asyncio.run(_make_source(url))
    done = _cli("src", "at-end", "--store", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("forked src at ") and "into at-end" in done.stdout
    done = _cli("src", "at-point", "--at", str(point), "--store", url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "sessionId": "at-point",
        "forkedFrom": {"sessionId": "src", "sequence": point},
        "events": point,
        "nativeFork": False,
    }
    asyncio.run(_serve_forks(url, point))


def test_fork_refuses_bad_forks_with_a_reason(tmp_path: Path) -> None:
    # The reasons are the store's and the replay's, the same whatever the driver.
    url = sqlite_url(tmp_path / "s.db")
    asyncio.run(_make_source(url))
    for args, reason in (
        (("nope", "x"), "session 'nope' not found"),
        (("src", "src"), "session 'src' already exists"),
        (("src", "x", "--at", "999"), "sequence 999 is past the end"),
    ):
        done = _cli(*args, "--store", url)
        assert done.returncode == 1, (args, done.stdout)
        assert reason in " ".join(done.stderr.split()), (args, done.stderr)
    done = _cli("src", "bad id", "--store", url)
    assert done.returncode == 1 and "invalid session id 'bad id'" in done.stderr
    done = _cli("src", "x", "--at", "0", "--store", url)
    assert done.returncode == 2 and "--at" in done.stderr  # a usage error
