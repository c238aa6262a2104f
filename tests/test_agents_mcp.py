"""A session's MCP servers (``agents/mcp.py``): every alias of upstream's ``McpServerConfig``
(section 7.2) parses to the same server, anything else is one ``InvalidMcpConfig``, and each
agent's renderer gives what its CLI takes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox_agent.agents import acp, claude, codex, opencode
from sandbox_agent.agents.base import AgentSessionConfig
from sandbox_agent.agents.errors import AgentError, InvalidMcpConfig
from sandbox_agent.agents.mcp import (
    McpLocalServer,
    McpOAuth,
    McpRemoteServer,
    parse_mcp_server,
    parse_mcp_servers,
)

words = st.text(st.characters(categories=("L", "N"), include_characters="-_./"), min_size=1)
values = st.one_of(words, st.integers(-(10**6), 10**6))
variables = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True)


def _text(value: Any) -> str:
    return str(value)


@given(
    command=words,
    head=st.lists(values, max_size=3),
    args=st.lists(values, max_size=3),
    env=st.dictionaries(variables, values, max_size=3),
    timeout=st.none() | st.integers(1, 10**6),
    enabled=st.none() | st.booleans(),
    cwd=st.none() | words,
    kind=st.sampled_from(["local", "stdio", None]),
    env_key=st.sampled_from(["env", "environment"]),
    timeout_key=st.sampled_from(["timeoutMs", "timeout"]),
    as_list=st.booleans(),
)
def test_every_spelling_of_a_local_server_parses_to_the_same_server(
    command: str,
    head: list[Any],
    args: list[Any],
    env: dict[str, Any],
    timeout: int | None,
    enabled: bool | None,
    cwd: str | None,
    kind: str | None,
    env_key: str,
    timeout_key: str,
    as_list: bool,
) -> None:
    config: dict[str, Any] = {"args": args, env_key: env}
    if as_list:
        config["command"] = [command, *head]
    else:
        config["command"] = command
        config["args"] = [*head, *args]
    for key, value in (("type", kind), (timeout_key, timeout), ("enabled", enabled), ("cwd", cwd)):
        if value is not None:
            config[key] = value
    server = parse_mcp_server("s", config)
    assert server == McpLocalServer(
        command=command,
        args=tuple(map(_text, [*head, *args])),
        env={k: _text(v) for k, v in env.items()},
        timeout_ms=timeout,
        enabled=enabled,
        cwd=cwd,
    )


@given(
    url=words,
    headers=st.dictionaries(words, values, max_size=3),
    bearer=st.none() | variables,
    env_headers=st.dictionaries(words, variables, max_size=3),
    transport=st.sampled_from(["http", "sse", None]),
    kind=st.sampled_from(["remote", "http", None]),
    bearer_key=st.sampled_from(["bearerTokenEnvVar", "bearer_token_env_var"]),
    env_headers_key=st.sampled_from(["envHeaders", "envHttpHeaders", "env_http_headers"]),
    oauth=st.none() | st.just(False) | st.fixed_dictionaries({"clientId": words}),
)
def test_every_spelling_of_a_remote_server_parses_to_the_same_server(
    url: str,
    headers: dict[str, Any],
    bearer: str | None,
    env_headers: dict[str, str],
    transport: str | None,
    kind: str | None,
    bearer_key: str,
    env_headers_key: str,
    oauth: Any,
) -> None:
    config: dict[str, Any] = {"url": url, "headers": headers, env_headers_key: env_headers}
    for key, value in (("type", kind), (bearer_key, bearer), ("transport", transport)):
        if value is not None:
            config[key] = value
    if oauth is not None:
        config["oauth"] = oauth
    server = parse_mcp_server("s", config)
    assert server == McpRemoteServer(
        url=url,
        headers={k: _text(v) for k, v in headers.items()},
        bearer_token_env_var=bearer,
        env_headers=env_headers,
        transport=transport,  # type: ignore[arg-type]
        oauth=McpOAuth(client_id=oauth["clientId"]) if isinstance(oauth, dict) else oauth,
    )


def test_type_sse_is_a_remote_server_over_sse() -> None:
    server = parse_mcp_server("s", {"type": "sse", "url": "http://h/sse"})
    assert isinstance(server, McpRemoteServer) and server.transport == "sse"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
config_keys = st.sampled_from(
    ["type", "command", "args", "env", "environment", "url", "headers", "timeoutMs", "timeout",
     "enabled", "cwd", "oauth", "transport", "envHeaders", "bearerTokenEnvVar"]
)  # fmt: skip
near_configs = st.dictionaries(
    config_keys,
    json_values | st.sampled_from(["local", "stdio", "remote", "http", "sse", "x"]),
    max_size=5,
)


@given(mcp=json_values | st.dictionaries(st.text(max_size=5), near_configs | json_values))
def test_any_json_parses_or_is_one_invalid_mcp_config(mcp: Any) -> None:
    try:
        servers = parse_mcp_servers(mcp)
    except InvalidMcpConfig as exc:
        assert str(exc).startswith("invalid mcp")
        assert isinstance(exc, AgentError)
    else:
        assert all(isinstance(s, McpLocalServer | McpRemoteServer) for s in servers.values())


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"type": "carrier-pigeon"}, "type: 'carrier-pigeon' is not one of"),
        ({"type": "local"}, "command: Field required"),
        ({"command": []}, "command: an empty array"),
        ({"command": ""}, "command: String should have at least 1 character"),
        ({"command": "x", "env": {"A": {}}}, "env.A: Input should be a valid string"),
        ({"command": "x", "args": "--flag"}, "args"),
        ({"command": "x", "timeoutMs": -5}, "timeoutMs: Input should be greater than 0"),
        ({"type": "remote"}, "url: Field required"),
        ({"url": "http://h", "oauth": True}, "oauth: expected an object or false"),
        ({"url": "http://h", "transport": "ws"}, "transport"),
        ("npx server", "expected an object, got a string"),
    ],
)
def test_a_bad_server_is_named_with_its_field(config: Any, reason: str) -> None:
    with pytest.raises(InvalidMcpConfig) as raised:
        parse_mcp_servers({"files": config})
    assert raised.value.name == "files"
    assert reason in raised.value.reason
    assert str(raised.value).startswith("invalid mcp server 'files': ")


def test_a_bad_map_and_the_session_config() -> None:
    with pytest.raises(InvalidMcpConfig, match="expected an object of name -> server"):
        parse_mcp_servers(["files"])
    assert parse_mcp_servers(None) == {}
    # The adapters' session config parses on construction, raising the same domain error.
    with pytest.raises(InvalidMcpConfig, match="'x'"):
        AgentSessionConfig(session_id="s", agent="claude", mcp={"x": {"type": "local"}})
    config = AgentSessionConfig(session_id="s", agent="claude", mcp={"x": {"command": "srv"}})
    assert config.mcp == {"x": McpLocalServer(command="srv")}


def test_literal_headers_keep_given_ones_and_skip_unknown_variables() -> None:
    server = parse_mcp_server(
        "s",
        {
            "url": "http://h",
            "headers": {"Authorization": "Basic abc"},
            "bearerTokenEnvVar": "TOKEN",
            "envHeaders": {"X-A": "A", "X-B": "MISSING"},
        },
    )
    assert isinstance(server, McpRemoteServer)
    env = {"TOKEN": "t", "A": "a"}
    assert server.literal_headers(env.get) == {"Authorization": "Basic abc", "X-A": "a"}


# -- the renderers: one table of servers, what each agent gets --------------------------------
SERVERS = parse_mcp_servers(
    {
        "fs": {"type": "stdio", "command": ["npx", "-y", "fs"], "args": ["/w"], "env": {"A": 1},
               "cwd": "/w", "timeoutMs": 1500},
        "off": {"command": "x", "enabled": False},
        "docs": {"type": "sse", "url": "https://h/sse", "headers": {"X-T": "t"},
                 "bearer_token_env_var": "TOKEN", "env_http_headers": {"X-K": "KEY"},
                 "oauth": False, "enabled": True},
    }
)  # fmt: skip
ENV = {"TOKEN": "tok", "KEY": "key"}


def test_claude_gets_its_mcp_config_with_variables_left_to_expand() -> None:
    assert claude.mcp_servers(SERVERS) == {
        "fs": {"type": "stdio", "command": "npx", "args": ["-y", "fs", "/w"], "env": {"A": "1"}},
        "docs": {
            "type": "sse",
            "url": "https://h/sse",
            "headers": {"X-T": "t", "Authorization": "Bearer ${TOKEN}", "X-K": "${KEY}"},
        },
    }


def test_codex_gets_its_table_with_the_disabled_server_and_variable_names() -> None:
    assert codex.mcp_servers(SERVERS) == {
        "fs": {"command": "npx", "args": ["-y", "fs", "/w"], "env": {"A": "1"}, "cwd": "/w",
               "tool_timeout_sec": 2},
        "off": {"command": "x", "args": [], "enabled": False},
        "docs": {"url": "https://h/sse", "http_headers": {"X-T": "t"},
                 "env_http_headers": {"X-K": "KEY"}, "bearer_token_env_var": "TOKEN",
                 "enabled": True},
    }  # fmt: skip


def test_acp_gets_name_value_lists_with_resolved_headers_and_remote_only_over_http() -> None:
    local = {
        "name": "fs",
        "command": "npx",
        "args": ["-y", "fs", "/w"],
        "env": [{"name": "A", "value": "1"}],
    }
    assert acp.mcp_servers(SERVERS, ENV, http=False) == [local]
    assert acp.mcp_servers(SERVERS, ENV, http=True) == [
        local,
        {
            "type": "sse",
            "name": "docs",
            "url": "https://h/sse",
            "headers": [
                {"name": "X-T", "value": "t"},
                {"name": "Authorization", "value": "Bearer tok"},
                {"name": "X-K", "value": "key"},
            ],
        },
    ]


def test_opencode_gets_local_and_remote_configs_with_resolved_headers() -> None:
    rendered = {name: opencode.mcp_config(server, ENV) for name, server in SERVERS.items()}
    assert rendered == {
        "fs": {"type": "local", "command": ["npx", "-y", "fs", "/w"], "environment": {"A": "1"},
               "cwd": "/w", "timeout": 1500},
        "off": {"type": "local", "command": ["x"], "enabled": False},
        "docs": {"type": "remote", "url": "https://h/sse", "enabled": True, "oauth": False,
                 "headers": {"X-T": "t", "Authorization": "Bearer tok", "X-K": "key"}},
    }  # fmt: skip
    oauth = parse_mcp_server("o", {"url": "u", "oauth": {"clientId": "c", "scope": "s"}})
    assert opencode.mcp_config(oauth, {})["oauth"] == {"clientId": "c", "scope": "s"}
