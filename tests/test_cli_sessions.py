"""``sandbox-agent sessions list`` on a real SQLite store, run as the real command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store


def _cli(*args: str, env_store: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if env_store is not None:
        import os

        env = {**os.environ, "SANDBOX_AGENT_STORE": env_store}
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "sessions", "list", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


async def _fill(url: str) -> None:
    async with await open_store(url) as store:
        for n, agent in enumerate(["mock", "claude", "mock"], start=1):
            await store.create_session(SessionRecord(id=f"s{n}", agent=agent, title=f"t{n}"))
            await store.append(f"s{n}", [EventDraft(type="session.started")] * 1)
        await store.append(
            "s2",
            [
                EventDraft(
                    type="session.ended", data={"reason": "completed", "terminated_by": "agent"}
                )
            ],
        )


def test_sessions_list_shows_every_session_newest_first_as_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(_fill(url))
    listed = json.loads(_cli("--store", url, "--json").stdout)
    assert [s["id"] for s in listed] == ["s3", "s2", "s1"]
    assert {s["id"]: (s["status"], s["event_count"]) for s in listed} == {
        "s1": ("active", 1),
        "s2": ("ended", 2),
        "s3": ("active", 1),
    }


def test_sessions_list_filters_by_status_and_agent_and_reads_the_env_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(_fill(url))
    ended = json.loads(_cli("--status", "ended", "--json", env_store=url).stdout)
    assert [s["id"] for s in ended] == ["s2"]
    mocks = json.loads(_cli("--agent", "mock", "--json", env_store=url).stdout)
    assert [s["id"] for s in mocks] == ["s3", "s1"]
    table = _cli("--store", url)
    assert table.returncode == 0
    assert "3 session(s)" in table.stdout and "claude" in table.stdout


def test_sessions_list_fails_with_a_one_line_reason_for_a_bad_store() -> None:
    result = _cli("--store", "nosuch://x")
    assert result.returncode == 1
    assert "unknown store driver 'nosuch'" in result.stderr
