"""Finding the LLM provider credentials the agents need (upstream section 7.4).

``extract_all(home, include_oauth)`` looks, in this order, first match wins per provider:

1. Anthropic from the environment: ``ANTHROPIC_API_KEY``, ``CLAUDE_API_KEY`` (API keys), then
   ``CLAUDE_CODE_OAUTH_TOKEN``, ``ANTHROPIC_AUTH_TOKEN`` (OAuth). OpenAI: ``OPENAI_API_KEY``,
   ``CODEX_API_KEY``. Amp: ``AMP_API_KEY`` (in ``other["amp"]``; Amp's own server key).
2. Anthropic from ``~/.amp/config.json`` (source ``amp``), then Claude Code's files:
   ``~/.claude.json.api``, ``~/.claude.json``, ``~/.claude.json.nathan`` (a key starting
   ``sk-ant-``), then its OAuth login ``~/.claude/.credentials.json`` /
   ``~/.claude-oauth-credentials.json`` unless expired (source ``claude-code``).
3. OpenAI from ``~/.codex/auth.json``: ``OPENAI_API_KEY``, else the OAuth ``tokens.access_token``.
4. ``~/.local/share/opencode/auth.json``: each provider's key or unexpired OAuth token;
   ``anthropic`` and ``openai`` fill what is still missing, the others go to ``other``.

``include_oauth=False`` skips every OAuth source. What is found is a hint, not a guarantee:
agents also authenticate through their own config (a ``CODEX_HOME`` provider, an
``opencode.json`` with keys, ``ANTHROPIC_BASE_URL`` proxies) that this module does not read.

Secrets never reach a log or the HTTP API: ``Credential.__repr__`` hides the key, and the
server only passes them to the processes of the agents that use them (``agent_env``, then
``environment.agent_environment``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sandbox_agent.agents.catalog import SPECS

AuthType = Literal["api_key", "oauth"]

#: The providers each agent can use, in the order a single token is picked (``"*"``: any other
#: provider found): ``AgentSpec.credentials`` of the catalog. Agents missing here (the mock,
#: custom ACP agents) need none we know of.
AGENT_PROVIDERS: dict[str, tuple[str, ...]] = {
    agent: spec.credentials for agent, spec in SPECS.items() if spec.credentials
}

#: The environment variables of each provider's credential, API keys before OAuth tokens: read
#: from the server's environment, and the only credential variables an agent gets of the
#: providers it uses (``environment.agent_environment``).
PROVIDER_VARIABLES: dict[str, tuple[str, ...]] = {
    "anthropic": (
        "ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"
    ),
    "openai": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "amp": ("AMP_API_KEY",),
}  # fmt: skip


@dataclass(frozen=True)
class Credential:
    """One provider's credential; the key is hidden from ``repr``."""

    provider: str
    api_key: str = field(repr=False)
    source: str
    auth_type: AuthType = "api_key"

    @property
    def redacted(self) -> str:
        return redact(self.api_key)

    def public(self, reveal: bool = False) -> dict[str, str]:
        """The JSON of ``credentials extract``: the key only when ``reveal``."""
        out = {
            "provider": self.provider,
            "source": self.source,
            "auth_type": self.auth_type,
            "redacted": self.redacted,
        }
        if reveal:
            out["api_key"] = self.api_key
        return out


@dataclass
class Credentials:
    """What ``extract_all`` found: Anthropic, OpenAI, and other providers by name."""

    anthropic: Credential | None = None
    openai: Credential | None = None
    other: dict[str, Credential] = field(default_factory=dict)

    def get(self, provider: str) -> Credential | None:
        if provider == "anthropic":
            return self.anthropic
        if provider == "openai":
            return self.openai
        return self.other.get(provider)

    def providers(self) -> list[str]:
        """The providers with a credential, Anthropic and OpenAI first."""
        found = [p for p in ("anthropic", "openai") if self.get(p) is not None]
        return found + sorted(self.other)

    def for_agent(self, agent: str) -> Credential | None:
        """The credential ``agent`` would use (``AGENT_PROVIDERS`` order), None if none."""
        for provider in AGENT_PROVIDERS.get(agent, ()):
            if provider == "*":
                # Only an unambiguous other provider is picked.
                others = self._other_llms()
                return others[0] if len(others) == 1 else None
            found = self.get(provider)
            if found is not None:
                return found
        return None

    def available_for(self, agent: str) -> bool:
        """Whether ``agent`` has a credential (True for agents needing none we know of)."""
        wanted = AGENT_PROVIDERS.get(agent)
        if wanted is None:
            return True
        if "*" in wanted and self._other_llms():
            return True
        return any(self.get(p) is not None for p in wanted if p != "*")

    def _other_llms(self) -> list[Credential]:
        # Amp's key is for Amp's server, not an LLM provider another agent could use.
        return [c for name, c in sorted(self.other.items()) if name != "amp"]

    def public(self, reveal: bool = False) -> dict[str, Any]:
        return {
            "anthropic": self.anthropic.public(reveal) if self.anthropic else None,
            "openai": self.openai.public(reveal) if self.openai else None,
            "other": {name: c.public(reveal) for name, c in sorted(self.other.items())},
        }


def redact(key: str) -> str:
    """``abcd...wxyz``; keys of 8 characters or fewer become ``****``."""
    return "****" if len(key) <= 8 else f"{key[:4]}...{key[-4:]}"


def extract_all(
    home: Path | None = None,
    include_oauth: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Every credential found in ``environ`` (default: ``os.environ``) and under ``home``."""
    env = os.environ if environ is None else environ
    home = home if home is not None else Path.home()
    found = Credentials()
    found.anthropic = _from_env(
        env, "anthropic", ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY"), "api_key"
    )
    if found.anthropic is None and include_oauth:
        found.anthropic = _from_env(
            env, "anthropic", ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"), "oauth"
        )
    found.openai = _from_env(env, "openai", ("OPENAI_API_KEY", "CODEX_API_KEY"), "api_key")
    amp = _from_env(env, "amp", ("AMP_API_KEY",), "api_key")
    if amp is not None:
        found.other["amp"] = amp
    if found.anthropic is None:
        found.anthropic = _amp_config(home) or _claude_files(home, include_oauth)
    if found.openai is None:
        found.openai = _codex_auth(home, include_oauth)
    opencode = _opencode_auth(home, include_oauth)
    found.anthropic = found.anthropic or opencode.pop("anthropic", None)
    found.openai = found.openai or opencode.pop("openai", None)
    for name, credential in opencode.items():
        if name not in ("anthropic", "openai"):
            found.other.setdefault(name, credential)
    return found


def agent_env(credentials: Credentials, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the server adds to agents' environments (upstream section 4); each
    reaches only the agents of its provider (``environment.agent_environment``).

    Anthropic: ``ANTHROPIC_API_KEY`` + ``CLAUDE_API_KEY`` for a key, ``CLAUDE_CODE_OAUTH_TOKEN`` +
    ``ANTHROPIC_AUTH_TOKEN`` for an OAuth token; OpenAI: ``OPENAI_API_KEY`` + ``CODEX_API_KEY``.
    Variables already in ``environ`` (default: ``os.environ``) are left alone: the server's own
    environment wins. Claude Code's own credentials (source ``claude-code``) are not passed on:
    Claude finds them itself, and a copied OAuth token could not be refreshed (upstream skipped
    them for claude only; acp:claude and opencode read Anthropic's variables too).
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    anthropic = credentials.anthropic
    if anthropic is not None and anthropic.source != "claude-code":
        if anthropic.auth_type == "oauth":
            names: tuple[str, ...] = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
        else:
            names = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
        out.update(dict.fromkeys(names, anthropic.api_key))
    if credentials.openai is not None:
        out.update(dict.fromkeys(("OPENAI_API_KEY", "CODEX_API_KEY"), credentials.openai.api_key))
    return {name: value for name, value in out.items() if name not in env}


def env_lines(credentials: Credentials) -> list[tuple[str, str]]:
    """(name, value) pairs of ``credentials extract-env``: every credential found."""
    out: list[tuple[str, str]] = []
    anthropic = credentials.anthropic
    if anthropic is not None:
        if anthropic.auth_type == "oauth":
            names: tuple[str, ...] = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
        else:
            names = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
        out += [(n, anthropic.api_key) for n in names]
    if credentials.openai is not None:
        out += [(n, credentials.openai.api_key) for n in ("OPENAI_API_KEY", "CODEX_API_KEY")]
    for name, credential in sorted(credentials.other.items()):
        variable = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_API_KEY"
        out.append((variable, credential.api_key))
    return out


# -- sources ----------------------------------------------------------------------------------
def _from_env(
    env: Mapping[str, str], provider: str, names: tuple[str, ...], auth_type: AuthType
) -> Credential | None:
    for name in names:
        value = env.get(name)
        if value:
            return Credential(provider, value, "environment", auth_type)
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _string_at(data: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, str) and data else None


def _amp_config(home: Path) -> Credential | None:
    data = _read_json(home / ".amp" / "config.json")
    for path in (
        ("anthropicApiKey",), ("anthropic_api_key",), ("apiKey",), ("api_key",),
        ("accessToken",), ("access_token",), ("token",), ("auth", "anthropicApiKey"),
        ("auth", "apiKey"), ("auth", "token"), ("anthropic", "apiKey"), ("anthropic", "token"),
    ):  # fmt: skip
        key = _string_at(data, *path)
        if key:
            return Credential("anthropic", key, "amp")
    return None


def _claude_files(home: Path, include_oauth: bool) -> Credential | None:
    for name in (".claude.json.api", ".claude.json", ".claude.json.nathan"):
        data = _read_json(home / name)
        for field_name in ("primaryApiKey", "apiKey", "anthropicApiKey", "customApiKey"):
            key = _string_at(data, field_name)
            if key and key.startswith("sk-ant-"):
                return Credential("anthropic", key, "claude-code")
    if not include_oauth:
        return None
    for path in (home / ".claude" / ".credentials.json", home / ".claude-oauth-credentials.json"):
        data = _read_json(path)
        token = _string_at(data, "claudeAiOauth", "accessToken")
        if token and not _expired(data["claudeAiOauth"].get("expiresAt")):
            return Credential("anthropic", token, "claude-code", "oauth")
    return None


def _codex_auth(home: Path, include_oauth: bool) -> Credential | None:
    data = _read_json(home / ".codex" / "auth.json")
    key = _string_at(data, "OPENAI_API_KEY")
    if key:
        return Credential("openai", key, "codex")
    token = _string_at(data, "tokens", "access_token") if include_oauth else None
    return Credential("openai", token, "codex", "oauth") if token else None


def _opencode_auth(home: Path, include_oauth: bool) -> dict[str, Credential]:
    data = _read_json(home / ".local" / "share" / "opencode" / "auth.json")
    found: dict[str, Credential] = {}
    if not isinstance(data, dict):
        return found
    for provider, entry in data.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "api" and _string_at(entry, "key"):
            found[provider] = Credential(provider, entry["key"], "opencode")
        elif (
            entry.get("type") == "oauth"
            and include_oauth
            and _string_at(entry, "access")
            and not _expired(entry.get("expires"))
        ):
            found[provider] = Credential(provider, entry["access"], "opencode", "oauth")
    return found


def _expired(expires: object) -> bool:
    """Whether an expiry (epoch milliseconds, or an RFC 3339 string) is past; unknown: no."""
    if isinstance(expires, bool):
        return False
    if isinstance(expires, int | float):
        return expires < time.time() * 1000
    if isinstance(expires, str):
        try:
            when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when < datetime.now(UTC)
    return False
