"""The mirror and a failing local store: transient errors are retried with backoff and the copy
ends exact; a store that keeps failing stops the mirror, after the bounded retries, with a reason.

The kit's ``FaultyStore`` fails the local store's appends while a real server streams a turn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox_agent import SandboxAgent
from sandbox_agent.sdk import mirror
from sandbox_agent.sdk.mirror import STORE_RETRIES, LocalStoreUnavailable
from sandbox_agent.store import StoreUnavailable, open_store
from sandbox_agent.testing.consistency import assert_consistent
from sandbox_agent.testing.faults import FaultyStore
from sandbox_agent.testing.server import OK_PROMPT, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sdk-mirror-store")
    # A delay per event, so that a turn streams in many small appends.
    proc = ServerProcess(f"sqlite:///{tmp / 'server.db'}", tmp / "server.log", mock_delay_ms=4)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.kill()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FaultyStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'local.db'}"
    faulty = FaultyStore(await open_store(url))
    try:
        yield faulty
    finally:
        await faulty.close()


def _faults(store: FaultyStore, session_id: str) -> list[int]:
    """Indexes in ``store.calls`` of the session's appends that a fault failed."""
    return [
        i
        for i, call in enumerate(store.calls)
        if call.session_id == session_id and call.fault in ("fail", "fail_after_commit")
    ]


async def test_transient_store_failures_mid_turn_are_retried_and_the_copy_is_the_servers(
    server: ServerProcess, store: FaultyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=mirror.__name__)
    async with await SandboxAgent.connect(server.url, store=store) as sdk:
        session = await sdk.create_session(agent="mock")
        await session.prompt(OK_PROMPT)
        # Into the next turn: its 3rd and 4th appends fail (nothing written), its 7th commits
        # and then fails (a lost acknowledgement: the retry must not write it twice).
        store.fail("append", skip=2, times=2, session_id=session.id)
        store.fail("append", skip=6, times=1, after_commit=True, session_id=session.id)
        result = await session.prompt("markdown")
        assert result.end_reason == "completed" and "End of markdown demo." in result.text
        assert (await session.prompt(OK_PROMPT)).text == "OK"  # and it goes on

        faults = _faults(store, session.id)
        assert len(faults) == 3 and session.mirror.store_retries == 3
        # Mid-turn: the mirror went on appending the turn after the failures.
        later = [
            c
            for c in store.calls[faults[-1] + 1 :]
            if c.primitive == "insert_events" and c.session_id == session.id and c.fault is None
        ]
        assert later, "no append after the faults"
        # Its own lost acknowledgement did not make it think that another mirror writes.
        assert not session.mirror.standby and session.mirror.refused == 0
        assert session.mirror.running and session.mirror.stop_reason is None
        await assert_consistent(store, server.url, session.id)
    retries = [r for r in caplog.records if "the local store failed" in r.getMessage()]
    assert len(retries) == 3 and all(r.levelno == logging.WARNING for r in retries)
    assert "retry 1 of" in retries[0].getMessage()


async def test_a_store_that_keeps_failing_stops_the_mirror_with_its_reason(
    server: ServerProcess,
    store: FaultyStore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mirror, "STORE_RETRY_MAX", 0.1)  # the same retries, shorter waits
    caplog.set_level(logging.WARNING, logger=mirror.__name__)
    async with await SandboxAgent.connect(server.url, store=store) as sdk:
        session = await sdk.create_session(agent="mock")
        await session.prompt(OK_PROMPT)
        store.fail("append", skip=1, times=None, session_id=session.id)  # from mid-turn on
        with pytest.raises(LocalStoreUnavailable) as caught:
            await session.prompt("markdown")
        error = caught.value
        assert error.status == 503 and error.name == "local_store_unavailable"
        assert error.attempts == STORE_RETRIES + 1 and error.operation == "append"
        assert error.session_id == session.id and isinstance(error.__cause__, StoreUnavailable)
        assert "failed 11 times in a row" in error.detail
        # Stopped, after exactly the bounded retries, and it says why.
        assert not session.mirror.running
        assert session.mirror.error() is error
        assert session.mirror.stop_reason == str(error)
        assert session.mirror.store_retries == STORE_RETRIES
        assert len(_faults(store, session.id)) == STORE_RETRIES + 1
        stopped = [r for r in caplog.records if "stopped" in r.getMessage()]
        assert len(stopped) == 1 and stopped[0].levelno == logging.ERROR
        assert "local_store_unavailable" in stopped[0].getMessage()

        # The store is back: the next prompt mirrors on from what was stored, exactly.
        store.clear()
        assert (await session.prompt(OK_PROMPT)).text == "OK"
        assert session.mirror.running and session.mirror.stop_reason is None
        await assert_consistent(store, server.url, session.id)
