"""One server per store: a second server on the same store refuses to start, names the owner,
and writes nothing into the first one's sessions (real servers, SQLite and Postgres)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.databases import driver_params, fresh_url
from sandbox_agent.testing.server import ServerProcess, create, events_of, wait_for


@pytest.mark.parametrize("driver", driver_params(("sqlite", "postgres")))
def test_a_second_server_on_a_store_refuses_to_start_and_names_the_owner(
    driver: str, tmp_path: Path
) -> None:
    with fresh_url(driver, tmp_path) as url:
        first = ServerProcess(url, tmp_path / "first.log").start()
        try:
            with first.client() as client:
                create(client, "live")
                # A turn left open, waiting for its answers: what a recovery would close.
                client.post("/v1/sessions/live/messages", json={"message": "permission"})
                # Both of the mock's requests (they come one after the other).
                before = wait_for(client, "live", "permission.requested")
                while [e["type"] for e in before].count("permission.requested") < 2:
                    time.sleep(0.02)
                    before = events_of(client, "live")
                second = ServerProcess(url, tmp_path / "second.log")
                with pytest.raises(RuntimeError, match="exited with"):
                    second.start(timeout=60)
                assert second.proc is not None and second.proc.returncode != 0
                assert f"owned by pid {first.pid}" in second.log()
                # Nothing was written into the first server's session, and it goes on.
                assert events_of(client, "live") == before
                for permission in ("mock_1_permission", "mock_1_permission_denied"):
                    reply = client.post(
                        f"/v1/sessions/live/permissions/{permission}/reply",
                        json={"reply": "once"},
                    )
                    assert reply.status_code == 204
                assert wait_for(client, "live", "turn.ended")[-1]["type"] == "turn.ended"
        finally:
            first.stop()
        # Once the owner stopped, the next server takes the store over.
        third = ServerProcess(url, tmp_path / "third.log").start()
        assert third.is_running()
        third.stop()


@pytest.mark.slow
@pytest.mark.parametrize("driver", driver_params(("sqlite", "postgres")))
def test_a_sigkilled_owner_leaves_the_store_free(driver: str, tmp_path: Path) -> None:
    with fresh_url(driver, tmp_path) as url:
        first = ServerProcess(url, tmp_path / "first.log").start()
        first.kill()
        # The kernel (SQLite's flock) or the database (Postgres's session lock) let go of it.
        second = ServerProcess(url, tmp_path / "second.log").start()
        assert second.is_running()
        second.stop()


async def test_claim_is_held_until_close_and_clients_that_do_not_claim_share(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'owned.db'}"
    owner = await open_store(url)
    await owner.claim(url)
    # Another process claims: refused, naming this one.
    code = (
        "import asyncio, sys\n"
        "from sandbox_agent.store import open_store, StoreOwned\n"
        "async def main():\n"
        f"    store = await open_store({url!r})\n"
        "    try:\n"
        f"        await store.claim({url!r})\n"
        "    except StoreOwned as exc:\n"
        "        print(exc); sys.exit(7)\n"
        "    finally:\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
    )
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 7, run.stderr
    assert "owned by pid" in run.stdout and "one server per store" in run.stdout
    # A client that does not claim (the CLI, the SDK's mirror) still reads and writes.
    reader: EventStore = await open_store(url)
    assert await reader.list_sessions() is not None
    await reader.close()
    await owner.close()
    again = await open_store(url)
    await again.claim(url)
    await again.close()
