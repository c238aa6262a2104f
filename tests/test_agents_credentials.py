"""Credential extraction (``agents.credentials``) from real files in a temporary HOME, and the
``sandbox-agent credentials`` commands as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox_agent.agents.credentials import (
    Credentials,
    agent_env,
    env_lines,
    extract_all,
    redact,
)

ANTHROPIC_KEY = "sk-ant-api03-claudefilekey-0123456789"
OPENAI_KEY = "sk-proj-codexfilekey-0123456789"

#: Every variable ``extract_all`` reads; removed from the CLI's environment.
CREDENTIAL_VARS = (
    "ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY", "CODEX_API_KEY", "AMP_API_KEY",
)  # fmt: skip


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def in_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


def test_nothing_found_in_an_empty_home(tmp_path: Path) -> None:
    found = extract_all(tmp_path, environ={})
    assert found.anthropic is None and found.openai is None and found.other == {}
    assert found.providers() == []
    assert not found.available_for("claude") and not found.available_for("opencode")
    assert found.available_for("acp:gemini")  # needs nothing we know of


def test_environment_comes_first_api_keys_before_oauth(tmp_path: Path) -> None:
    write(tmp_path / ".claude.json", {"primaryApiKey": ANTHROPIC_KEY})
    env = {"CLAUDE_CODE_OAUTH_TOKEN": "oauth-token-123", "CLAUDE_API_KEY": "sk-ant-env-claude"}
    found = extract_all(tmp_path, environ=env)
    assert found.anthropic is not None
    assert (found.anthropic.api_key, found.anthropic.source, found.anthropic.auth_type) == (
        "sk-ant-env-claude",
        "environment",
        "api_key",
    )
    found = extract_all(tmp_path, environ={"ANTHROPIC_AUTH_TOKEN": "oauth-token-123"})
    assert found.anthropic is not None and found.anthropic.auth_type == "oauth"
    # Without OAuth the environment's token is skipped and the file's key is used.
    found = extract_all(tmp_path, include_oauth=False, environ={"ANTHROPIC_AUTH_TOKEN": "x" * 20})
    assert found.anthropic is not None and found.anthropic.api_key == ANTHROPIC_KEY
    found = extract_all(tmp_path, environ={"CODEX_API_KEY": "sk-codex-env", "AMP_API_KEY": "amp1"})
    assert found.openai is not None and found.openai.api_key == "sk-codex-env"
    assert found.other["amp"].api_key == "amp1" and found.available_for("amp")


def test_amp_config_wins_over_claude_files(tmp_path: Path) -> None:
    write(tmp_path / ".amp" / "config.json", {"auth": {"token": "amp-anthropic-token"}})
    write(tmp_path / ".claude.json", {"primaryApiKey": ANTHROPIC_KEY})
    found = extract_all(tmp_path, environ={})
    assert found.anthropic is not None
    assert (found.anthropic.api_key, found.anthropic.source) == ("amp-anthropic-token", "amp")


def test_claude_files_need_an_anthropic_key(tmp_path: Path) -> None:
    write(tmp_path / ".claude.json.api", {"primaryApiKey": "not-an-anthropic-key"})
    write(tmp_path / ".claude.json", {"customApiKey": ANTHROPIC_KEY})
    found = extract_all(tmp_path, environ={})
    assert found.anthropic is not None
    assert (found.anthropic.api_key, found.anthropic.source) == (ANTHROPIC_KEY, "claude-code")


@pytest.mark.parametrize(
    ("expires", "found"),
    [
        (in_ms(3600), True),
        (in_ms(-3600), False),
        ("2999-01-01T00:00:00Z", True),
        ("2001-01-01T00:00:00+00:00", False),
        (None, True),
    ],
)
def test_claude_oauth_login_unless_expired(tmp_path: Path, expires: Any, found: bool) -> None:
    oauth: dict[str, Any] = {"accessToken": "sk-ant-oat01-token"}
    if expires is not None:
        oauth["expiresAt"] = expires
    write(tmp_path / ".claude" / ".credentials.json", {"claudeAiOauth": oauth})
    got = extract_all(tmp_path, environ={}).anthropic
    if found:
        assert got is not None
        assert (got.api_key, got.auth_type, got.source) == (
            "sk-ant-oat01-token",
            "oauth",
            "claude-code",
        )
    else:
        assert got is None
    assert extract_all(tmp_path, include_oauth=False, environ={}).anthropic is None


def test_codex_auth_key_then_oauth_token(tmp_path: Path) -> None:
    auth = write(tmp_path / ".codex" / "auth.json", {"tokens": {"access_token": "eyJ-codex"}})
    got = extract_all(tmp_path, environ={}).openai
    assert got is not None and (got.api_key, got.auth_type) == ("eyJ-codex", "oauth")
    assert extract_all(tmp_path, include_oauth=False, environ={}).openai is None
    write(auth, {"OPENAI_API_KEY": OPENAI_KEY, "tokens": {"access_token": "eyJ-codex"}})
    got = extract_all(tmp_path, environ={}).openai
    assert got is not None and (got.api_key, got.auth_type, got.source) == (
        OPENAI_KEY,
        "api_key",
        "codex",
    )


def test_opencode_auth_fills_the_gaps(tmp_path: Path) -> None:
    write(tmp_path / ".codex" / "auth.json", {"OPENAI_API_KEY": OPENAI_KEY})
    write(
        tmp_path / ".local" / "share" / "opencode" / "auth.json",
        {
            "anthropic": {"type": "oauth", "access": "oc-anthropic", "expires": in_ms(600)},
            "openai": {"type": "api", "key": "oc-openai"},
            "openrouter": {"type": "api", "key": "oc-openrouter-key"},
            "groq": {"type": "oauth", "access": "stale", "expires": in_ms(-600)},
            "broken": "not an object",
        },
    )
    found = extract_all(tmp_path, environ={})
    assert found.anthropic is not None and found.anthropic.source == "opencode"
    assert found.anthropic.auth_type == "oauth"
    assert found.openai is not None and found.openai.api_key == OPENAI_KEY  # codex came first
    assert list(found.other) == ["openrouter"]
    assert found.providers() == ["anthropic", "openai", "openrouter"]
    chosen = found.for_agent("opencode")
    assert chosen is not None and chosen.provider == "openai"
    no_oauth = extract_all(tmp_path, include_oauth=False, environ={})
    assert no_oauth.anthropic is None


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "auth.json").write_text("{not json")
    write(tmp_path / ".amp" / "config.json", ["a", "list"])
    found = extract_all(tmp_path, environ={})
    assert found.providers() == []


def test_agents_pick_their_provider(tmp_path: Path) -> None:
    write(tmp_path / ".local" / "share" / "opencode" / "auth.json",
          {"openrouter": {"type": "api", "key": "oc-openrouter-key"}})  # fmt: skip
    found = extract_all(tmp_path, environ={"AMP_API_KEY": "amp-key-123"})
    # opencode may use the one other LLM provider; Amp's key is not one.
    chosen = found.for_agent("opencode")
    assert chosen is not None and chosen.provider == "openrouter"
    assert found.available_for("opencode") and not found.available_for("claude")
    assert not found.available_for("codex") and not found.available_for("acp:codex")
    assert found.for_agent("claude") is None
    only_amp = extract_all(tmp_path / "nowhere", environ={"AMP_API_KEY": "amp-key-123"})
    assert not only_amp.available_for("opencode")


def test_keys_never_show_in_repr_or_redacted_output(tmp_path: Path) -> None:
    write(tmp_path / ".claude.json", {"primaryApiKey": ANTHROPIC_KEY})
    found = extract_all(tmp_path, environ={})
    assert ANTHROPIC_KEY not in repr(found)
    public = json.dumps(found.public())
    assert ANTHROPIC_KEY not in public and redact(ANTHROPIC_KEY) in public
    assert ANTHROPIC_KEY in json.dumps(found.public(reveal=True))
    assert redact("short") == "****" and redact("sk-ant-123456") == "sk-a...3456"


def test_agent_env_follows_upstream_and_never_overrides_the_server_env(tmp_path: Path) -> None:
    write(tmp_path / ".amp" / "config.json", {"anthropicApiKey": "sk-ant-from-amp"})
    write(tmp_path / ".codex" / "auth.json", {"OPENAI_API_KEY": OPENAI_KEY})
    found = extract_all(tmp_path, environ={})
    assert agent_env(found, environ={}) == {
        "ANTHROPIC_API_KEY": "sk-ant-from-amp",
        "CLAUDE_API_KEY": "sk-ant-from-amp",
        "OPENAI_API_KEY": OPENAI_KEY,
        "CODEX_API_KEY": OPENAI_KEY,
    }
    assert agent_env(found, environ={"OPENAI_API_KEY": "mine"}) == {
        "ANTHROPIC_API_KEY": "sk-ant-from-amp",
        "CLAUDE_API_KEY": "sk-ant-from-amp",
        "CODEX_API_KEY": OPENAI_KEY,
    }
    oauth = extract_all(environ={"CLAUDE_CODE_OAUTH_TOKEN": "tok-1234567890"}, home=tmp_path / "x")
    assert agent_env(oauth, environ={}) == {
        "CLAUDE_CODE_OAUTH_TOKEN": "tok-1234567890",
        "ANTHROPIC_AUTH_TOKEN": "tok-1234567890",
    }


def test_claude_codes_own_login_is_not_passed_on(tmp_path: Path) -> None:
    login = {"claudeAiOauth": {"accessToken": "sk-ant-oat01-x", "expiresAt": in_ms(600)}}
    write(tmp_path / ".claude" / ".credentials.json", login)
    found = extract_all(tmp_path, environ={})
    assert found.available_for("claude")
    assert agent_env(found, environ={}) == {}
    assert env_lines(found) == [
        ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-x"),
        ("ANTHROPIC_AUTH_TOKEN", "sk-ant-oat01-x"),
    ]


def test_env_lines_name_other_providers() -> None:
    found = Credentials()
    found.other = extract_all(Path("/nonexistent"), environ={"AMP_API_KEY": "a-b"}).other
    assert env_lines(found) == [("AMP_API_KEY", "a-b")]


# -- the CLI ----------------------------------------------------------------------------------
def cli(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "credentials", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": "200", **(env or {})},
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write(tmp_path / ".claude.json", {"primaryApiKey": ANTHROPIC_KEY})
    write(tmp_path / ".codex" / "auth.json", {"OPENAI_API_KEY": OPENAI_KEY})
    write(tmp_path / ".local" / "share" / "opencode" / "auth.json",
          {"openrouter": {"type": "api", "key": "sk-or-v1-routerkey"}})  # fmt: skip
    return tmp_path


def test_cli_extract_prints_redacted_json(home: Path) -> None:
    result = cli("extract", home=home)
    assert result.returncode == 0, result.stderr
    assert ANTHROPIC_KEY not in result.stdout and OPENAI_KEY not in result.stdout
    body = json.loads(result.stdout)
    assert body["anthropic"] == {
        "provider": "anthropic",
        "source": "claude-code",
        "auth_type": "api_key",
        "redacted": redact(ANTHROPIC_KEY),
    }
    assert body["openai"]["source"] == "codex"
    assert body["other"]["openrouter"]["redacted"] == "sk-o...rkey"
    revealed = json.loads(cli("extract", "--reveal", home=home).stdout)
    assert revealed["anthropic"]["api_key"] == ANTHROPIC_KEY


def test_cli_extract_one_token(home: Path) -> None:
    redacted = cli("extract", "--agent", "claude", home=home)
    assert redacted.returncode == 0
    assert redacted.stdout.strip() == redact(ANTHROPIC_KEY)
    assert "--reveal" in redacted.stderr and ANTHROPIC_KEY not in redacted.stderr
    assert cli("extract", "-a", "codex", "-r", home=home).stdout.strip() == OPENAI_KEY
    assert (
        cli("extract", "-p", "openrouter", "-r", home=home).stdout.strip() == "sk-or-v1-routerkey"
    )
    from_env = cli("extract", "-a", "claude", "-r", home=home, env={"ANTHROPIC_API_KEY": "sk-e"})
    assert from_env.stdout.strip() == "sk-e"
    missing = cli("extract", "-p", "groq", home=home)
    assert missing.returncode == 1
    assert "no credential found for provider groq" in missing.stderr
    assert "anthropic, openai, openrouter" in missing.stderr
    assert cli("extract", "-a", "nope", home=home).returncode == 1
    assert cli("extract", "-a", "claude", "-p", "openai", home=home).returncode == 1


def test_cli_extract_env_prints_the_secrets(home: Path) -> None:
    result = cli("extract-env", "--export", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"export ANTHROPIC_API_KEY={ANTHROPIC_KEY}",
        f"export CLAUDE_API_KEY={ANTHROPIC_KEY}",
        f"export OPENAI_API_KEY={OPENAI_KEY}",
        f"export CODEX_API_KEY={OPENAI_KEY}",
        "export OPENROUTER_API_KEY=sk-or-v1-routerkey",
    ]
    # The lines are shell syntax: a shell that evaluates them gets the keys.
    shell = subprocess.run(
        ["sh", "-c", f'eval "$({sys.executable} -m sandbox_agent credentials extract-env '
                     f'--export --home {home})"; printf %s "$OPENAI_API_KEY"'],
        capture_output=True, text=True, timeout=60, check=True,
        env={k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS},
    )  # fmt: skip
    assert shell.stdout == OPENAI_KEY
    empty = cli("extract-env", home=home / "nowhere")
    assert empty.returncode == 0 and empty.stdout == "" and "no credentials" in empty.stderr
