"""``sandbox-agent api ...`` against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from server_process import OK_PROMPT, check_stream, free_port, running

TOKEN = "cli-token"


def _api(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "api", *args, "-e", url, "-t", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_api_commands_create_send_and_read_a_session(tmp_path: Path) -> None:
    with running(
        f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log", args=["--token", TOKEN]
    ) as server:
        created = _api(server.url, "sessions", "create", "cli1", "-a", "mock")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["nativeSessionId"] == "mock-cli1"
        streamed = _api(server.url, "sessions", "send-message-stream", "cli1", "-m", OK_PROMPT)
        assert streamed.returncode == 0, streamed.stderr
        assert '"type":"turn.ended"' in streamed.stdout and "id: 8" in streamed.stdout
        events = json.loads(_api(server.url, "sessions", "events", "cli1").stdout)["events"]
        assert len(events) == 8
        check_stream(events)
        missing = _api(server.url, "sessions", "events", "nobody")
        assert missing.returncode == 1 and "session not found" in missing.stderr


def test_daemon_starts_reports_and_stops_gracefully(tmp_path: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "SANDBOX_AGENT_DATA_DIR": str(tmp_path)}
    env.pop("SANDBOX_AGENT_TOKEN", None)

    def daemon(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sandbox_agent", "daemon", *args, "-p", port]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    assert daemon("status").returncode == 1
    started = daemon("start", "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert started.returncode == 0, started.stderr
    assert "daemon running" in daemon("status").stderr
    assert "daemon stopped" in daemon("stop").stderr
    assert daemon("status").returncode == 1
    logs = list((tmp_path / "daemon").glob("*.log"))
    assert logs and "Application shutdown complete" in logs[0].read_text()
