"""The offline environment of the real agent CLIs in tests (``spec/agents.md``).

``require_agent(agent)`` skips a test when the agent's CLI is not installed (``sandbox-agent
install-agent``), except under CI (``in_ci()``) where a missing agent fails the test.
``offline_env`` builds the environment (a clean ``HOME``, base URLs pointing at the fake LLM,
every telemetry and update check off) and ``prepare_workspace`` writes the per-directory config
(``opencode.json``), following ``shared/reference/agents/README.md``; nothing in it can reach
past 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox_agent.agents.install import agents_dir, command_of
from sandbox_agent.testing.ci import in_ci

#: Where the agent CLIs are installed for tests: the user's agents dir, shared by every run
#: (CI keeps it between runs), not a temporary data dir.
AGENTS_DIR = agents_dir()


def require_agent(agent: str) -> list[str]:
    """The command of ``agent``; skips the test (fails it under CI) when it is not installed."""
    command = command_of(agent, AGENTS_DIR)
    if command is None:
        reason = f"{agent} is not installed (run: sandbox-agent install-agent {agent})"
        if in_ci():
            pytest.fail(f"under CI and {reason}")
        pytest.skip(reason)
    return command


def codex_config(llm_url: str) -> str:
    return f"""model = "gpt-5.5"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "Fake LLM"
base_url = "{llm_url}/v1"
wire_api = "responses"
env_key = "FAKE_API_KEY"

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
"""


def opencode_config(llm_url: str) -> dict[str, object]:
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": "fake/fake-model",
        "small_model": "fake/fake-model",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake LLM",
                "options": {"baseURL": f"{llm_url}/v1", "apiKey": "fake-key"},
                "models": {
                    "fake-model": {
                        "name": "Fake Model",
                        "tool_call": True,
                        "limit": {"context": 128000, "output": 4096},
                    }
                },
            }
        },
    }


def offline_env(llm_url: str, home: Path) -> dict[str, str]:
    """Environment for every agent CLI against the fake LLM at ``llm_url``, with ``home`` as
    ``HOME`` (created, with ``CODEX_HOME`` and its ``config.toml`` inside)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(llm_url))
    return {
        "HOME": str(home),
        "SANDBOX_AGENT_AGENTS_DIR": str(AGENTS_DIR),
        # claude (and the claude ACP adapter)
        "ANTHROPIC_BASE_URL": llm_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        # The ACP adapters refuse to run as root without it.
        "IS_SANDBOX": "1",
        # codex
        "CODEX_HOME": str(codex_home),
        "FAKE_API_KEY": "fake-key",
        # opencode
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "NO_COLOR": "1",
    }


def prepare_workspace(directory: Path, llm_url: str) -> Path:
    """A session directory with the per-project config the CLIs look for (``opencode.json``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "opencode.json").write_text(json.dumps(opencode_config(llm_url), indent=2))
    return directory
