"""A real ``sandbox-agent server`` for the real-agent end-to-end tests, and the HTTP steps they
take with it (create a session, send a prompt, wait for a turn's events).

``AgentServer(tmp_path, llm, agent)`` holds a ``ServerProcess`` over a SQLite store in
``tmp_path``, with the offline environment of ``helpers.agent_env`` (a clean ``HOME``, a
``TMPDIR`` of its own: codex refuses to set up its sandbox helper under the system's), its data
dir in ``tmp_path / "data"`` and the test's workspace in ``tmp_path / "ws"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from sandbox_agent.testing.databases import sqlite_url
from sandbox_agent.testing.server import ServerProcess, events_of, wait_for

from agent_contract import SessionHarness
from helpers.agent_env import offline_env
from helpers.fake_llm import FakeLLM

#: Seconds a turn of a real CLI may take on a loaded 2-core machine.
TURN_TIMEOUT = 45.0


class AgentServer:
    """A server process with the offline environment, and the test's workspace."""

    def __init__(
        self, tmp_path: Path, llm: FakeLLM, agent: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.llm = llm
        self.agent = agent
        self.workspace = tmp_path / "ws"
        self.workspace.mkdir()
        env = offline_env(llm.url, tmp_path / "home")
        tmpdir = tmp_path / "tmpdir"
        tmpdir.mkdir()
        env["TMPDIR"] = str(tmpdir)
        env["SANDBOX_AGENT_DATA_DIR"] = str(tmp_path / "data")
        env.update(extra_env or {})
        self.logs = tmp_path / "data" / "logs" / "agents" / agent
        self.server = ServerProcess(
            sqlite_url(tmp_path / "store.db"),
            tmp_path / "server.log",
            env=env,
            args=["--no-token", "--root", str(tmp_path)],  # the workspace lies inside the root
        )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=60)

    def create(self, client: httpx.Client, session_id: str, **body: Any) -> dict[str, Any]:
        """Create a session of this agent in the workspace; the response body."""
        response = client.post(
            f"/v1/sessions/{session_id}",
            json={"agent": self.agent, "directory": str(self.workspace), **body},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def last_sequence(client: httpx.Client, session_id: str) -> int:
    events = events_of(client, session_id)
    return int(events[-1]["sequence"]) if events else 0


def wait_event(
    client: httpx.Client,
    session_id: str,
    event_type: str,
    after: int,
    timeout: float = TURN_TIMEOUT,
) -> list[dict[str, Any]]:
    """The events after ``after`` once one of ``event_type`` is among them."""
    return wait_for(client, session_id, event_type, after, timeout)


def send(client: httpx.Client, session_id: str, message: str) -> int:
    """POST the prompt; the last sequence before it."""
    before = last_sequence(client, session_id)
    response = client.post(f"/v1/sessions/{session_id}/messages", json={"message": message})
    assert response.status_code == 204, response.text
    return before


def turn(client: httpx.Client, session_id: str, message: str) -> list[dict[str, Any]]:
    """Send a prompt and return the turn's events (up to its turn.ended)."""
    before = send(client, session_id, message)
    return wait_event(client, session_id, "turn.ended", before)


class PatientHarness(SessionHarness):
    """The adapter contract's harness, waiting as long as a real CLI needs on a busy machine."""

    async def wait_for(
        self, predicate: Any, *, after: int = 0, seconds: float = TURN_TIMEOUT
    ) -> Any:
        return await super().wait_for(predicate, after=after, seconds=seconds)
