"""Agent isolation (issue 15): an agent's process gets neither the server's variables (its token
above all) nor other agents' credentials; a session's directory stays inside the server's root
and a prompt's attachments inside the session's directory, symlinks included; ``agentVersion``
is a version or a dist tag, never a package spec for npm.

Through a real server with a probe ACP agent (``helpers/probe_acp_agent.py``) that writes down
its environment and the prompts it gets, and in process where that is enough."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentSettings, Attachment
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.install import InvalidAgentVersion, check_version, install
from sandbox_agent.sessions import PathOutsideRoot, SessionConfig, SessionEngine
from sandbox_agent.store import open_store
from sandbox_agent.testing.server import ServerProcess, events_of, problem, running

from helpers.children import HELPERS
from helpers.fake_npm import fake_npm, path_without_agents

TOKEN = "isolation-token-0123456789"
SECRET = b"\x89PNG the secret outside the root"
INSIDE = b"\x89PNG a picture inside the session directory"
#: Every credential variable the server knows (``credentials.PROVIDER_VARIABLES``).
CREDENTIALS = {
    "ANTHROPIC_API_KEY": "sk-ant-server-env",
    "CLAUDE_API_KEY": "sk-ant-server-env",
    "CLAUDE_CODE_OAUTH_TOKEN": "oauth-server-env",
    "ANTHROPIC_AUTH_TOKEN": "oauth-server-env",
    "OPENAI_API_KEY": "sk-openai-server-env",
    "CODEX_API_KEY": "sk-openai-server-env",
    "AMP_API_KEY": "sgamp-server-env",
}
_ids = itertools.count(1)


@dataclass
class Setup:
    server: ServerProcess
    root: Path
    workspace: Path
    outside: Path
    probe: Path

    def client(self) -> httpx.Client:
        return self.server.client(headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("isolation").resolve()
    root, outside, probe, home = tmp / "root", tmp / "outside", tmp / "probe", tmp / "home"
    workspace = root / "ws"
    for directory in (workspace, outside, probe, home / ".codex"):
        directory.mkdir(parents=True)
    (outside / "secret.png").write_bytes(SECRET)
    (workspace / "inside.png").write_bytes(INSIDE)
    (workspace / "link.png").symlink_to(outside / "secret.png")
    (workspace / "linkdir").symlink_to(outside)
    (root / "escape").symlink_to(outside)
    # A key in a config file: the server passes it on (extra_env), to codex only.
    (home / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "sk-openai-from-file"}')
    command = shlex.join([sys.executable, str(HELPERS / "probe_acp_agent.py"), str(probe)])
    env = {
        **CREDENTIALS,
        "HOME": str(home),
        "SANDBOX_AGENT_TOKEN": TOKEN,  # the server's token comes from its environment
        "SANDBOX_AGENT_DATA_DIR": str(tmp / "data"),
        "SANDBOX_AGENT_STORE": "postgresql://app:db-password@127.0.0.1/app",
        "ISOLATION_PROBE": "kept",
    }
    args = ["--root", str(root), "--acp-agent", f"probe={command}"]
    url = f"sqlite:///{tmp / 's.db'}"
    with running(url, tmp / "server.log", args=args, env=env) as server:
        yield Setup(server, root, workspace, outside, probe)


def _probe_session(setup: Setup, client: httpx.Client, session_id: str) -> None:
    """Create an ``acp:probe`` session in the workspace (its probe writes ``env.json``)."""
    body = {"agent": "acp:probe", "directory": str(setup.workspace)}
    response = client.post(f"/v1/sessions/{session_id}", json=body)
    assert response.status_code == 200, response.text


def _prompts(setup: Setup) -> list[list[dict[str, Any]]]:
    path = setup.probe / "prompts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the environment ----------------------------------------------------------------------------
def test_an_agent_gets_neither_the_servers_variables_nor_other_agents_credentials(
    setup: Setup,
) -> None:
    with setup.client() as client:
        _probe_session(setup, client, "env")
    env = json.loads((setup.probe / "env.json").read_text())
    assert [name for name in env if name.startswith("SANDBOX_AGENT_")] == []
    assert not [name for name, value in env.items() if TOKEN in value or "db-password" in value]
    # A custom ACP agent uses no provider we know of: no credential, neither the server's own
    # nor the one found in a config file.
    assert sorted(set(env) & {*CREDENTIALS, "OPENAI_API_KEY"}) == []
    assert "sk-openai-from-file" not in json.dumps(env)
    assert env["ISOLATION_PROBE"] == "kept"  # the rest of the server's environment
    assert env["PWD"] == str(setup.workspace)


@pytest.mark.parametrize(
    ("agent", "own"),
    [
        ("claude", {"ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
                    "ANTHROPIC_AUTH_TOKEN"}),
        ("acp:claude", {"ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
                        "ANTHROPIC_AUTH_TOKEN"}),
        ("codex", {"OPENAI_API_KEY", "CODEX_API_KEY"}),
        ("acp:codex", {"OPENAI_API_KEY", "CODEX_API_KEY"}),
        ("opencode", {*CREDENTIALS} - {"AMP_API_KEY"}),
        ("amp", {"AMP_API_KEY"}),
        ("acp:custom", set()),
        (None, set()),  # npm
    ],
)  # fmt: skip
def test_credentials_go_only_to_the_agents_of_their_provider(
    agent: str | None, own: set[str]
) -> None:
    server = {**CREDENTIALS, "SANDBOX_AGENT_TOKEN": TOKEN, "SANDBOX_AGENT_X": "1", "LANG": "C"}
    extra = {"OPENAI_API_KEY": "from-a-file", "FAKE_AGENT_FLAG": "1"}
    env = agent_environment(agent, "/work", extra, base=server)
    assert set(env) == own | {"LANG", "FAKE_AGENT_FLAG", "PWD"}
    assert env["PWD"] == "/work"
    if "OPENAI_API_KEY" in own:
        assert env["OPENAI_API_KEY"] == "from-a-file"


# -- attachments --------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["messages", "messages/stream"])
@pytest.mark.parametrize(
    "attachment",
    [
        "../../outside/secret.png",  # .. out of the session's directory
        "{outside}/secret.png",  # absolute
        "link.png",  # a symlink inside, to a file outside
        "linkdir/secret.png",  # through a symlinked directory
        "../escape/secret.png",  # through a symlink in the root, out of it
    ],
)
def test_an_attachment_outside_the_session_directory_is_refused_and_nothing_recorded(
    setup: Setup, route: str, attachment: str
) -> None:
    path = attachment.format(outside=setup.outside)
    session_id = f"att-{next(_ids)}"
    with setup.client() as client:
        _probe_session(setup, client, session_id)
        before = events_of(client, session_id)
        prompts = len(_prompts(setup))
        body = {"message": "look", "attachments": [{"path": path, "mime": "image/png"}]}
        response = client.post(f"/v1/sessions/{session_id}/{route}", json=body)
        refused = problem(response, 400, "path_outside_root")
        assert path in refused["detail"] and refused["details"] == {"attachment": path}
        assert events_of(client, session_id) == before
    assert len(_prompts(setup)) == prompts  # the agent got nothing
    assert base64.b64encode(SECRET).decode() not in json.dumps(_prompts(setup))


def test_an_attachment_inside_reaches_the_agent_by_its_resolved_path(setup: Setup) -> None:
    with setup.client() as client:
        _probe_session(setup, client, "inside")
        body = {"message": "look", "attachments": [{"path": "inside.png", "mime": "image/png"}]}
        response = client.post("/v1/sessions/inside/messages", json=body)
        assert response.status_code == 204, response.text
        events = events_of(client, "inside")
    resolved = str(setup.workspace / "inside.png")
    user = next(e for e in events if e["type"] == "item.completed")
    assert user["data"]["item"]["content"][1]["path"] == resolved
    blocks = _prompts(setup)[-1]
    assert blocks[1] == {
        "type": "image",
        "data": base64.b64encode(INSIDE).decode(),
        "mimeType": "image/png",
    }


# -- the session's directory --------------------------------------------------------------------
@pytest.mark.parametrize("directory", ["/", "..", "{outside}", "escape", "{root}/ws/linkdir"])
def test_a_directory_outside_the_root_is_refused(setup: Setup, directory: str) -> None:
    directory = directory.format(outside=setup.outside, root=setup.root)
    session_id = f"dir-{next(_ids)}"
    with setup.client() as client:
        response = client.post(
            f"/v1/sessions/{session_id}", json={"agent": "mock", "directory": directory}
        )
        refused = problem(response, 400, "path_outside_root")
        assert refused["details"] == {"directory": directory}
        assert client.get(f"/v1/sessions/{session_id}").status_code == 404


def test_a_directory_inside_the_root_is_kept_resolved(setup: Setup) -> None:
    with setup.client() as client:
        response = client.post("/v1/sessions/dir-in", json={"agent": "mock", "directory": "ws"})
        assert response.status_code == 200, response.text
        assert client.get("/v1/sessions/dir-in").json()["directory"] == str(setup.workspace)


# -- agentVersion -------------------------------------------------------------------------------
ACCEPTED = [
    "1.2.3", "^1.2.3", "~1.2", "1.x", "*", ">=1.0.0 <2.0.0", "1.2.3 - 2.0.0", "^1 || ^2",
    "v2.1.332", "1.2.3-beta.1", "1.0.0+build.5", "0.0.1790142911-g7618fb", "latest", "next",
    "beta", "canary-2",
]  # fmt: skip
REFUSED = [
    "file:/etc", "file:../agent", "npm:other-package@1", "git+https://github.com/x/y.git",
    "github:user/repo", "https://example.com/agent.tgz", "./agent", "../agent", "/tmp/agent",
    "user/repo", "@scope/pkg", "latest@1", "1.2.3 && touch /tmp/x", "1.2.3#x", "", " ",
    "1.2.3\n", "-1", "x" * 300,
]  # fmt: skip


@pytest.mark.parametrize("version", ACCEPTED)
def test_agent_version_accepts_versions_ranges_and_dist_tags(version: str) -> None:
    check_version("claude", version)


@pytest.mark.parametrize("version", REFUSED)
def test_agent_version_refuses_every_other_spec(version: str) -> None:
    with pytest.raises(InvalidAgentVersion):
        check_version("claude", version)


async def test_a_package_spec_never_reaches_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", path_without_agents(tmp_path / "bin"))
    fake_npm(tmp_path / "bin")
    with pytest.raises(InvalidAgentVersion):
        await install("claude", version="file:/etc", directory=tmp_path / "agents")
    assert not (tmp_path / "agents" / "npm-calls.log").exists()


@pytest.mark.parametrize("version", ["file:/etc/passwd", "npm:other-package@1"])
def test_a_session_with_a_package_spec_as_agent_version_is_refused(
    setup: Setup, version: str
) -> None:
    with setup.client() as client:
        response = client.post(
            "/v1/sessions/version", json={"agent": "mock", "agentVersion": version}
        )
        refused = problem(response, 400, "invalid_request")
        assert "agentVersion" in refused["detail"]
        assert client.get("/v1/sessions/version").status_code == 404


# -- the engine in process ----------------------------------------------------------------------
@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[SessionEngine]:
    store = await open_store("memory://")
    (tmp_path / "root").mkdir()
    root = str(tmp_path / "root")
    engine = SessionEngine(store, settings=AgentSettings(mock_delay_ms=0), root=root)
    try:
        yield engine
    finally:
        await engine.shutdown()
        await store.close()


async def test_a_queued_prompt_with_an_attachment_outside_is_refused_too(
    engine: SessionEngine, tmp_path: Path
) -> None:
    live = await engine.create("q", SessionConfig(agent="mock"))
    await live.send_message("permission")  # the turn waits for answers: the next is queued
    asked = 0
    async with asyncio.timeout(10):  # until the mock's two requests are in
        async for event in engine.store.subscribe("q", after=0):
            asked += event.type == "permission.requested"
            if asked == 2:
                break
    before = live.last_sequence
    with pytest.raises(PathOutsideRoot):
        await live.send_message("second", [Attachment(path=str(tmp_path / "s.db"))])
    assert live.last_sequence == before and live.state.queued == []
    queued = await live.send_message("second", [Attachment(path="notes.txt")])
    assert queued.queue_id == "q_1"
