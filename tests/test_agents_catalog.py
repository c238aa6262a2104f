"""The one agent table (``agents/catalog.py``) and what the registry makes of it: mode
normalisation (upstream section 3.5), adapters, install status, packages, credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_agent.agents import (
    AGENT_IDS,
    AgentSettings,
    InvalidMode,
    ModeNotSupported,
    UnsupportedAgent,
    create_adapter,
    is_installed,
    spec_of,
)
from sandbox_agent.agents.catalog import (
    ACP_CAPABILITIES,
    PERMISSION_MODES,
    SPECS,
    capabilities_of,
    models_of,
    modes_of,
)
from sandbox_agent.agents.credentials import AGENT_PROVIDERS
from sandbox_agent.agents.install import command_of, package_of
from sandbox_agent.agents.registry import executable, resolve_agent


async def _discard(drafts: object) -> None:
    return None


# (agent, agentMode, permissionMode) -> normalised pair, or the error raised.
NORMALISED: list[tuple[str, str | None, str | None, tuple[str, str] | type[Exception]]] = [
    ("mock", None, None, ("build", "default")),
    ("mock", "plan", "plan", ("plan", "plan")),
    ("mock", "plan", "bypass", ("plan", "bypass")),
    ("mock", "build", "acceptEdits", ("build", "default")),  # acceptEdits: default, not claude
    ("mock", "custom", None, ModeNotSupported),
    ("claude", "plan", "acceptEdits", ("plan", "acceptEdits")),
    ("claude", None, "bypass", ("build", "bypass")),
    ("claude", "review", None, ModeNotSupported),
    ("codex", "plan", "acceptEdits", ("plan", "acceptEdits")),
    ("codex", None, "plan", ("build", "plan")),
    ("opencode", "any-agent-name", "bypass", ("any-agent-name", "bypass")),
    ("opencode", None, "acceptEdits", ("build", "default")),
    ("opencode", None, "plan", ModeNotSupported),
    ("amp", None, "bypass", ("build", "bypass")),
    ("amp", "plan", None, ModeNotSupported),
    ("amp", None, "plan", ModeNotSupported),
    ("acp:claude", "whatever-the-agent-offers", None, ("whatever-the-agent-offers", "default")),
    ("acp:mine", None, "bypass", ModeNotSupported),
    ("acp:mine", None, "acceptEdits", ("build", "default")),
    ("claude", None, "yolo", InvalidMode),
    ("mock", None, "", ("build", "default")),
]


@pytest.mark.parametrize(("agent", "agent_mode", "permission_mode", "expected"), NORMALISED)
def test_modes_are_normalised_as_upstream_does(
    agent: str,
    agent_mode: str | None,
    permission_mode: str | None,
    expected: tuple[str, str] | type[Exception],
) -> None:
    spec = spec_of(agent)
    if isinstance(expected, tuple):
        assert spec.normalise_modes(agent_mode, permission_mode) == expected
    else:
        with pytest.raises(expected):
            spec.normalise_modes(agent_mode, permission_mode)


def test_a_refused_mode_names_the_agent_and_the_mode() -> None:
    with pytest.raises(ModeNotSupported) as refused:
        spec_of("amp").normalise_modes("plan", None)
    assert (refused.value.agent, refused.value.mode) == ("amp", "plan")
    assert str(refused.value) == "mode not supported: amp plan"
    with pytest.raises(InvalidMode) as invalid:
        spec_of("claude").normalise_modes(None, "yolo")
    assert invalid.value.mode == "yolo"
    assert str(invalid.value) == "invalid permission mode: yolo"


def test_every_agent_takes_build_and_default_and_only_known_permission_modes() -> None:
    for spec in SPECS.values():
        assert spec.normalise_modes(None, None) == ("build", "default")
        assert set(spec.permission_modes) <= set(PERMISSION_MODES)
        listed = {m.id for m in spec.modes}
        if spec.agent_modes is not None:
            assert set(spec.agent_modes) <= listed, spec.id


def test_the_table_lists_the_agents_in_order() -> None:
    assert AGENT_IDS == ("claude", "codex", "opencode", "amp", "mock")
    assert list(SPECS) == [*AGENT_IDS, "acp:claude", "acp:codex", "acp:opencode"]
    assert all(spec.id == agent for agent, spec in SPECS.items())


def test_only_the_mock_is_built_in_and_every_other_agent_has_a_package() -> None:
    assert [a for a, s in SPECS.items() if s.builtin] == ["mock"]
    for agent, spec in SPECS.items():
        assert (spec.npm is None) == spec.builtin, agent
        assert package_of(agent) is spec.npm
    assert package_of("acp:mine") is None
    assert SPECS["acp:opencode"].npm is not None and SPECS["acp:opencode"].npm.args == ("acp",)


def test_credentials_come_from_the_table() -> None:
    assert {a: s.credentials for a, s in SPECS.items() if s.credentials} == AGENT_PROVIDERS
    assert "mock" not in AGENT_PROVIDERS
    assert AGENT_PROVIDERS["opencode"] == ("openai", "anthropic", "*")


def test_unknown_agents_and_configured_acp_agents() -> None:
    with pytest.raises(UnsupportedAgent):
        spec_of("gemini")
    custom = spec_of("acp:mine")
    assert custom.capabilities == ACP_CAPABILITIES and custom.npm is None
    assert capabilities_of("gemini") == capabilities_of("nope")
    assert [m.id for m in modes_of("gemini")] == ["build"]
    assert models_of("gemini").models == []
    with pytest.raises(UnsupportedAgent, match="unknown ACP agent"):
        resolve_agent("acp:mine", AgentSettings())
    configured = AgentSettings(acp_commands={"mine": ("python3", "agent.py")})
    assert resolve_agent("acp:mine", configured).id == "acp:mine"


@pytest.mark.parametrize("agent", [*AGENT_IDS, "acp:claude", "acp:codex", "acp:opencode"])
def test_each_adapter_is_made_from_its_spec(agent: str) -> None:
    adapter = create_adapter(agent, _discard, AgentSettings())
    assert adapter.id == agent
    assert adapter.capabilities == spec_of(agent).capabilities


def test_the_mock_is_installed_and_others_when_their_executable_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    settings = AgentSettings(agents_dir=tmp_path / "agents")
    assert is_installed("mock", settings) and executable("mock", settings) is None
    assert not is_installed("claude", settings)
    binary = tmp_path / "agents" / "node_modules" / ".bin" / "claude"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert command_of("claude", settings.installed_in()) == [str(binary)]
    assert is_installed("claude", settings) and executable("claude", settings) == str(binary)
    # An --acp-agent command counts once its first word is found.
    tool = tmp_path / "bin" / "my-agent"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    missing = AgentSettings(acp_commands={"mine": ("my-agent", "--acp")})
    assert not is_installed("acp:mine", missing)
    monkeypatch.setenv("PATH", str(tool.parent) + os.pathsep + str(tmp_path / "empty"))
    assert is_installed("acp:mine", missing)
