"""``sandbox-agent api ...``: v0.1-style client commands against a running server, through the
SDK's ``ApiClient`` (``sandbox_agent.sdk.http``).

Every command takes ``-e/--endpoint`` (default ``$SANDBOX_AGENT_ENDPOINT``, then
``http://127.0.0.1:2468``), ``-t/--token`` (default ``$SANDBOX_AGENT_TOKEN``, sent as
``Authorization: Bearer``) and ``-n/--no-token`` (send no token at all), declared once by
``server_options``. JSON answers are pretty-printed to stdout; an error status prints the problem
to stderr, then its detail as the one-line reason, and exits 1; the SSE commands print the raw
stream text as it arrives.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from sandbox_agent.cli.app import app, fail, group, print_json

# httpx, pydantic and the wire models load when a command runs, not for ``--help``.
if TYPE_CHECKING:
    from sandbox_agent.sdk.errors import SandboxAgentError
    from sandbox_agent.sdk.http import ApiClient

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:2468"

api_app = group("Talk to a running server (v0.1 API).")
agents_app = group("Agents of the server.")
sessions_app = group("Sessions of the server.")
fs_app = group("Files inside the server's root (paths outside it are refused).")
api_app.add_typer(agents_app, name="agents")
api_app.add_typer(sessions_app, name="sessions")
api_app.add_typer(fs_app, name="fs")
app.add_typer(api_app, name="api")

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

    def _client(self) -> ApiClient:
        import httpx

        from sandbox_agent.sdk.http import ApiClient

        return ApiClient.open(self.endpoint, self.token, timeout=httpx.Timeout(REQUEST_TIMEOUT))

    def call(self, ask: Callable[[ApiClient], Awaitable[T]]) -> T:
        """``ask(client)``: its answer. Exits 1 on an error status or an unreachable server."""
        import asyncio

        import httpx

        from sandbox_agent.sdk.errors import SandboxAgentError

        async def run() -> T:
            async with self._client() as client:
                return await ask(client)

        try:
            return asyncio.run(run())
        except SandboxAgentError as exc:
            _fail_with(exc)
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.endpoint}: {exc}")

    def stream(self, lines: Callable[[ApiClient], AsyncIterator[str]]) -> None:
        """Print ``lines(client)`` to stdout as they come, until the server ends the stream (or
        Ctrl-C). Exits 1 on an error status."""
        import asyncio

        import httpx

        from sandbox_agent.sdk.errors import SandboxAgentError

        async def run() -> None:
            async with self._client() as client:
                async for line in lines(client):
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()

        try:
            asyncio.run(run())
        except SandboxAgentError as exc:
            _fail_with(exc)
        except httpx.HTTPError as exc:
            fail(f"stream from {self.endpoint} failed: {exc}")
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:
            # The reader went away (``| head``): not an error. Python's docs' recipe, so that
            # the flush at exit does not report it either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail_with(error: SandboxAgentError) -> NoReturn:
    """The problem pretty-printed to stderr, then its detail as the one-line reason."""
    if error.body is not None:
        fail(f"HTTP {error.status}: {error.body[:200]}")
    sys.stderr.write(json.dumps(error.problem, indent=2, ensure_ascii=False) + "\n")
    fail(str(error.problem.get("detail") or f"HTTP {error.status}"))


#: The options every command has, appended to its own by ``server_options``.
_SERVER_OPTIONS = (
    inspect.Parameter(
        "endpoint",
        inspect.Parameter.KEYWORD_ONLY,
        default=DEFAULT_ENDPOINT,
        annotation=Annotated[
            str,
            typer.Option("-e", "--endpoint", envvar="SANDBOX_AGENT_ENDPOINT", help="Server URL."),
        ],
    ),
    inspect.Parameter(
        "token",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option("-t", "--token", envvar="SANDBOX_AGENT_TOKEN", help="Bearer token."),
        ],
    ),
    inspect.Parameter(
        "no_token",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "-n", "--no-token", help="Send no token (not even -t or $SANDBOX_AGENT_TOKEN)."
            ),
        ],
    ),
)


def server_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the ``-e``/``-t``/``-n`` options, after its own; it receives them as
    one ``server: Server`` argument."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "server"]

    @functools.wraps(command)
    def with_server(
        *args: Any, endpoint: str, token: str | None, no_token: bool, **kw: Any
    ) -> None:
        command(*args, server=Server(endpoint, token, no_token), **kw)

    parameters = [*own, *_SERVER_OPTIONS]
    with_server.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_server.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_server


def _show(value: Any) -> None:
    if value is not None:
        print_json(value)


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
@server_options
def agents_list(server: Server) -> None:
    """The agents the server knows, installed or not."""
    _show(server.call(lambda api: api.list_agents()))


@agents_app.command("install")
@server_options
def agents_install(
    agent: str,
    server: Server,
    reinstall: Annotated[bool, typer.Option("-r", "--reinstall")] = False,
) -> None:
    """Install AGENT's CLI on the server (nothing to do for the mock)."""
    import httpx

    timeout = httpx.Timeout(INSTALL_TIMEOUT)
    server.call(lambda api: api.install_agent(agent, reinstall, timeout=timeout))


@agents_app.command("modes")
@server_options
def agents_modes(agent: str, server: Server) -> None:
    """AGENT's modes."""
    _show(server.call(lambda api: api.agent_modes(agent)))


@agents_app.command("models")
@server_options
def agents_models(agent: str, server: Server) -> None:
    """AGENT's models and its default one."""
    _show(server.call(lambda api: api.agent_models(agent)))


# -- sessions -------------------------------------------------------------------------------
@sessions_app.command("list")
@server_options
def sessions_list(server: Server) -> None:
    """The server's sessions, newest first."""
    _show(server.call(lambda api: api.list_sessions()))


@sessions_app.command("get")
@server_options
def sessions_get(session_id: str, server: Server) -> None:
    """One session's info."""
    _show(server.call(lambda api: api.get_session(session_id)))


@sessions_app.command("create")
@server_options
def sessions_create(
    session_id: str,
    server: Server,
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
) -> None:
    """Create session SESSION_ID and start its agent."""
    # Before any request: a bad file sends none.
    mcp = load_mcp_config(mcp_config) if mcp_config is not None else None
    skills = {"sources": [{"type": "local", "source": s} for s in skill]} if skill else None

    async def create(api: ApiClient) -> dict[str, Any]:
        from sandbox_agent.api import CreateSessionRequest
        from sandbox_agent.sdk.http import request_body

        request = request_body(
            CreateSessionRequest,
            agent=agent,
            agent_mode=agent_mode,
            permission_mode=permission_mode,
            model=model,
            variant=variant,
            agent_version=agent_version,
            directory=directory,
            title=title,
            mcp=mcp,
            skills=skills,
        )
        return await api.create_session(session_id, request)

    _show(server.call(create))


Message = Annotated[str, typer.Option("-m", "--message")]
Offset = Annotated[
    int | None, typer.Option("-o", "--offset", help="Only events after this sequence.")
]


def _message(text: str) -> Any:
    from sandbox_agent.api import MessageRequest
    from sandbox_agent.sdk.http import request_body

    return request_body(MessageRequest, message=text)


@sessions_app.command("send-message")
@server_options
def send_message(session_id: str, server: Server, message: Message) -> None:
    """Send a prompt; returns once the turn started (read its events with events)."""
    server.call(lambda api: api.send_message(session_id, _message(message)))


@sessions_app.command("send-message-stream")
@server_options
def send_message_stream(
    session_id: str, server: Server, message: Message, include_raw: IncludeRaw = False
) -> None:
    """Send a prompt and print the turn's SSE stream, up to its first terminal event."""
    server.stream(lambda api: api.send_message_stream(session_id, _message(message), include_raw))


@sessions_app.command("events")
@server_options
def events(
    session_id: str,
    server: Server,
    offset: Offset = None,
    limit: Annotated[int | None, typer.Option("-l", "--limit", help="At most this many.")] = None,
    include_raw: IncludeRaw = False,
) -> None:
    """The session's stored events (with hasMore)."""
    _show(server.call(lambda api: api.events(session_id, offset, limit, include_raw)))


# v0.1's name for the same command.
sessions_app.command("get-messages", help="Alias of events.")(events)


@sessions_app.command("events-sse")
@server_options
def events_sse(
    session_id: str, server: Server, offset: Offset = None, include_raw: IncludeRaw = False
) -> None:
    """Follow the session live as SSE, until Ctrl-C (or the server ends the stream)."""
    server.stream(lambda api: api.events_sse(session_id, offset, include_raw))


@sessions_app.command("reply-permission")
@server_options
def reply_permission(
    session_id: str,
    permission_id: str,
    server: Server,
    reply: Annotated[str, typer.Option("-r", "--reply", help="once, always or reject")],
) -> None:
    """Answer a permission request."""
    answer: Any = reply.lower()  # checked by the wire model
    server.call(lambda api: api.reply_permission(session_id, permission_id, answer))


@sessions_app.command("reply-question")
@server_options
def reply_question(
    session_id: str,
    question_id: str,
    server: Server,
    answers: Annotated[
        str,
        typer.Option(
            "-a", "--answers", help="JSON: one list of labels per question, e.g. '[[\"Yes\"]]'."
        ),
    ],
) -> None:
    """Answer a question."""
    try:
        parsed = json.loads(answers)
    except ValueError as exc:
        fail(f"--answers is not JSON: {exc}")
    server.call(lambda api: api.reply_question(session_id, question_id, parsed))


@sessions_app.command("reject-question")
@server_options
def reject_question(session_id: str, question_id: str, server: Server) -> None:
    """Decline to answer a question."""
    server.call(lambda api: api.reject_question(session_id, question_id))


@sessions_app.command("cancel")
@server_options
def cancel(session_id: str, server: Server) -> None:
    """Interrupt the running turn (it ends as cancelled)."""
    server.call(lambda api: api.cancel(session_id))


@sessions_app.command("terminate")
@server_options
def terminate(session_id: str, server: Server) -> None:
    """Stop the session's agent and end the session (its events stay)."""
    server.call(lambda api: api.terminate(session_id))


@sessions_app.command("delete")
@server_options
def delete(session_id: str, server: Server) -> None:
    """Terminate the session if live, then delete it with its events."""
    server.call(lambda api: api.delete_session(session_id))


# -- upstream's ACP endpoint (/v1/acp, docs/acp.md) -------------------------------------------
acp_app = group("The ACP endpoint (upstream's v0.2+ API): post, stream, close.")
api_app.add_typer(acp_app, name="acp")

ServerId = Annotated[str, typer.Option("--server-id", help="The ACP server id.")]


@acp_app.command("post")
@server_options
def acp_post(
    server: Server,
    server_id: ServerId,
    agent: Annotated[
        str | None, typer.Option("--agent", help="The agent (first POST of a server id).")
    ] = None,
    json_text: Annotated[str | None, typer.Option("--json", help="The JSON-RPC envelope.")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json-file", help="A file holding the envelope.")
    ] = None,
) -> None:
    """POST one JSON-RPC envelope; print the agent's response (nothing for a notification)."""
    if (json_text is None) == (json_file is None):
        fail("give one of --json and --json-file")
    text = json_text if json_text is not None else Path(str(json_file)).read_text()
    try:
        envelope = json.loads(text)
    except ValueError as exc:
        fail(f"the envelope is not JSON: {exc}")
    params = {"agent": agent} if agent else None
    path = f"/v1/acp/{server_id}"
    _show(server.call(lambda api: api.request_json("POST", path, json=envelope, params=params)))


@acp_app.command("stream")
@server_options
def acp_stream(
    server: Server,
    server_id: ServerId,
    last_event_id: Annotated[
        int | None,
        typer.Option("--last-event-id", min=0, help="Replay what came after this id only."),
    ] = None,
) -> None:
    """Follow what the agent writes, as SSE text, until Ctrl-C (or the server is closed)."""

    def lines(api: ApiClient) -> AsyncIterator[str]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        return api.stream_lines("GET", f"/v1/acp/{server_id}", headers=headers)

    server.stream(lines)


@acp_app.command("close")
@server_options
def acp_close(server: Server, server_id: ServerId) -> None:
    """DELETE the ACP server: its agent stops, its stream ends (kept in the store)."""
    server.call(lambda api: api.request("DELETE", f"/v1/acp/{server_id}"))


# -- fs -------------------------------------------------------------------------------------
SessionIdOption = Annotated[
    str | None,
    typer.Option("--session-id", help="Resolve relative paths in this session's directory."),
]


def _fs(api: ApiClient) -> Any:
    from sandbox_agent.sdk.fs import FsApi

    return FsApi(api)


def _wire(value: Any) -> Any:
    if isinstance(value, list):
        return [item.wire() for item in value]
    return value.wire()


@fs_app.command("entries")
@server_options
def fs_entries(
    server: Server,
    path: Annotated[str, typer.Option("--path", help="A directory.")] = ".",
    session_id: SessionIdOption = None,
) -> None:
    """A directory's entries, sorted by name."""
    _show(_wire(server.call(lambda api: _fs(api).entries(path, session_id))))


@fs_app.command("stat")
@server_options
def fs_stat(path: str, server: Server, session_id: SessionIdOption = None) -> None:
    """PATH's type, size and modification time (symlinks followed)."""
    _show(_wire(server.call(lambda api: _fs(api).stat(path, session_id))))


@fs_app.command("read")
@server_options
def fs_read(
    path: str,
    server: Server,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file, not stdout.")
    ] = None,
    session_id: SessionIdOption = None,
) -> None:
    """PATH's raw bytes, streamed to stdout (or --output)."""

    async def read(api: ApiClient) -> None:
        if output is not None:
            await _fs(api).read_to(path, output, session_id)
            return
        async for chunk in _fs(api).iter_read(path, session_id):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    server.call(read)


@fs_app.command("write")
@server_options
def fs_write(
    path: str,
    server: Server,
    content: Annotated[str | None, typer.Option("--content", help="The text to write.")] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="A local file to send (streamed).")
    ] = None,
    session_id: SessionIdOption = None,
) -> None:
    """Write --content or --from-file to PATH (parents created, replaced whole)."""
    if (content is None) == (from_file is None):
        fail("give one of --content and --from-file")
    body: Any = from_file if from_file is not None else (content or "").encode()
    _show(_wire(server.call(lambda api: _fs(api).write(path, body, session_id))))


@fs_app.command("mkdir")
@server_options
def fs_mkdir(path: str, server: Server, session_id: SessionIdOption = None) -> None:
    """mkdir -p PATH."""
    _show(_wire(server.call(lambda api: _fs(api).mkdir(path, session_id))))


@fs_app.command("move")
@server_options
def fs_move(
    source: str,
    destination: str,
    server: Server,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DESTINATION.")] = False,
    session_id: SessionIdOption = None,
) -> None:
    """Rename SOURCE to DESTINATION."""
    _show(_wire(server.call(lambda api: _fs(api).move(source, destination, overwrite, session_id))))


@fs_app.command("delete")
@server_options
def fs_delete(
    path: str,
    server: Server,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="A directory and all in it.")
    ] = False,
    session_id: SessionIdOption = None,
) -> None:
    """Remove a file, a symlink or a directory (empty unless --recursive)."""
    _show(_wire(server.call(lambda api: _fs(api).delete(path, recursive, session_id))))


TarOption = Annotated[Path, typer.Option("--tar", help="A tar archive, plain or gzip.")]
UploadPath = Annotated[str, typer.Option("--path", help="The directory to unpack into.")]


@fs_app.command("upload")
@server_options
def fs_upload(
    server: Server, tar: TarOption, path: UploadPath = ".", session_id: SessionIdOption = None
) -> None:
    """Unpack a tar archive (plain or gzip) into --path; an entry outside the root refuses it
    all."""
    _show(_wire(server.call(lambda api: _fs(api).upload(tar, path, session_id))))


# v0.1's name of ``upload``: the same command.
fs_app.command("upload-batch", hidden=True)(fs_upload)
