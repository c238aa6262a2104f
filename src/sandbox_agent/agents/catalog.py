"""The one agent table: an ``AgentSpec`` per agent, in ``SPECS``.

A spec says everything the server knows about an agent before running it: its capabilities,
modes and models (when nothing better is known), the agent and permission modes a session may
ask for (``AgentSpec.normalise_modes``), the pinned npm package it installs from, the credential
providers it reads, and whether it is built in (the mock: nothing to install). The adapters read
their capabilities, modes and models from it, so it imports no adapter; ``registry.py`` (above
the adapters) holds what makes each agent's adapter and tells whether an agent is installed,
``install.py`` installs its package, ``credentials.py`` picks its credential.

Ids: ``claude``, ``codex``, ``opencode``, ``amp``, ``mock``, and ``acp:<name>`` for any Agent
Client Protocol agent: ``acp:claude``, ``acp:codex`` and ``acp:opencode`` are in the table (pinned
npm packages); others are configured by command line (``--acp-agent NAME=COMMAND``) and get
``acp_spec``.

Values start from upstream v0.1's (``reference/upstream-behaviour.md`` sections 3.3 to 3.5, 4.7)
and follow what this build's adapters map (more than upstream: HITL for every agent that has it,
claude's plan mode, opencode's reasoning and tool kinds...); keep them equal to the adapters'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox_agent.agents.base import AgentCapabilities, AgentMode, AgentModel, AgentModels
from sandbox_agent.agents.errors import InvalidMode, ModeNotSupported, UnsupportedAgent

ACP_PREFIX = "acp:"

#: Every permission mode a session may name (v0.1); each agent takes some of them.
PERMISSION_MODES: tuple[str, ...] = ("default", "plan", "bypass", "acceptEdits")


@dataclass(frozen=True)
class NpmPackage:
    """Where an agent comes from and how it is started."""

    package: str
    version: str
    #: The executable the package puts in ``node_modules/.bin``.
    binary: str
    #: Arguments that come before ours (``opencode acp``).
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentSpec:
    """What the server knows of one agent before running it."""

    id: str
    capabilities: AgentCapabilities
    #: ``GET /v1/agents/{agent}/modes`` when the agent gives no live list.
    modes: tuple[AgentMode, ...]
    #: The agent modes a session may ask for; None: any name (OpenCode's own agents, ACP modes).
    agent_modes: tuple[str, ...] | None
    #: The permission modes a session may ask for (``acceptEdits`` becomes ``default`` where it
    #: is not one of them).
    permission_modes: tuple[str, ...]
    #: ``GET /v1/agents/{agent}/models`` when the agent gives no live list (empty: only it knows).
    models: AgentModels = field(default_factory=AgentModels)
    #: Its pinned npm package; None: built in, or configured by ``--acp-agent``.
    npm: NpmPackage | None = None
    #: The credential providers it reads, in the order one is picked (``"*"``: any other LLM
    #: provider found; ``credentials.Credentials.for_agent``); empty: none we know of.
    credentials: tuple[str, ...] = ()
    #: Runs inside the server: always installed, nothing to install.
    builtin: bool = False
    #: Where it reads a project's skills besides ``.agents/skills`` (which every session gets,
    #: and codex and amp read): directories relative to its working directory.
    skill_dirs: tuple[str, ...] = ()

    def normalise_modes(
        self, agent_mode: str | None, permission_mode: str | None
    ) -> tuple[str, str]:
        """(agent mode, permission mode) of a new session as v0.1 normalises them.

        None means the default (``build``, ``default``). ``acceptEdits`` becomes ``default`` for
        an agent that does not take it. Raises ``InvalidMode`` for a permission mode that is none
        of ``PERMISSION_MODES``, and ``ModeNotSupported`` for a mode this agent does not take.
        """
        agent_mode = agent_mode or "build"
        if self.agent_modes is not None and agent_mode not in self.agent_modes:
            raise ModeNotSupported(self.id, agent_mode)
        permission_mode = permission_mode or "default"
        if permission_mode not in PERMISSION_MODES:
            raise InvalidMode(permission_mode)
        if permission_mode == "acceptEdits" and permission_mode not in self.permission_modes:
            permission_mode = "default"
        if permission_mode not in self.permission_modes:
            raise ModeNotSupported(self.id, permission_mode)
        return agent_mode, permission_mode


# -- the table --------------------------------------------------------------------------------
_BUILD = AgentMode(id="build", name="Build", description="Default build mode")

#: Any Agent Client Protocol agent: what the ACP adapter maps (``session/update`` chunks, tool
#: calls with their kinds, plans, ``session/request_permission``).
ACP_CAPABILITIES = AgentCapabilities(
    permissions=True, tool_calls=True, tool_results=True, text_messages=True, images=True,
    file_attachments=True, session_lifecycle=True, error_events=True, reasoning=True,
    status=True, command_execution=True, file_changes=True, mcp_tools=True,
    streaming_deltas=True, item_started=True,
)  # fmt: skip

_OPENCODE_NPM = NpmPackage("opencode-ai", "1.18.33", "opencode")
_OPENCODE_CREDENTIALS = ("openai", "anthropic", "*")
#: Claude Code reads a project's skills in ``.claude/skills/<name>/SKILL.md``.
_CLAUDE_SKILLS = (".claude/skills",)
#: OpenCode's project skill directory (upstream's choice; OpenCode reads ``.claude/skills`` too).
_OPENCODE_SKILLS = (".opencode/skill",)


def acp_spec(
    agent_id: str,
    npm: NpmPackage | None = None,
    credentials: tuple[str, ...] = (),
    skill_dirs: tuple[str, ...] = (),
) -> AgentSpec:
    """The spec of an ACP agent (``acp:<name>``): modes are the agent's own (any name)."""
    return AgentSpec(
        id=agent_id,
        capabilities=ACP_CAPABILITIES,
        modes=(_BUILD,),
        agent_modes=None,
        permission_modes=("default",),
        npm=npm,
        credentials=credentials,
        skill_dirs=skill_dirs,
    )


_SPECS: tuple[AgentSpec, ...] = (
    AgentSpec(
        id="claude",
        capabilities=AgentCapabilities(
            plan_mode=True, permissions=True, questions=True, tool_calls=True,
            tool_results=True, text_messages=True, error_events=True, status=True,
            mcp_tools=True, streaming_deltas=True, item_started=True,
        ),
        modes=(
            _BUILD,
            AgentMode(id="plan", name="Plan", description="Plan mode (--permission-mode plan)"),
        ),
        agent_modes=("build", "plan"),
        permission_modes=PERMISSION_MODES,
        models=AgentModels(
            models=[
                AgentModel(id="default", name="Default (recommended)"),
                AgentModel(id="sonnet", name="Sonnet"),
                AgentModel(id="opus", name="Opus"),
                AgentModel(id="haiku", name="Haiku"),
            ],
            default_model="default",
        ),
        npm=NpmPackage("@anthropic-ai/claude-code", "2.1.332", "claude"),
        credentials=("anthropic",),
        skill_dirs=_CLAUDE_SKILLS,
    ),
    AgentSpec(
        id="codex",
        capabilities=AgentCapabilities(
            plan_mode=True, permissions=True, questions=True, tool_calls=True,
            tool_results=True, text_messages=True, images=True, file_attachments=True,
            session_lifecycle=True, error_events=True, reasoning=True, status=True,
            command_execution=True, file_changes=True, mcp_tools=True, streaming_deltas=True,
            item_started=True, variants=True, shared_process=True,
        ),
        modes=(
            _BUILD,
            AgentMode(id="plan", name="Plan", description="Planning mode via prompt prefix"),
        ),
        agent_modes=("build", "plan"),
        permission_modes=PERMISSION_MODES,
        npm=NpmPackage("@openai/codex", "0.169.0", "codex"),
        credentials=("openai",),
    ),
    AgentSpec(
        id="opencode",
        capabilities=AgentCapabilities(
            plan_mode=True, permissions=True, questions=True, tool_calls=True,
            tool_results=True, text_messages=True, images=True, file_attachments=True,
            session_lifecycle=True, error_events=True, reasoning=True, status=True,
            command_execution=True, file_changes=True, mcp_tools=True, streaming_deltas=True,
            item_started=True, variants=True, shared_process=True,
        ),
        modes=(
            _BUILD,
            AgentMode(id="plan", name="Plan", description="Planning mode"),
            AgentMode(
                id="custom", name="Custom", description="Any user-defined OpenCode agent name"
            ),
        ),
        agent_modes=None,
        permission_modes=("default", "bypass"),
        npm=_OPENCODE_NPM,
        credentials=_OPENCODE_CREDENTIALS,
        skill_dirs=_OPENCODE_SKILLS,
    ),
    AgentSpec(
        id="amp",
        capabilities=AgentCapabilities(
            tool_calls=True, tool_results=True, text_messages=True, images=True,
            error_events=True, reasoning=True, mcp_tools=True,
        ),
        modes=(_BUILD,),
        agent_modes=("build",),
        permission_modes=("default", "bypass"),
        models=AgentModels(
            models=[AgentModel(id="amp-default", name="Amp Default")], default_model="amp-default"
        ),
        npm=NpmPackage("@ampcode/cli", "0.0.1790142911-g7618fb", "amp"),
        credentials=("amp",),
    ),
    AgentSpec(
        id="mock",
        capabilities=AgentCapabilities(
            plan_mode=True, permissions=True, questions=True, tool_calls=True,
            tool_results=True, text_messages=True, images=True, file_attachments=True,
            session_lifecycle=True, error_events=True, reasoning=True, status=True,
            command_execution=True, file_changes=True, mcp_tools=True, streaming_deltas=True,
            item_started=True,
        ),
        modes=(
            AgentMode(id="build", name="Build", description="Mock agent for UI testing"),
            AgentMode(id="plan", name="Plan", description="Plan-only mock mode"),
        ),
        agent_modes=("build", "plan"),
        permission_modes=("default", "plan", "bypass"),
        models=AgentModels(models=[AgentModel(id="mock", name="Mock")], default_model="mock"),
        builtin=True,
    ),
    acp_spec(
        "acp:claude",
        NpmPackage("@agentclientprotocol/claude-agent-acp", "0.49.0", "claude-agent-acp"),
        ("anthropic",),
        _CLAUDE_SKILLS,
    ),
    acp_spec(
        "acp:codex", NpmPackage("@zed-industries/codex-acp", "0.16.0", "codex-acp"), ("openai",)
    ),
    acp_spec(
        "acp:opencode",
        NpmPackage(_OPENCODE_NPM.package, _OPENCODE_NPM.version, _OPENCODE_NPM.binary, ("acp",)),
        _OPENCODE_CREDENTIALS,
        _OPENCODE_SKILLS,
    ),
)  # fmt: skip

#: Every agent of the table by id, in the order ``GET /v1/agents`` lists them.
SPECS: dict[str, AgentSpec] = {spec.id: spec for spec in _SPECS}

#: The built-in agent ids that are not ACP ones.
AGENT_IDS: tuple[str, ...] = tuple(a for a in SPECS if not a.startswith(ACP_PREFIX))


def spec_of(agent: str) -> AgentSpec:
    """The spec of ``agent``: its row of the table, else (``acp:<name>``, a configured ACP agent)
    ``acp_spec``; ``UnsupportedAgent`` for any other id. Whether an ``acp:`` name is configured
    is the registry's to check (``registry.parse_agent_id`` checks the id's form)."""
    spec = SPECS.get(agent)
    if spec is not None:
        return spec
    if agent.startswith(ACP_PREFIX):
        return acp_spec(agent)
    raise UnsupportedAgent(agent, f"known agents are {', '.join(AGENT_IDS)} and acp:<name>")


# -- views of the table, for the adapters' class attributes ---------------------------------
CAPABILITIES: dict[str, AgentCapabilities] = {a: s.capabilities for a, s in SPECS.items()}
MODES: dict[str, list[AgentMode]] = {a: list(s.modes) for a, s in SPECS.items()}


def capabilities_of(agent: str) -> AgentCapabilities:
    """The table's capabilities of ``agent`` (``acp:<name>``: the ACP ones; unknown: none)."""
    try:
        return spec_of(agent).capabilities
    except UnsupportedAgent:
        return AgentCapabilities()


def modes_of(agent: str) -> list[AgentMode]:
    """The table's modes of ``agent`` (unknown: build only)."""
    try:
        return list(spec_of(agent).modes)
    except UnsupportedAgent:
        return [_BUILD]


def models_of(agent: str) -> AgentModels:
    """The table's models of ``agent`` (empty when only a live lookup can tell)."""
    try:
        return spec_of(agent).models
    except UnsupportedAgent:
        return AgentModels()
