"""Upstream's TypeScript SDK (``sandbox-agent@0.4.2``, pinned in tests/upstream_sdk, installed
there by ``.ci/run`` with ``npm ci``) runs its own session flow against our server
(tests/upstream_sdk/flow.mjs): create a session with the mock agent, prompt, stream updates,
answer a permission request of an ACP agent process (tests/helpers/acp_relay_agent.py), list
sessions; then our server is SIGKILLed and restarted, and a new SDK instance on the same
persistence driver resumes the session and prompts again. Every envelope the SDK persisted is in
our store too. Skipped when node or the folder's node_modules is missing, a failure under CI."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.testing.ci import in_ci
from sandbox_agent.testing.consistency import check_store
from sandbox_agent.testing.server import ServerProcess

FOLDER = Path(__file__).parent / "upstream_sdk"
RELAY_AGENT = shlex.join(
    [sys.executable, str(Path(__file__).parent / "helpers" / "acp_relay_agent.py")]
)
#: Seconds each phase of the node script may take before the test gives up on it.
PHASE_TIMEOUT = 60


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (FOLDER / "node_modules" / "sandbox-agent").is_dir():
        return f"the upstream SDK is not installed: run `npm ci` in {FOLDER}"
    return None


@pytest.fixture
def node() -> str:
    reason = _missing()
    if reason is not None:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return str(shutil.which("node"))


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(PHASE_TIMEOUT)
        assert proc.stderr is not None
        raise AssertionError(f"the SDK flow ended early: {proc.stderr.read()}")
    result: dict[str, Any] = json.loads(line)
    return result


def _store_messages(client: httpx.Client) -> list[dict[str, Any]]:
    """Every envelope of every ACP server's stream in our store."""
    messages: list[dict[str, Any]] = []
    for session in client.get("/v1/sessions").json()["sessions"]:
        if not session["sessionId"].startswith("acp-"):
            continue
        events = client.get(f"/v1/sessions/{session['sessionId']}/events").json()["events"]
        messages += [e["data"]["message"] for e in events if e["type"] == "acp.message"]
    return messages


@pytest.mark.slow  # a node process, a server restart: about 10 s
def test_upstream_sdk_flow_survives_a_sigkill(node: str, tmp_path: Path) -> None:
    args = ("--no-token", "--acp-agent", f"relay={RELAY_AGENT}")
    server = ServerProcess(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "s.log", args=args).start()
    proc = subprocess.Popen(
        [node, str(FOLDER / "flow.mjs"), server.url, "relay"],
        cwd=FOLDER,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = _line(proc)
        assert first["stopReason"] == "end_turn"
        permission = first["permission"]
        assert permission["asked"] == [["yes", "no"]]
        assert permission["said"] == ["chose yes"]  # the SDK's "once" is the allow_once option
        assert permission["stopReason"] == "end_turn"
        assert sorted(first["listed"]) == sorted([first["sessionId"], permission["sessionId"]])
        texts = [u["content"]["text"] for u in first["updates"]]
        assert texts == ["mock: hello"]
        senders = {e["sender"] for e in first["events"]}
        assert senders == {"client", "agent"}

        server.kill()
        server.restart()
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

        second = _line(proc)
        assert second["stopReason"] == "end_turn"
        prompts = [
            e["payload"]
            for e in second["events"]
            if e["sender"] == "client" and e["payload"].get("method") == "session/prompt"
        ]
        assert len(prompts) == 2
        # The SDK restored the session on a new connection with its history replayed.
        replay_text = prompts[1]["params"]["prompt"][0]["text"]
        assert "Previous session history is replayed below" in replay_text
        assert proc.wait(PHASE_TIMEOUT) == 0

        # What the SDK persisted on its side is in our store (which holds more: initialize).
        with server.client() as client:
            ours = _store_messages(client)
        for event in second["events"]:
            assert event["payload"] in ours, event
        # Our store kept the turns of every connection, restart or not.
        assert sum(1 for m in ours if m.get("method") == "session/prompt") == 3
        with server.client() as client:
            sessions = client.get("/v1/sessions").json()["sessions"]
            relay = next(s["sessionId"] for s in sessions if "relay" in s["sessionId"])
            events = client.get(f"/v1/sessions/{relay}/events").json()["events"]
        resolved = [e["data"]["status"] for e in events if e["type"] == "permission.resolved"]
        assert resolved == ["accept"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    check_store(server.store_url)


@pytest.mark.agents  # claude-agent-acp installed (CI: install-agent acp:claude), the fake LLM
def test_upstream_sdk_prompts_claude(node: str, tmp_path: Path) -> None:
    """The SDK's ``createSession({agent: "claude"})``: our endpoint runs ``acp:claude``
    (claude-agent-acp) against the fake LLM, and the turn is in our store as universal events."""
    from helpers.agent_env import offline_env, prepare_workspace, require_agent
    from helpers.fake_llm import FakeLLM

    require_agent("acp:claude")
    with FakeLLM() as llm:
        workspace = prepare_workspace(tmp_path / "ws", llm.url)
        env = offline_env(llm.url, tmp_path / "home")
        env["SANDBOX_AGENT_DATA_DIR"] = str(tmp_path / "data")
        args = ("--no-token", "--root", str(tmp_path))
        server = ServerProcess(
            f"sqlite:///{tmp_path / 's.db'}", tmp_path / "s.log", env=env, args=args
        ).start(timeout=90)
        try:
            done = subprocess.run(
                [node, str(FOLDER / "prompt.mjs"), server.url, "claude", str(workspace), "hi"],
                cwd=FOLDER,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            assert answer["stopReason"] == "end_turn"
            assert "Hello from fake LLM" in "".join(answer["texts"])
            with server.client() as client:
                sessions = client.get("/v1/sessions").json()["sessions"]
                (acp,) = [s["sessionId"] for s in sessions if s["sessionId"].startswith("acp-")]
                events = client.get(f"/v1/sessions/{acp}/events").json()["events"]
            types = [e["type"] for e in events]
            assert types.count("turn.started") == 1 and types.count("turn.ended") == 1
            assistant = [
                e
                for e in events
                if e["type"] == "item.completed" and e["data"]["item"]["role"] == "assistant"
            ]
            assert assistant
        finally:
            server.stop(timeout=30)
            server.kill()
    check_store(server.store_url)  # the replay invariant check passes on the ACP stream
