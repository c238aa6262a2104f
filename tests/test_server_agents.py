"""``/v1/agents`` of a real server process: install status, versions, paths, credentials,
installs through the API and ``--auto-install`` (a fake ``npm`` on ``PATH``, ``helpers.fake_npm``),
``--acp-agent``, modes and models with the catalog fallback."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.agents import AgentSettings, create_adapter
from sandbox_agent.agents.catalog import capabilities_of, modes_of
from sandbox_agent.agents.install import package_of
from sandbox_agent.agents.shared import SharedServers
from sandbox_agent.server.app import agent_settings
from sandbox_agent.server.config import ServerConfig
from sandbox_agent.testing.server import ServerProcess, running

from helpers.fake_npm import fake_npm, path_without_agents

OPENAI_KEY = "sk-proj-server-test-secret-0123456789"
CREDENTIAL_VARS = (
    "ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY", "CODEX_API_KEY", "AMP_API_KEY",
)  # fmt: skip


@dataclass
class Setup:
    server: ServerProcess
    agents: Path
    fakebin: Path


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("agents-server")
    home = tmp / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": OPENAI_KEY}))
    fakebin = tmp / "fakebin"
    fake_npm(fakebin)
    # An amp CLI found on PATH only: its version comes from `amp --version`.
    executable(fakebin / "amp", '#!/bin/sh\necho "0.0.9 (fake amp)"\n')
    echo_agent = executable(tmp / "echo-agent", "#!/bin/sh\nexit 0\n")
    agents = tmp / "agents"
    agents.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env |= {
        "HOME": str(home),
        "PATH": path_without_agents(fakebin),
        "SANDBOX_AGENT_AGENTS_DIR": str(agents),
        "SANDBOX_AGENT_TOKEN": "",
    }
    args = [
        "--no-token", "--auto-install", "--log-level", "info",
        "--acp-agent", f"echo={echo_agent} --acp",
        "--acp-agent", "gemini=gemini-not-installed --experimental-acp",
    ]  # fmt: skip
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log", env=env, args=args) as server:
        yield Setup(server, agents, fakebin)


@pytest.fixture
def client(setup: Setup) -> Iterator[httpx.Client]:
    with setup.server.client() as c:
        yield c


def agents_of(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/agents")
    assert response.status_code == 200, response.text
    assert OPENAI_KEY not in response.text
    return {a["id"]: a for a in response.json()["agents"]}


def problem(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:sandbox-agent:error:{name}"
    return body


def npm_calls(setup: Setup) -> list[str]:
    log = setup.agents / "npm-calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_list_shows_what_is_installed_and_what_credentials_exist(
    client: httpx.Client, setup: Setup
) -> None:
    response = client.get("/v1/agents")
    ids = [a["id"] for a in response.json()["agents"]]
    assert ids == [
        "claude", "codex", "opencode", "amp", "mock",
        "acp:claude", "acp:codex", "acp:echo", "acp:gemini", "acp:opencode",
    ]  # fmt: skip
    agents = agents_of(client)
    mock = agents["mock"]
    assert (mock["installed"], mock["version"], mock["credentialsAvailable"]) == (
        True,
        "builtin",
        True,
    )
    assert "path" not in mock and "serverStatus" not in mock
    for agent in ("claude", "codex", "opencode", "acp:claude", "acp:codex", "acp:gemini"):
        assert agents[agent]["installed"] is False, agent
        assert "version" not in agents[agent] and "path" not in agents[agent]
    amp = agents["amp"]
    assert amp["installed"] is True
    assert (amp["path"], amp["version"]) == (str(setup.fakebin / "amp"), "0.0.9")
    assert agents["acp:echo"]["installed"] is True
    assert agents["acp:echo"]["path"].endswith("echo-agent")
    assert "version" not in agents["acp:echo"]  # a configured command is never run for it
    # An OpenAI key in ~/.codex/auth.json: codex and opencode have one; claude and amp do not.
    available = {a: info["credentialsAvailable"] for a, info in agents.items()}
    assert available == {
        "claude": False, "codex": True, "opencode": True, "amp": False, "mock": True,
        "acp:claude": False, "acp:codex": True, "acp:echo": True, "acp:gemini": True,
        "acp:opencode": True,
    }  # fmt: skip
    for shared in ("codex", "opencode"):
        assert agents[shared]["capabilities"]["sharedProcess"] is True
        assert agents[shared]["serverStatus"] == {"status": "stopped", "restartCount": 0}
    assert "serverStatus" not in agents["claude"]
    assert agents["claude"]["capabilities"]["permissions"] is True
    assert agents["acp:echo"]["capabilities"]["permissions"] is True
    # The key found went to the agents' environment: named in the log, never its value.
    log = setup.server.log()
    assert "passing credentials to agents: CODEX_API_KEY, OPENAI_API_KEY" in log
    assert OPENAI_KEY not in log


def test_modes_and_models_fall_back_to_the_catalog(client: httpx.Client) -> None:
    modes = client.get("/v1/agents/opencode/modes").json()["modes"]
    assert [m["id"] for m in modes] == ["build", "plan", "custom"]
    assert [m["id"] for m in client.get("/v1/agents/codex/modes").json()["modes"]] == [
        "build",
        "plan",
    ]
    claude = client.get("/v1/agents/claude/models").json()
    assert claude["defaultModel"] == "default"
    assert [m["id"] for m in claude["models"]] == ["default", "sonnet", "opus", "haiku"]
    assert client.get("/v1/agents/amp/models").json()["defaultModel"] == "amp-default"
    assert client.get("/v1/agents/codex/models").json() == {"models": []}
    assert client.get("/v1/agents/acp:gemini/modes").json()["modes"][0]["id"] == "build"
    problem(client.get("/v1/agents/acp:nope/modes"), 400, "unsupported_agent")
    problem(client.get("/v1/agents/nope/models"), 400, "unsupported_agent")


def test_install_through_the_api(client: httpx.Client, setup: Setup) -> None:
    before = len(npm_calls(setup))
    response = client.post("/v1/agents/claude/install", json={})
    assert response.status_code == 204, response.text
    claude = agents_of(client)["claude"]
    binary = setup.agents / "node_modules" / ".bin" / "claude"
    assert (claude["installed"], claude["version"], claude["path"]) == (
        True,
        package_of("claude").version,  # type: ignore[union-attr]
        str(binary),
    )
    assert len(npm_calls(setup)) == before + 1
    # Installed already: nothing to do; a reinstall runs npm again with --force.
    assert client.post("/v1/agents/claude/install").status_code == 204
    assert len(npm_calls(setup)) == before + 1
    assert client.post("/v1/agents/claude/install", json={"reinstall": True}).status_code == 204
    assert "--force" in npm_calls(setup)[-1]
    # Nothing to install for the mock and for a configured ACP agent whose command exists.
    assert client.post("/v1/agents/mock/install").status_code == 204
    assert client.post("/v1/agents/acp:echo/install").status_code == 204
    body = problem(client.post("/v1/agents/acp:gemini/install"), 500, "install_failed")
    assert "--acp-agent" in body["detail"]
    problem(client.post("/v1/agents/acp:nope/install"), 400, "unsupported_agent")
    assert len(npm_calls(setup)) == before + 2


def test_a_failed_install_is_problem_json(client: httpx.Client, setup: Setup) -> None:
    (setup.agents / "fake-npm-mode").write_text("enotfound")
    try:
        body = problem(client.post("/v1/agents/codex/install"), 500, "install_failed")
        assert body["detail"] == (
            "install failed: codex: the npm registry could not be reached (ENOTFOUND)"
        )
        assert agents_of(client)["codex"]["installed"] is False
    finally:
        (setup.agents / "fake-npm-mode").unlink()


def test_auto_install_runs_npm_for_a_missing_agent(client: httpx.Client, setup: Setup) -> None:
    """A session on a missing agent installs it first (the version asked for, if any). npm
    "succeeds" without installing anything here, so the session fails with install_failed."""
    (setup.agents / "fake-npm-mode").write_text("nobin")
    try:
        response = client.post(
            "/v1/sessions/auto-1", json={"agent": "opencode", "agentVersion": "1.2.3"}
        )
        body = problem(response, 500, "install_failed")
        assert "npm succeeded but opencode is not in" in body["detail"]
        assert npm_calls(setup)[-1].endswith("opencode-ai@1.2.3")
        assert client.get("/v1/sessions/auto-1").status_code == 404
    finally:
        (setup.agents / "fake-npm-mode").unlink()


# -- in-process pieces ------------------------------------------------------------------------
def test_the_server_passes_found_keys_to_agents_and_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".amp").mkdir()
    (tmp_path / ".amp" / "config.json").write_text(json.dumps({"apiKey": "sk-ant-amp-123456"}))
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": OPENAI_KEY}))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CODEX_API_KEY", "mine")  # the server's own: not overridden
    settings = asyncio.run(
        agent_settings(
            ServerConfig(
                agents_dir=str(tmp_path / "agents"),
                auto_install=True,
                acp_commands={"x": ("x-agent", "--acp")},
            )
        )
    )
    assert settings.extra_env == {
        "ANTHROPIC_API_KEY": "sk-ant-amp-123456",
        "CLAUDE_API_KEY": "sk-ant-amp-123456",
        "OPENAI_API_KEY": "mine",  # CODEX_API_KEY is found first, from the environment
    }
    assert "sk-ant-amp" not in repr(settings)
    assert settings.auto_install and settings.installed_in() == tmp_path / "agents"
    assert settings.command("acp:x") == ["x-agent", "--acp"]
    off = asyncio.run(agent_settings(ServerConfig(pass_credentials=False)))
    assert off.extra_env == {}


async def test_shared_server_status() -> None:
    @dataclass
    class Fake:
        alive: bool = True
        base_url: str = "http://127.0.0.1:4096"

        async def stop(self) -> None:
            self.alive = False

    async def start() -> Fake:
        return Fake()

    shared = SharedServers()
    assert shared.status("opencode").status == "stopped"
    first = await shared.get("opencode", start)
    status = shared.status("opencode")
    assert (status.status, status.base_url, status.restart_count) == (
        "running",
        "http://127.0.0.1:4096",
        0,
    )
    assert status.uptime_ms is not None and status.uptime_ms >= 0
    first.alive = False
    assert shared.status("opencode").status == "error"
    await shared.get("opencode", start)
    assert shared.status("opencode").restart_count == 1
    await shared.stop_all()
    assert shared.status("opencode").status == "stopped"


@pytest.mark.parametrize("agent", ["claude", "codex", "opencode", "amp", "mock", "acp:claude"])
async def test_the_catalog_matches_the_adapters(agent: str) -> None:
    """The catalog answers when an adapter cannot: it must say what the adapter says."""

    async def sink(drafts: object) -> None:
        return None

    adapter = create_adapter(agent, sink, AgentSettings())
    assert adapter.capabilities == capabilities_of(agent)
    if agent != "opencode":  # opencode's modes are a live lookup
        assert await adapter.modes() == modes_of(agent)
