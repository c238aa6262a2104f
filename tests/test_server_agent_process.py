"""The agent process behind a session, through a real server: terminate and delete really stop it
(gracefully), and after a SIGKILLed server it is gone too, and the restarted server starts a new
one for the session, which continues it. The agent is a fake ACP agent (``helpers/fake_acp_agent``)
that records how it was stopped."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import ServerProcess, events_of, running

from helpers.children import HELPERS
from helpers.fake_acp_agent import stopped_marker
from helpers.pids import alive, gone_within


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    return tmp_path / "agent.pid"


@pytest.fixture
def server(tmp_path: Path, pid_file: Path) -> Iterator[ServerProcess]:
    fake = shlex.join([sys.executable, str(HELPERS / "fake_acp_agent.py"), str(pid_file)])
    args = ["--no-token", "--acp-agent", f"fake={fake}"]
    env = {"SANDBOX_AGENT_DATA_DIR": str(tmp_path / "data"), "SANDBOX_AGENT_TOKEN": ""}
    url = f"sqlite:///{tmp_path / 's.db'}"
    with running(url, tmp_path / "server.log", args=args, env=env) as process:
        yield process


def _logs(tmp_path: Path) -> str:
    """The agents' stderr and the server's log, for a failure's message."""
    agents = sorted((tmp_path / "data" / "logs").rglob("*.log"))
    parts = [f"== {log.name}\n{log.read_text()}" for log in [*agents, tmp_path / "server.log"]]
    return "\n".join(parts)


def _start(client: httpx.Client, session_id: str, pid_file: Path) -> int:
    """Create an ``acp:fake`` session: its agent process runs from then on."""
    pid_file.unlink(missing_ok=True)
    stopped_marker(pid_file).unlink(missing_ok=True)
    response = client.post(f"/v1/sessions/{session_id}", json={"agent": "acp:fake"})
    assert response.status_code == 200, response.text
    pid = int(pid_file.read_text())
    assert response.json()["nativeSessionId"] == f"fake-{pid}"
    assert alive(pid)
    return pid


@pytest.mark.parametrize(("method", "action"), [("POST", "/terminate"), ("DELETE", "")])
def test_terminate_and_delete_stop_the_agent_process(
    server: ServerProcess, pid_file: Path, tmp_path: Path, method: str, action: str
) -> None:
    with server.client() as client:
        pid = _start(client, "s1", pid_file)
        assert client.request(method, f"/v1/sessions/s1{action}").status_code == 204
        assert gone_within(pid), f"{method} {action} left the agent running"
        marker = stopped_marker(pid_file)
        assert marker.exists() and marker.read_text() == "SIGTERM", _logs(tmp_path)
        if method == "DELETE":
            assert client.get("/v1/sessions/s1").status_code == 404
        else:
            events = events_of(client, "s1")
            assert events[-1]["type"] == "session.ended"
            assert events[-1]["data"]["terminated_by"] == "daemon"


def test_a_sigkilled_server_takes_its_agents_and_the_next_one_starts_them_again(
    server: ServerProcess, pid_file: Path
) -> None:
    with server.client() as client:
        first = _start(client, "k1", pid_file)
    server.kill()
    assert gone_within(first, 10), "the agent outlived its SIGKILLed server"
    assert not stopped_marker(pid_file).exists()  # killed with the server, not stopped
    pid_file.unlink()
    server.start()
    second = int(pid_file.read_text())  # recovery started the session's agent again
    assert second != first and alive(second)
    with server.client() as client:
        events = events_of(client, "k1")
        resumed = events[-1]
        assert resumed["type"] == "session.resumed"
        assert resumed["data"]["reason"] == "server_restart"
        # The fake cannot load its old session: a new native one, recorded for the next restart.
        assert resumed["data"]["native_resume"] is False
        assert resumed["native_session_id"] == f"fake-{second}"
        check_stream(events)
        info = client.get("/v1/sessions/k1").json()
        assert info["nativeSessionId"] == f"fake-{second}" and info["status"] == "idle"
