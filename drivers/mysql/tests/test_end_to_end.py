"""The driver package in the whole product: ``sandbox-agent server --store mysql://...`` (a real
server process with the mock agent), the replay CLI, and the SDK's mirror, each on a fresh
database and with nothing but the entry point telling them about ``mysql://``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sandbox_agent_mysql.migrate import HEAD_REVISION

from sandbox_agent import SandboxAgent
from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import assert_consistent, check_events
from sandbox_agent.testing.server import (
    OK_PROMPT,
    ServerProcess,
    create,
    events_of,
    running,
    stream_turn,
    wait_for,
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_server_keeps_sessions_in_mysql_across_a_crash(mysql_url: str, tmp_path: Path) -> None:
    # ``running`` also checks every stream the server left in the store once it stopped.
    with running(mysql_url, tmp_path / "server.log") as server, server.client() as client:
        create(client, "demo")
        turn = stream_turn(client, "demo", OK_PROMPT)
        assert turn[-1]["type"] == "turn.ended", [e["type"] for e in turn]
        stored = events_of(client, "demo", offset=0, limit=1000)
        assert [e["sequence"] for e in stored] == list(range(1, len(stored) + 1))
        assert {e["event_id"] for e in turn} <= {e["event_id"] for e in stored}

        server.kill()  # SIGKILL: everything it acknowledged is in MySQL
        server.restart()
        again = events_of(client, "demo", offset=0, limit=1000)
        assert again[: len(stored)] == stored
        after = again[-1]["sequence"]
        client.post("/v1/sessions/demo/messages", json={"message": OK_PROMPT}).raise_for_status()
        wait_for(client, "demo", "turn.ended", after=after)


def test_replay_cli_checks_and_renders_a_session_in_mysql(mysql_url: str, tmp_path: Path) -> None:
    with running(mysql_url, tmp_path / "server.log") as server, server.client() as client:
        create(client, "demo")
        stream_turn(client, "demo", OK_PROMPT)

    checked = cli("replay", "demo", "--store", mysql_url, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    every = cli("replay", "--all", "--check", "--store", mysql_url, "--json")
    assert every.returncode == 0, every.stdout + every.stderr
    text = cli("replay", "demo", "--store", mysql_url, "--format", "markdown")
    assert text.returncode == 0 and "OK" in text.stdout, text.stdout + text.stderr
    listed = cli("sessions", "list", "--store", mysql_url, "--json")
    assert listed.returncode == 0 and "demo" in listed.stdout, listed.stdout + listed.stderr


def test_replay_cli_check_fails_for_an_unknown_session(mysql_url: str) -> None:
    missing = cli("replay", "nope", "--store", mysql_url, "--check")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr, missing.stderr


async def test_sdk_mirrors_a_session_into_mysql(mysql_url: str, tmp_path: Path) -> None:
    server = ServerProcess("sqlite:///" + str(tmp_path / "server.db"), tmp_path / "server.log")
    server.start()
    try:
        async with await SandboxAgent.connect(server.url, store=mysql_url) as sdk:
            session = await sdk.create_session("mirrored", agent="mock")
            result = await session.prompt(OK_PROMPT)
            assert result.text.strip() == "OK", result
            await assert_consistent(sdk.store, server.url, "mirrored")
    finally:
        server.stop()
    # What the mirror wrote is there for any other reader of the database.
    async with await open_store(mysql_url) as store:
        events = await store.read("mirrored")
        assert events[-1].type == "turn.ended"
        check_events(events)


def test_db_commands_report_and_apply_the_drivers_migrations(mysql_url: str) -> None:
    current = cli("db", "current", mysql_url, "--json")
    assert current.returncode == 0, current.stdout + current.stderr
    assert json.loads(current.stdout)["current"] is None  # never opened: nothing migrated
    upgraded = cli("db", "upgrade", mysql_url, "--json")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    after = json.loads(cli("db", "current", mysql_url, "--json").stdout)
    assert after["current"] == after["head"] == HEAD_REVISION


def test_the_cli_says_why_a_mysql_store_cannot_be_opened() -> None:
    refused = cli("sessions", "list", "--store", "mysql://root@127.0.0.1:1/test")
    assert refused.returncode != 0
    assert "127.0.0.1:1" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    unknown = cli("sessions", "list", "--store", "mysql://root@127.0.0.1/test?colour=blue")
    assert unknown.returncode != 0
    assert "colour" in unknown.stderr and "Traceback" not in unknown.stderr, unknown.stderr


def test_inspect_serves_a_mysql_store_read_only(mysql_url: str, tmp_path: Path) -> None:
    """``sandbox-agent inspect --store mysql://...``: the inspector's data over the driver."""
    import asyncio
    import time

    import httpx

    from sandbox_agent.events import EventDraft
    from sandbox_agent.store import SessionRecord
    from sandbox_agent.testing.server import free_port
    from sandbox_agent.testing.streams import canonical_session

    stream = canonical_session("alpha")

    async def seed() -> None:
        async with await open_store(mysql_url) as store:
            await store.create_session(SessionRecord(id="alpha", agent="mock", title="Fix it"))
            await store.append("alpha", [EventDraft.from_event(e) for e in stream.events])

    asyncio.run(seed())
    port = free_port()
    command = [sys.executable, "-m", "sandbox_agent", "inspect", "--store", mysql_url]
    with (tmp_path / "inspect.log").open("wb") as log:
        proc = subprocess.Popen([*command, "-p", str(port)], stdout=log, stderr=log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    listed = client.get("/api/sessions").json()
                    break
                except httpx.HTTPError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.05)
            assert listed["count"] == 1 and 'data-id="alpha"' in listed["html"]
            at = client.get("/api/sessions/alpha/at", params={"seq": 5}).json()
            assert at["sequence"] == 5 and at["lastSequence"] == len(stream.events)
            fork = client.post("/api/sessions/alpha/fork", json={"sessionId": "copy"})
            assert fork.status_code == 403  # read-only without --writable
    finally:
        proc.terminate()
        proc.wait(10)
