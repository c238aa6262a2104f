"""A session's MCP servers: the v0.1 ``McpServerConfig`` map, parsed once into ``McpServer``s.

The create-session request's ``mcp`` is a map name -> config (upstream section 7.2). Each config
is local (``type`` ``local``, alias ``stdio``) or remote (``remote``, aliases ``http`` and
``sse``); without a ``type`` it is remote when it has a ``url`` and no ``command``, else local.

- local: ``command`` (a string, or an array: the command and its leading args), ``args``,
  ``env`` (alias ``environment``), ``cwd``;
- remote: ``url``, ``headers``, ``bearerTokenEnvVar`` (alias ``bearer_token_env_var``),
  ``envHeaders`` (aliases ``envHttpHeaders``, ``env_http_headers``), ``oauth`` (``{clientId,
  clientSecret, scope}`` or ``false``), ``transport`` (``http`` | ``sse``; type ``sse`` sets it);
- both: ``enabled``, ``timeoutMs`` (alias ``timeout``).

Numbers in ``args``, ``env`` and ``headers`` are taken as their text; unknown keys are ignored.
``parse_mcp_servers`` raises ``InvalidMcpConfig`` (naming the server and the field) for anything
else. Each adapter renders the parsed servers in its agent's own shape (``mcp_servers`` /
``mcp_config`` in ``claude.py``, ``codex.py``, ``acp.py``, ``opencode.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox_agent.agents.errors import InvalidMcpConfig


def _as_text(value: Any) -> Any:
    # JSON numbers are fine as text (``"env": {"PORT": 8080}``); objects, lists, null are not.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_as_text)]


class _Server(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True)

    #: False: configured but switched off (claude and ACP leave it out, codex and OpenCode are
    #: told). None: not said.
    enabled: bool | None = None
    #: Per-tool-call timeout in milliseconds.
    timeout_ms: float | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("timeoutMs", "timeout", "timeout_ms")
    )


class McpLocalServer(_Server):
    """An MCP server the agent starts itself and talks to over stdio."""

    type: Literal["local"] = "local"
    command: str = Field(min_length=1)
    #: The arguments after ``command`` (the tail of an array ``command`` first).
    args: tuple[Text, ...] = ()
    env: dict[str, Text] = Field(
        default_factory=dict, validation_alias=AliasChoices("env", "environment")
    )
    cwd: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_command(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {**data, "type": "local"}
        command = data.get("command")
        if isinstance(command, list):
            if not command:
                raise ValueError("command: an empty array")
            args = data.get("args") or []
            if not isinstance(args, list):
                raise ValueError("args: expected an array")
            data["command"] = _as_text(command[0])
            data["args"] = [*command[1:], *args]
        return data


class McpOAuth(BaseModel):
    """OAuth client settings of a remote server (OpenCode's ``oauth``)."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", validate_by_name=True, serialize_by_alias=True
    )

    client_id: str | None = Field(default=None, alias="clientId")
    client_secret: str | None = Field(default=None, alias="clientSecret")
    scope: str | None = None


class McpRemoteServer(_Server):
    """An MCP server reached over HTTP (streamable HTTP, or SSE with ``transport: sse``)."""

    type: Literal["remote"] = "remote"
    url: str = Field(min_length=1)
    headers: dict[str, Text] = Field(default_factory=dict)
    #: The variable holding a bearer token (``Authorization: Bearer $VAR``).
    bearer_token_env_var: str | None = Field(
        default=None, validation_alias=AliasChoices("bearerTokenEnvVar", "bearer_token_env_var")
    )
    #: Header name -> the variable holding its value.
    env_headers: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("envHeaders", "envHttpHeaders", "env_http_headers"),
    )
    #: OAuth settings, or False: no OAuth (OpenCode would otherwise try it). None: not said.
    oauth: McpOAuth | Literal[False] | None = None
    transport: Literal["http", "sse"] | None = None

    @field_validator("oauth", mode="before")
    @classmethod
    def _oauth(cls, value: Any) -> Any:
        if value is None or value is False or isinstance(value, dict | McpOAuth):
            return value
        raise ValueError("expected an object or false")

    @model_validator(mode="before")
    @classmethod
    def _type_sse(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("type") == "sse" and data.get("transport") is None:
            data = {**data, "transport": "sse"}
        return {**data, "type": "remote"}

    def literal_headers(self, resolve: Callable[[str], str | None]) -> dict[str, str]:
        """``headers``, then ``Authorization: Bearer <token>`` and each ``envHeaders`` entry,
        the values from ``resolve(variable)`` (left out when it gives None); given headers win.
        """
        headers = dict(self.headers)
        if self.bearer_token_env_var:
            token = resolve(self.bearer_token_env_var)
            if token is not None:
                headers.setdefault("Authorization", f"Bearer {token}")
        for header, variable in self.env_headers.items():
            value = resolve(variable)
            if value is not None:
                headers.setdefault(header, value)
        return headers


McpServer = McpLocalServer | McpRemoteServer

LOCAL_TYPES = frozenset({"local", "stdio"})
REMOTE_TYPES = frozenset({"remote", "http", "sse"})


def parse_mcp_server(name: str, config: Any) -> McpServer:
    """One config of the map as an ``McpServer``; ``InvalidMcpConfig`` when it is not one."""
    if isinstance(config, McpLocalServer | McpRemoteServer):
        return config
    if not isinstance(config, dict):
        raise InvalidMcpConfig(name, f"expected an object, got {_json_type(config)}")
    kind = config.get("type")
    if kind is None:
        kind = "remote" if "url" in config and "command" not in config else "local"
    model: type[McpServer]
    if not isinstance(kind, str):
        raise InvalidMcpConfig(name, f"type: expected a string, got {_json_type(kind)}")
    if kind in LOCAL_TYPES:
        model = McpLocalServer
    elif kind in REMOTE_TYPES:
        model = McpRemoteServer
    else:
        raise InvalidMcpConfig(
            name, f"type: {kind!r} is not one of local, stdio, remote, http, sse"
        )
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise InvalidMcpConfig(name, _reason(exc)) from None


def parse_mcp_servers(mcp: Any) -> dict[str, McpServer]:
    """The session's ``mcp`` map as ``McpServer``s (None: none); ``InvalidMcpConfig`` names the
    first server that is not valid and why."""
    if mcp is None:
        return {}
    if not isinstance(mcp, Mapping):
        raise InvalidMcpConfig(None, f"expected an object of name -> server, got {_json_type(mcp)}")
    return {str(name): parse_mcp_server(str(name), config) for name, config in mcp.items()}


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__
