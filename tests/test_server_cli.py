"""``sandbox-agent api ...`` and ``sandbox-agent daemon ...`` as real subprocesses, against a
real server process (the mock agent at zero delay), checking what each command did on the
server: the events recorded, the sessions' info, the daemon's agent processes."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.store import open_store
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import (
    OK_PROMPT,
    ServerProcess,
    create,
    events_of,
    free_port,
    running,
    wait_for,
)
from sandbox_agent.testing.skills import skill_text, write_skills

from helpers.children import HELPERS
from helpers.fake_acp_agent import stopped_marker
from helpers.pids import alive, gone_within, stat_fields

TOKEN = "cli-token"
CLI = [sys.executable, "-m", "sandbox_agent"]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a CLI process: no token or endpoint but what the test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_AGENT_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("cli")
    # A root of its own: what a session writes (its skill links) stays in the test's directory.
    args = ["--token", TOKEN, "--root", str(tmp)]
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log", args=args) as s:
        yield s


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def api(
    server: ServerProcess, *args: str, auth: tuple[str, ...] = ("-t", TOKEN), **env: str
) -> subprocess.CompletedProcess[str]:
    """``sandbox-agent api ARGS -e URL [auth]``, run to its end."""
    command = [*CLI, "api", *args, "-e", server.url, *auth]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=_env(**env), check=False
    )


def ok(server: ServerProcess, *args: str) -> Any:
    """``api(...)`` that must succeed; its stdout as JSON (None when empty)."""
    done = api(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def failed(done: subprocess.CompletedProcess[str]) -> str:
    """The one-line reason of a command that must have failed with exit code 1."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr.strip().splitlines()[-1]


def sse_events(text: str) -> list[dict[str, Any]]:
    """The events of the ``data:`` lines of an SSE stream's text."""
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


# -- agents ---------------------------------------------------------------------------------
def test_agents_list_install_modes_and_models(server: ServerProcess, client: httpx.Client) -> None:
    agents = {a["id"]: a for a in ok(server, "agents", "list")["agents"]}
    assert agents["mock"]["installed"] and agents["mock"]["version"] == "builtin"
    assert agents.keys() == {a["id"] for a in client.get("/v1/agents").json()["agents"]}
    # The mock is built in: installing it is a no-op 204, no output.
    installed = api(server, "agents", "install", "mock")
    assert (installed.returncode, installed.stdout) == (0, ""), installed.stderr
    modes = ok(server, "agents", "modes", "mock")
    assert modes == client.get("/v1/agents/mock/modes").json()
    assert {"build", "plan"} <= {m["id"] for m in modes["modes"]}
    models = ok(server, "agents", "models", "mock")
    assert models == client.get("/v1/agents/mock/models").json() and models["models"]


# -- sessions: create, get, list --------------------------------------------------------------
def test_sessions_create_sends_every_option(
    server: ServerProcess, client: httpx.Client, tmp_path: Path
) -> None:
    mcp = {"files": {"type": "local", "command": ["mcp-files", "--stdio"], "env": {"A": "1"}}}
    mcp_file = tmp_path / "mcp.json"
    mcp_file.write_text(json.dumps(mcp))
    skills = [tmp_path / "skills-a", tmp_path / "skills-b"]
    for folder in skills:
        write_skills(folder, {f"{folder.name}-1": skill_text(f"{folder.name}-1", "A skill")})
    workspace = server_root(server) / "opts"
    workspace.mkdir()
    created = ok(
        server, "sessions", "create", "opts", "-a", "mock",
        "-g", "plan", "-p", "bypass", "--title", "CLI options", "-A", "9.9.9",
        "--mcp-config", str(mcp_file), "--skill", str(skills[0]), "--skill", str(skills[1]),
        "--directory", str(workspace),
    )  # fmt: skip
    assert created == {"healthy": True, "nativeSessionId": "mock-opts"}
    info = ok(server, "sessions", "get", "opts")
    sources = [{"type": "local", "source": str(s)} for s in skills]
    assert info["sessionId"] == "opts" and info["agent"] == "mock"
    assert (info["agentMode"], info["permissionMode"]) == ("plan", "bypass")
    assert info["title"] == "CLI options" and info["status"] == "idle"
    assert info["mcp"] == mcp and info["skills"] == {"sources": sources}
    assert [s["name"] for s in info["installedSkills"]] == ["skills-a-1", "skills-b-1"]
    assert sorted(p.name for p in (workspace / ".agents" / "skills").iterdir()) == [
        "skills-a-1", "skills-b-1",
    ]  # fmt: skip
    listed = ok(server, "sessions", "list")["sessions"]
    assert info in listed
    # The agent version is kept with the session's init (SessionInfo does not show it).
    record = asyncio.run(_record(server.store_url, "opts"))
    assert record.init["agentVersion"] == "9.9.9"
    started = events_of(client, "opts")[0]
    assert started["type"] == "session.started"
    metadata = started["data"]["metadata"]
    assert (metadata["agentMode"], metadata["permissionMode"]) == ("plan", "bypass")


def server_root(server: ServerProcess) -> Path:
    return Path(server.args[server.args.index("--root") + 1])


async def _record(url: str, session_id: str) -> Any:
    store = await open_store(url)
    try:
        return await store.get_session(session_id)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read it: No such file or directory"),
        ("{not json", "not JSON: Expecting property name"),
        (
            '[{"type": "local"}]',
            "expected a JSON object of name -> MCP server config, not an array",
        ),
        ('{"files": "mcp-files"}', "server 'files' is a string, not an object"),
    ],
    ids=["missing", "not-json", "array", "entry-not-object"],
)
def test_a_bad_mcp_config_fails_before_calling_the_server(
    server: ServerProcess, client: httpx.Client, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "mcp.json"
    if content is not None:
        path.write_text(content)
    done = api(server, "sessions", "create", "bad-mcp", "-a", "mock", "--mcp-config", str(path))
    assert failed(done).startswith(f"error: --mcp-config {path}: {reason}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert client.get("/v1/sessions/bad-mcp").status_code == 404


# -- sessions: messages and events ----------------------------------------------------------
def test_send_message_then_events_and_get_messages(
    server: ServerProcess, client: httpx.Client
) -> None:
    create(client, "msg")
    assert ok(server, "sessions", "send-message", "msg", "-m", OK_PROMPT) is None
    stored = wait_for(client, "msg", "turn.ended")
    assert [e["type"] for e in stored[-2:]] == ["item.completed", "turn.ended"]
    listed = ok(server, "sessions", "events", "msg")
    assert listed == {"events": stored, "hasMore": False}
    check_stream(listed["events"])
    assert of_type(stored, "item.completed")[-1]["data"]["item"]["content"][0]["text"] == "OK"
    page = ok(server, "sessions", "events", "msg", "-o", "2", "-l", "3")
    assert page == {"events": stored[2:5], "hasMore": True}
    assert ok(server, "sessions", "get-messages", "msg", "-o", "2", "-l", "3") == page
    rest = ok(server, "sessions", "get-messages", "msg", "--offset", "5")
    assert rest == {"events": stored[5:], "hasMore": False}


def test_send_message_stream_prints_the_turns_sse_frames(
    server: ServerProcess, client: httpx.Client
) -> None:
    create(client, "stream")
    done = api(server, "sessions", "send-message-stream", "stream", "-m", OK_PROMPT)
    assert done.returncode == 0, done.stderr
    streamed = sse_events(done.stdout)
    assert [e["sequence"] for e in streamed] == list(range(2, 9))
    assert streamed[-1]["type"] == "turn.ended"
    assert [f"id: {e['sequence']}" for e in streamed] == [
        line for line in done.stdout.splitlines() if line.startswith("id:")
    ]
    assert streamed == events_of(client, "stream")[1:]
    # The mock's unparsed payload has a raw part: shown with --include-raw only.
    raw = api(
        server, "sessions", "send-message-stream", "stream", "-m", "unparsed", "--include-raw"
    )
    assert raw.returncode == 0, raw.stderr
    unparsed = sse_events(raw.stdout)[-1]
    assert unparsed["type"] == "agent.unparsed" and unparsed["raw"] == {"raw": "mock"}
    assert sse_events(raw.stdout)[0]["sequence"] == 9
    wait_for(client, "stream", "turn.ended", after=unparsed["sequence"])
    assert of_type(events_of(client, "stream"), "agent.unparsed")[0]["raw"] is None
    stored = ok(server, "sessions", "events", "stream", "-o", "8", "--include-raw")["events"]
    assert of_type(stored, "agent.unparsed") == [unparsed]


def test_events_sse_follows_the_session_live(server: ServerProcess, client: httpx.Client) -> None:
    create(client, "live")
    command = [*CLI, "api", "sessions", "events-sse", "live", "-o", "1"]
    command += ["-e", server.url, "-t", TOKEN]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_env())
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        text = [lines.get(timeout=30)]
        assert text == [": connected"]  # subscribed: what follows is live
        response = client.post("/v1/sessions/live/messages", json={"message": OK_PROMPT})
        assert response.status_code == 204, response.text
        while '"type":"turn.ended"' not in text[-1]:
            text.append(lines.get(timeout=30))
    finally:
        follower.terminate()
        follower.wait(10)
    followed = sse_events("\n".join(text))
    assert [e["sequence"] for e in followed] == list(range(2, 9))  # after -o 1
    assert followed == events_of(client, "live", offset=1)


# -- sessions: human in the loop ------------------------------------------------------------
def test_reply_permission_answers_both_requests(
    server: ServerProcess, client: httpx.Client
) -> None:
    create(client, "perm")
    asked = of_type(
        _ask(client, "perm", "permission", "permission.requested", 2), "permission.requested"
    )
    ids = [e["data"]["permission_id"] for e in asked]
    assert ok(server, "sessions", "reply-permission", "perm", ids[0], "-r", "once") is None
    # The reply is case-insensitive, as v0.1's.
    assert ok(server, "sessions", "reply-permission", "perm", ids[1], "-r", "REJECT") is None
    stored = wait_for(client, "perm", "turn.ended")
    resolved = {
        e["data"]["permission_id"]: e["data"] for e in of_type(stored, "permission.resolved")
    }
    assert (resolved[ids[0]]["status"], resolved[ids[1]]["status"]) == ("accept", "reject")
    assert of_type(stored, "turn.ended")[-1]["data"]["reason"] == "completed"
    check_stream(stored)


def test_reply_question_and_reject_question(server: ServerProcess, client: httpx.Client) -> None:
    create(client, "ask")
    asked = of_type(_ask(client, "ask", "question", "question.requested", 2), "question.requested")
    ids = [e["data"]["question_id"] for e in asked]
    first_options = asked[0]["data"]["options"]
    answer = json.dumps([[first_options[1]]])
    assert ok(server, "sessions", "reply-question", "ask", ids[0], "-a", answer) is None
    assert ok(server, "sessions", "reject-question", "ask", ids[1]) is None
    stored = wait_for(client, "ask", "turn.ended")
    resolved = {e["data"]["question_id"]: e["data"] for e in of_type(stored, "question.resolved")}
    assert (resolved[ids[0]]["status"], resolved[ids[0]]["response"]) == (
        "answered",
        first_options[1],
    )
    assert (resolved[ids[1]]["status"], resolved[ids[1]]["response"]) == ("rejected", None)
    check_stream(stored)


def _ask(
    client: httpx.Client, session_id: str, prompt: str, event_type: str, count: int
) -> list[dict[str, Any]]:
    """Send ``prompt`` and wait until ``count`` events of ``event_type`` are stored."""
    response = client.post(f"/v1/sessions/{session_id}/messages", json={"message": prompt})
    assert response.status_code == 204, response.text
    deadline = time.monotonic() + 10
    while len(of_type(events := events_of(client, session_id), event_type)) < count:
        assert time.monotonic() < deadline, [e["type"] for e in events]
        time.sleep(0.02)
    return events


# -- sessions: cancel, terminate, delete ----------------------------------------------------
def test_cancel_terminate_and_delete(server: ServerProcess, client: httpx.Client) -> None:
    create(client, "end")
    _ask(client, "end", "permission", "permission.requested", 2)  # the turn waits on them
    assert client.get("/v1/sessions/end").json()["status"] == "awaiting_input"
    assert ok(server, "sessions", "cancel", "end") is None
    ended = of_type(events_of(client, "end"), "turn.ended")
    assert [e["data"]["reason"] for e in ended] == ["cancelled"]
    # The turn is closed: the session takes the next message.
    response = client.post("/v1/sessions/end/messages", json={"message": OK_PROMPT})
    assert response.status_code == 204, response.text
    wait_for(client, "end", "turn.ended", after=ended[0]["sequence"])
    assert ok(server, "sessions", "terminate", "end") is None
    stored = events_of(client, "end")
    assert stored[-1]["type"] == "session.ended"
    assert stored[-1]["data"]["reason"] == "terminated"
    assert stored[-1]["data"]["terminated_by"] == "daemon"
    info = client.get("/v1/sessions/end").json()
    assert info["ended"] is True and info["status"] == "ended"
    check_stream(stored)
    assert ok(server, "sessions", "delete", "end") is None
    assert client.get("/v1/sessions/end").status_code == 404
    listed = client.get("/v1/sessions").json()["sessions"]
    assert "end" not in {s["sessionId"] for s in listed}


# -- errors and the token -------------------------------------------------------------------
def test_an_unknown_session_exits_1_with_the_problems_detail(server: ServerProcess) -> None:
    for command in (("get",), ("events",), ("events-sse",), ("send-message", "-m", "hi")):
        done = api(server, "sessions", command[0], "nobody", *command[1:])
        assert failed(done) == "error: session not found: nobody", done.stderr
        problem = json.loads(done.stderr[: done.stderr.rindex("}") + 1])
        assert problem["status"] == 404 and problem["sessionId"] == "nobody"


def test_no_token_sends_no_token(server: ServerProcess) -> None:
    # From the environment, the token is sent; with -n it is not, and the server refuses.
    assert api(server, "sessions", "list", auth=(), SANDBOX_AGENT_TOKEN=TOKEN).returncode == 0
    refused = api(server, "sessions", "list", auth=("-n",), SANDBOX_AGENT_TOKEN=TOKEN)
    assert failed(refused) == "error: token invalid"
    assert json.loads(refused.stderr[: refused.stderr.rindex("}") + 1])["status"] == 401
    # -n wins over -t too, on the streaming commands as well.
    streamed = api(server, "sessions", "events-sse", "x", auth=("-t", TOKEN, "-n"))
    assert failed(streamed) == "error: token invalid"


# -- daemon ---------------------------------------------------------------------------------
def _daemon(port: int, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [*CLI, "daemon", *args[:1], "-p", str(port), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_daemon_stop_stops_the_agents_of_its_sessions_gracefully(tmp_path: Path) -> None:
    port = free_port()
    env = _env(SANDBOX_AGENT_DATA_DIR=str(tmp_path))
    files = tmp_path / "daemon" / f"daemon-127-0-0-1-{port}"
    agent_pid_file = tmp_path / "agent.pid"
    fake = shlex.join([sys.executable, str(HELPERS / "fake_acp_agent.py"), str(agent_pid_file)])
    status = _daemon(port, env, "status")
    assert status.returncode == 1 and "daemon not running" in status.stderr
    # Server options both before a -- (those the daemon does not know) and after it.
    passed = ["--mock-delay-ms", "0", "--", "--acp-agent", f"fake={fake}"]
    store = f"sqlite:///{tmp_path / 's.db'}"
    started = _daemon(port, env, "start", "--store", store, "-t", "daemon-secret", *passed)
    assert started.returncode == 0, started.stderr
    daemon_pid = int(files.with_suffix(".pid").read_text())
    try:
        status = _daemon(port, env, "status")
        assert status.returncode == 0 and f"daemon running (PID {daemon_pid}" in status.stderr
        argv = Path(f"/proc/{daemon_pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert argv[-6:] == [
            "--store",
            store,
            "--mock-delay-ms",
            "0",
            "--acp-agent",
            f"fake={fake}",
        ]
        assert "daemon-secret" not in argv  # the token travels in the environment
        headers = {"Authorization": "Bearer daemon-secret"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/v1/sessions").status_code == 401
            response = client.post("/v1/sessions/f1", json={"agent": "acp:fake"}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["nativeSessionId"].startswith("fake-")
        agent_pid = int(agent_pid_file.read_text())
        assert alive(agent_pid) and int(stat_fields(agent_pid)[1]) == daemon_pid
        stopped = _daemon(port, env, "stop")
        assert stopped.returncode == 0 and f"daemon stopped (PID {daemon_pid})" in stopped.stderr
    finally:
        if alive(daemon_pid):  # a failed test must not leave its server running
            os.kill(daemon_pid, signal.SIGKILL)
    assert gone_within(daemon_pid) and gone_within(agent_pid)
    # The graceful stop ended the agent (stdin closed, SIGTERM); a SIGKILL leaves no marker.
    marker = stopped_marker(agent_pid_file)
    logs = sorted(tmp_path.rglob("*.log"))
    why = "\n".join(f"== {log}\n{log.read_text()}" for log in logs)
    assert marker.exists() and marker.read_text() == "SIGTERM", why
    status = _daemon(port, env, "status")
    assert status.returncode == 1 and "daemon not running" in status.stderr
    assert not files.with_suffix(".pid").exists()
    log = files.with_suffix(".log").read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log


def test_daemon_start_passes_unknown_options_to_the_server(tmp_path: Path) -> None:
    port = free_port()
    env = _env(SANDBOX_AGENT_DATA_DIR=str(tmp_path))
    # -H and -p are the daemon's own (its files, its health check): not to be passed on.
    refused = _daemon(port, env, "start", "--", "--port", "1")
    assert failed(refused) == "error: give --port to daemon start itself, not after --"
    # Without a --, an option the daemon does not know goes to the server, which refuses it.
    bad = _daemon(port, env, "start", "--mock-delay-ms", "0", "--no-such-option")
    assert bad.returncode == 1
    assert "No such option: --no-such-option" in bad.stderr  # the server's log, shown
    assert "error: the server exited with 2" in bad.stderr
    assert not (tmp_path / "daemon" / f"daemon-127-0-0-1-{port}.pid").exists()
    assert _daemon(port, env, "status").returncode == 1


def test_daemon_start_waits_for_a_daemon_still_starting(tmp_path: Path) -> None:
    port = free_port()
    env = _env(SANDBOX_AGENT_DATA_DIR=str(tmp_path))
    pid_file = tmp_path / "daemon" / f"daemon-127-0-0-1-{port}.pid"
    pid_file.parent.mkdir(parents=True)
    # A server that an earlier `daemon start` launched and that does not answer yet: it starts
    # 2 s late (exec keeps the pid), so that this start surely finds it not answering.
    server = [*CLI, "server", "-p", str(port), "--store", f"sqlite:///{tmp_path / 's.db'}"]
    command = ["bash", "-c", f"sleep 2; exec {shlex.join(server)}"]
    log = tmp_path / "earlier.log"
    with log.open("wb") as out:
        earlier = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        pid_file.write_text(str(earlier.pid))
        started = _daemon(port, env, "start")
        assert started.returncode == 0, started.stderr
        assert f"daemon running (PID {earlier.pid}" in started.stderr  # no second server
        assert pid_file.read_text() == str(earlier.pid)
        assert _daemon(port, env, "stop").returncode == 0
        earlier.wait(15)
        assert "Application shutdown complete" in log.read_text()  # the graceful stop
    finally:
        if earlier.poll() is None:
            earlier.kill()
            earlier.wait()
