"""The environment of every process the agents layer starts: built here and nowhere else.

An agent is a program a model drives, so it gets the server's environment minus what belongs to
the server or to other agents:

- every ``SANDBOX_AGENT_*`` variable: the token (with it an agent could call the API and approve
  its own permission requests), the store URL (a database password), the data and agents dirs
  and the CLI's endpoint. No agent needs one: the server hands an agent all it needs (its
  directory, its command line, its credentials) itself;
- every credential variable ``credentials.PROVIDER_VARIABLES`` knows, except those of the
  providers the agent's catalog entry names (``AgentSpec.credentials``): Anthropic's keys reach
  claude, acp:claude and opencode, never codex. An agent with no provider we know of (one of
  ``--acp-agent``) gets none, and nor does npm.

``extra`` (``AgentSettings.extra_env``: the credentials found in config files, and whatever a
caller adds) goes through the same filter, so nothing reaches an agent around it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sandbox_agent.agents.credentials import AGENT_PROVIDERS, PROVIDER_VARIABLES

#: The prefix of the server's own variables, none of which reaches an agent.
SERVER_PREFIX = "SANDBOX_AGENT_"

_CREDENTIALS = frozenset(name for names in PROVIDER_VARIABLES.values() for name in names)


def agent_environment(
    agent: str | None,
    directory: str,
    extra: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of ``agent``'s process (None: a process that is no agent, as npm):
    ``base`` (default: the server's) plus ``extra``, without the server's variables and other
    agents' credentials, with ``PWD`` = ``directory``."""
    own = {
        name
        for provider in AGENT_PROVIDERS.get(agent or "", ())
        for name in PROVIDER_VARIABLES.get(provider, ())
    }
    env = {**(os.environ if base is None else base), **(extra or {})}
    kept = {
        name: value
        for name, value in env.items()
        if not name.startswith(SERVER_PREFIX) and (name not in _CREDENTIALS or name in own)
    }
    kept["PWD"] = directory
    return kept
