"""``sandbox-agent api ...``: v0.1-style client commands against a running server (httpx).

Every command takes ``-e/--endpoint`` (default ``$SANDBOX_AGENT_ENDPOINT``, then
``http://127.0.0.1:2468``), ``-t/--token`` (default ``$SANDBOX_AGENT_TOKEN``, sent as
``Authorization: Bearer``) and ``-n/--no-token`` (send no token at all). JSON answers are
pretty-printed to stdout; an error status prints the problem to stderr, then its detail as the
one-line reason, and exits 1; the SSE commands print the raw stream text as it arrives.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import httpx

from sandbox_agent.cli.app import app, fail, print_json

DEFAULT_ENDPOINT = "http://127.0.0.1:2468"

api_app = typer.Typer(help="Talk to a running server (v0.1 API).", no_args_is_help=True)
agents_app = typer.Typer(help="Agents of the server.", no_args_is_help=True)
sessions_app = typer.Typer(help="Sessions of the server.", no_args_is_help=True)
api_app.add_typer(agents_app, name="agents")
api_app.add_typer(sessions_app, name="sessions")
app.add_typer(api_app, name="api")

Endpoint = Annotated[
    str, typer.Option("-e", "--endpoint", envvar="SANDBOX_AGENT_ENDPOINT", help="Server URL.")
]
Token = Annotated[
    str | None, typer.Option("-t", "--token", envvar="SANDBOX_AGENT_TOKEN", help="Bearer token.")
]
NoToken = Annotated[
    bool,
    typer.Option("-n", "--no-token", help="Send no token (not even -t or $SANDBOX_AGENT_TOKEN)."),
]
IncludeRaw = Annotated[
    bool, typer.Option("--include-raw", help="Keep each event's raw agent payload.")
]

#: Seconds a request may take; an agent install downloads up to about 500 MB.
REQUEST_TIMEOUT = 60.0
INSTALL_TIMEOUT = 900.0


class Server:
    """Where the commands send their requests: an endpoint and the token to send, if any."""

    def __init__(self, endpoint: str, token: str | None, no_token: bool = False) -> None:
        self.endpoint = endpoint
        self.token = None if no_token else token or None

    def _client(self, timeout: float) -> httpx.Client:
        import httpx  # here, not at the top: the server command must not pay for it

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        **params: Any,
    ) -> Any:
        """One request; its JSON answer (None when empty). Exits 1 on an error status."""
        import httpx

        try:
            with self._client(timeout) as client:
                response = client.request(method, path, json=body, params=_params(params))
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.endpoint}: {exc}")
        if response.status_code >= 400:
            _fail_with(response)
        return response.json() if response.content else None

    def stream(self, method: str, path: str, body: Any = None, **params: Any) -> None:
        """One streaming request: its body to stdout line by line, until the server ends it
        (or Ctrl-C). Exits 1 on an error status."""
        import httpx

        try:
            with (
                self._client(REQUEST_TIMEOUT) as client,
                client.stream(
                    method,
                    path,
                    json=body,
                    params=_params(params),
                    timeout=httpx.Timeout(REQUEST_TIMEOUT, read=None),  # SSE may idle for long
                ) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    _fail_with(response)
                for line in response.iter_lines():
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
        except httpx.HTTPError as exc:
            fail(f"stream from {self.endpoint} failed: {exc}")
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:
            # The reader went away (``| head``): not an error. Python's docs' recipe, so that
            # the flush at exit does not report it either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _fail_with(response: httpx.Response) -> NoReturn:
    """The problem pretty-printed to stderr, then its detail as the one-line reason."""
    try:
        problem = response.json()
    except ValueError:
        fail(f"HTTP {response.status_code}: {response.text[:200]}")
    sys.stderr.write(json.dumps(problem, indent=2, ensure_ascii=False) + "\n")
    detail = problem.get("detail") if isinstance(problem, dict) else None
    fail(str(detail or f"HTTP {response.status_code}"))


def _show(value: Any) -> None:
    if value is not None:
        print_json(value)


def _raw(include_raw: bool) -> bool | None:
    return True if include_raw else None


def load_mcp_config(path: Path) -> dict[str, Any]:
    """``--mcp-config``: a JSON object of server name -> McpServerConfig (an object). Exits 1
    with a one-line reason when the file cannot be read or is not such an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"--mcp-config {path}: cannot read it: {reason}")
    try:
        config = json.loads(text)
    except ValueError as exc:
        fail(f"--mcp-config {path}: not JSON: {exc}")
    if not isinstance(config, dict):
        fail(
            f"--mcp-config {path}: expected a JSON object of name -> MCP server config, "
            f"not {_json_kind(config)}"
        )
    for name, server in config.items():
        if not isinstance(server, dict):
            fail(f"--mcp-config {path}: server {name!r} is {_json_kind(server)}, not an object")
    return config


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


# -- agents ---------------------------------------------------------------------------------
@agents_app.command("list")
def agents_list(
    endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None, no_token: NoToken = False
) -> None:
    """The agents the server knows, installed or not."""
    _show(Server(endpoint, token, no_token).call("GET", "/v1/agents"))


@agents_app.command("install")
def agents_install(
    agent: str,
    reinstall: Annotated[bool, typer.Option("-r", "--reinstall")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Install AGENT's CLI on the server (nothing to do for the mock)."""
    Server(endpoint, token, no_token).call(
        "POST", f"/v1/agents/{agent}/install", {"reinstall": reinstall}, timeout=INSTALL_TIMEOUT
    )


@agents_app.command("modes")
def agents_modes(
    agent: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """AGENT's modes."""
    _show(Server(endpoint, token, no_token).call("GET", f"/v1/agents/{agent}/modes"))


@agents_app.command("models")
def agents_models(
    agent: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """AGENT's models and its default one."""
    _show(Server(endpoint, token, no_token).call("GET", f"/v1/agents/{agent}/models"))


# -- sessions -------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None, no_token: NoToken = False
) -> None:
    """The server's sessions, newest first."""
    _show(Server(endpoint, token, no_token).call("GET", "/v1/sessions"))


@sessions_app.command("get")
def sessions_get(
    session_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """One session's info."""
    _show(Server(endpoint, token, no_token).call("GET", f"/v1/sessions/{session_id}"))


@sessions_app.command("create")
def sessions_create(
    session_id: str,
    agent: Annotated[str, typer.Option("-a", "--agent", help="mock, claude, acp:NAME, ...")],
    agent_mode: Annotated[str | None, typer.Option("-g", "--agent-mode")] = None,
    permission_mode: Annotated[str | None, typer.Option("-p", "--permission-mode")] = None,
    model: Annotated[str | None, typer.Option("-m", "--model")] = None,
    variant: Annotated[str | None, typer.Option("-v", "--variant")] = None,
    agent_version: Annotated[
        str | None,
        typer.Option("-A", "--agent-version", help="Version to install if the agent is missing."),
    ] = None,
    directory: Annotated[str | None, typer.Option("--directory")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    mcp_config: Annotated[
        Path | None,
        typer.Option(
            "--mcp-config",
            metavar="FILE.json",
            help="A JSON object of MCP server name -> config, sent as the session's mcp.",
        ),
    ] = None,
    skill: Annotated[
        list[str] | None,
        typer.Option(
            "--skill",
            metavar="DIR",
            help="A local skills directory, on the server's machine (repeat).",
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Create session SESSION_ID and start its agent."""
    body: dict[str, Any] = {
        "agent": agent,
        "agentMode": agent_mode,
        "permissionMode": permission_mode,
        "model": model,
        "variant": variant,
        "agentVersion": agent_version,
        "directory": directory,
        "title": title,
    }
    if mcp_config is not None:
        body["mcp"] = load_mcp_config(mcp_config)  # before any request: a bad file sends none
    if skill:
        body["skills"] = {"sources": [{"type": "local", "source": s} for s in skill]}
    body = {k: v for k, v in body.items() if v is not None}
    _show(Server(endpoint, token, no_token).call("POST", f"/v1/sessions/{session_id}", body))


@sessions_app.command("send-message")
def send_message(
    session_id: str,
    message: Annotated[str, typer.Option("-m", "--message")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Send a prompt; returns once the turn started (read its events with events)."""
    path = f"/v1/sessions/{session_id}/messages"
    Server(endpoint, token, no_token).call("POST", path, {"message": message})


@sessions_app.command("send-message-stream")
def send_message_stream(
    session_id: str,
    message: Annotated[str, typer.Option("-m", "--message")],
    include_raw: IncludeRaw = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Send a prompt and print the turn's SSE stream, up to its first terminal event."""
    path = f"/v1/sessions/{session_id}/messages/stream"
    Server(endpoint, token, no_token).stream(
        "POST", path, {"message": message}, include_raw=_raw(include_raw)
    )


@sessions_app.command("events")
def events(
    session_id: str,
    offset: Annotated[
        int | None, typer.Option("-o", "--offset", help="Only events after this sequence.")
    ] = None,
    limit: Annotated[int | None, typer.Option("-l", "--limit", help="At most this many.")] = None,
    include_raw: IncludeRaw = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """The session's stored events (with hasMore)."""
    path = f"/v1/sessions/{session_id}/events"
    answer = Server(endpoint, token, no_token).call(
        "GET", path, offset=offset, limit=limit, include_raw=_raw(include_raw)
    )
    _show(answer)


# v0.1's name for the same command.
sessions_app.command("get-messages", help="Alias of events.")(events)


@sessions_app.command("events-sse")
def events_sse(
    session_id: str,
    offset: Annotated[
        int | None, typer.Option("-o", "--offset", help="Only events after this sequence.")
    ] = None,
    include_raw: IncludeRaw = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Follow the session live as SSE, until Ctrl-C (or the server ends the stream)."""
    path = f"/v1/sessions/{session_id}/events/sse"
    Server(endpoint, token, no_token).stream(
        "GET", path, offset=offset, include_raw=_raw(include_raw)
    )


@sessions_app.command("reply-permission")
def reply_permission(
    session_id: str,
    permission_id: str,
    reply: Annotated[str, typer.Option("-r", "--reply", help="once, always or reject")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Answer a permission request."""
    path = f"/v1/sessions/{session_id}/permissions/{permission_id}/reply"
    Server(endpoint, token, no_token).call("POST", path, {"reply": reply.lower()})


@sessions_app.command("reply-question")
def reply_question(
    session_id: str,
    question_id: str,
    answers: Annotated[
        str,
        typer.Option(
            "-a", "--answers", help="JSON: one list of labels per question, e.g. '[[\"Yes\"]]'."
        ),
    ],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Answer a question."""
    try:
        parsed = json.loads(answers)
    except ValueError as exc:
        fail(f"--answers is not JSON: {exc}")
    path = f"/v1/sessions/{session_id}/questions/{question_id}/reply"
    Server(endpoint, token, no_token).call("POST", path, {"answers": parsed})


@sessions_app.command("reject-question")
def reject_question(
    session_id: str,
    question_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Decline to answer a question."""
    path = f"/v1/sessions/{session_id}/questions/{question_id}/reject"
    Server(endpoint, token, no_token).call("POST", path)


@sessions_app.command("cancel")
def cancel(
    session_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Interrupt the running turn (it ends as cancelled)."""
    Server(endpoint, token, no_token).call("POST", f"/v1/sessions/{session_id}/cancel")


@sessions_app.command("terminate")
def terminate(
    session_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Stop the session's agent and end the session (its events stay)."""
    Server(endpoint, token, no_token).call("POST", f"/v1/sessions/{session_id}/terminate")


@sessions_app.command("delete")
def delete(
    session_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
    no_token: NoToken = False,
) -> None:
    """Terminate the session if live, then delete it with its events."""
    Server(endpoint, token, no_token).call("DELETE", f"/v1/sessions/{session_id}")
