"""``sandbox-agent server``: run the HTTP server (``sandbox_agent.server``) under uvicorn."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox_agent.cli.app import app, fail

if TYPE_CHECKING:
    from sandbox_agent.server.config import ServerConfig

# The options' defaults, as ``sandbox_agent.server.config`` has them (a test checks they agree):
# that module imports the replay engine, which ``--help`` must not pay for. The app, uvicorn and
# the agents are imported by the command itself.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2468
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_MESSAGE_CHARS = 1_000_000
DEFAULT_MAX_ATTACHMENTS = 100
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_CANCEL_GRACE_SECONDS = 5.0
DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
DEFAULT_MAX_TAR_ENTRIES = 100_000
DEFAULT_MAX_TAR_BYTES = 4 * 1024**3
DEFAULT_MAX_PATH_CHARS = 4096

#: What a backend that installed only the SDK lacks to run a server.
SERVER_EXTRA = "pip install 'sandbox-agent[server]'"


def require_server_extra(command: str) -> None:
    """Exit 1 with the install line when the server's web stack (the ``server`` extra) is
    missing."""
    missing = [m for m in ("fastapi", "uvicorn") if _missing(m)]
    if missing:
        fail(
            f"{command} needs the server's web stack ({' and '.join(missing)} not installed): "
            f"{SERVER_EXTRA}"
        )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a None in sys.modules: blocked on purpose
        return True


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Run the server for ``config`` until SIGINT/SIGTERM (a graceful stop: streams end,
    agents stop, the store closes)."""
    import logging

    import uvicorn

    from sandbox_agent.server import create_app

    class _Server(uvicorn.Server):
        """Ends every SSE stream as soon as a stop is asked for, so shutdown never waits on
        them."""

        def __init__(self, config: uvicorn.Config, stopping: object) -> None:
            super().__init__(config)
            self._stopping = stopping

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self._stopping.set()  # type: ignore[attr-defined]
            super().handle_exit(sig, frame)

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Bound and listening before the app starts: a second server on a taken port exits here,
    # before its crash recovery could touch any session.
    sock = listen(config.host, config.port)
    application = create_app(config)
    uv_config = uvicorn.Config(
        application,
        host=config.host,
        port=config.port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=5,
        lifespan="on",
        ws="none",  # no WebSocket routes: skip loading a WebSocket library (memory)
    )
    logging.getLogger(__name__).info(
        "listening on http://%s:%d", config.host, sock.getsockname()[1]
    )
    _Server(uv_config, application.state.stopping).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; exit 3 (uvicorn's start-up failure)
    with the reason when the address is taken or cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses the port
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=3)
    sock.set_inheritable(True)
    return sock


@app.command("server")
def server_command(
    host: Annotated[str, typer.Option("-H", "--host", help="Address to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("-p", "--port", help="Port to bind.")] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            "-t", "--token", envvar="SANDBOX_AGENT_TOKEN", help="Require this bearer token."
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option("-n", "--no-token", help="Serve without a token, even off loopback."),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL (default: $SANDBOX_AGENT_STORE, then SQLite in the data dir).",
        ),
    ] = None,
    shared_store: Annotated[
        bool,
        typer.Option(
            "--shared-store",
            help="Share the store with other servers started so (Postgres only): each runs "
            "the sessions it leases, instead of one server owning the store.",
        ),
    ] = False,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            min=1,
            max=86_400,
            metavar="SECONDS",
            help="With --shared-store: how long a session's lease outlives its server's last "
            "renewal (renewed every third of it); another server takes the session over after.",
        ),
    ] = DEFAULT_LEASE_SECONDS,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Agents' default working directory, the bound of every session's directory "
            "and the filesystem API's jail (default: the current directory).",
        ),
    ] = None,
    fs_max_file_bytes: Annotated[
        int, typer.Option("--fs-max-file-bytes", min=0, help="Largest file the fs API writes.")
    ] = DEFAULT_MAX_FILE_BYTES,
    fs_max_tar_entries: Annotated[
        int, typer.Option("--fs-max-tar-entries", min=0, help="Most entries of an fs upload.")
    ] = DEFAULT_MAX_TAR_ENTRIES,
    fs_max_tar_bytes: Annotated[
        int,
        typer.Option(
            "--fs-max-tar-bytes", min=0, help="Largest fs upload, as sent and as unpacked."
        ),
    ] = DEFAULT_MAX_TAR_BYTES,
    fs_max_path_chars: Annotated[
        int, typer.Option("--fs-max-path-chars", min=1, help="Longest path the fs API takes.")
    ] = DEFAULT_MAX_PATH_CHARS,
    cors_allow_origin: Annotated[
        list[str] | None, typer.Option("-O", "--cors-allow-origin", help="CORS origin (repeat).")
    ] = None,
    cors_allow_method: Annotated[
        list[str] | None, typer.Option("-M", "--cors-allow-method", help="CORS method (repeat).")
    ] = None,
    cors_allow_header: Annotated[
        list[str] | None, typer.Option("-A", "--cors-allow-header", help="CORS header (repeat).")
    ] = None,
    cors_allow_credentials: Annotated[
        bool, typer.Option("-C", "--cors-allow-credentials", help="Allow CORS credentials.")
    ] = False,
    mock_delay_ms: Annotated[
        int, typer.Option("--mock-delay-ms", min=0, help="Mock agent's delay between events.")
    ] = 200,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Largest request body accepted (413).")
    ] = DEFAULT_MAX_BODY_BYTES,
    max_message_chars: Annotated[
        int, typer.Option("--max-message-chars", min=1, help="Longest prompt accepted (400).")
    ] = DEFAULT_MAX_MESSAGE_CHARS,
    max_attachments: Annotated[
        int, typer.Option("--max-attachments", min=0, help="Most attachments a prompt may have.")
    ] = DEFAULT_MAX_ATTACHMENTS,
    sse_ping_seconds: Annotated[
        float, typer.Option("--sse-ping-seconds", min=0.01, hidden=True)
    ] = 15.0,
    acp_request_timeout_ms: Annotated[
        int,
        typer.Option(
            "--acp-request-timeout-ms",
            min=1,
            envvar="SANDBOX_AGENT_ACP_REQUEST_TIMEOUT_MS",
            help="Milliseconds a request POSTed to /v1/acp waits for the agent (then 504).",
        ),
    ] = 120_000,
    agents_dir: Annotated[
        Path | None,
        typer.Option(
            "--agents-dir",
            help="Where agent CLIs are installed (default: $SANDBOX_AGENT_AGENTS_DIR, then "
            "<data dir>/agents).",
        ),
    ] = None,
    auto_install: Annotated[
        bool,
        typer.Option("--auto-install", help="Install a missing agent when a session asks for it."),
    ] = False,
    acp_agent: Annotated[
        list[str] | None,
        typer.Option(
            "--acp-agent",
            metavar="NAME=COMMAND",
            help="An ACP agent, then known as acp:NAME (repeat). Example: "
            "--acp-agent 'gemini=gemini --experimental-acp'.",
        ),
    ] = None,
    turn_idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--turn-idle-timeout",
            min=0.001,
            metavar="SECONDS",
            help="End a turn whose agent sends nothing for this long (error, turn.ended "
            "{error}) and stop the agent; time waiting for a permission or question answer "
            "does not count. Default: no bound.",
        ),
    ] = None,
    cancel_grace_seconds: Annotated[
        float, typer.Option("--cancel-grace-seconds", min=0, hidden=True)
    ] = DEFAULT_CANCEL_GRACE_SECONDS,
    no_credentials: Annotated[
        bool,
        typer.Option(
            "--no-credentials",
            help="Do not pass the API keys found in agents' config files to agent processes.",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the HTTP server (default 127.0.0.1:2468, SQLite store in the data dir)."""
    require_server_extra("sandbox-agent server")
    from sandbox_agent.server.config import ServerConfig, check_bind
    from sandbox_agent.sessions.files import FsLimits

    if token == "":
        token = None
    if (
        no_token
        and os.environ.get("SANDBOX_AGENT_TOKEN")
        and token == os.environ.get("SANDBOX_AGENT_TOKEN")
    ):
        token = None  # --no-token wins over the environment
    try:
        check_bind(host, token, no_token)
    except ValueError as exc:
        fail(str(exc))
    if root is not None and not root.is_dir():
        fail(f"--root {root} is not a directory")
    from sandbox_agent.agents.registry import parse_acp_command

    acp_commands: dict[str, tuple[str, ...]] = {}
    for value in acp_agent or ():
        try:
            name, argv = parse_acp_command(value)
        except ValueError as exc:
            fail(f"--acp-agent: {exc}")
        acp_commands[name] = argv
    config = ServerConfig(
        host=host,
        port=port,
        token=token,
        store_url=store,
        shared_store=shared_store,
        lease_seconds=lease_seconds,
        root=str(root.resolve()) if root is not None else None,
        cors_allow_origins=tuple(cors_allow_origin or ()),
        cors_allow_methods=tuple(cors_allow_method or ()),
        cors_allow_headers=tuple(cors_allow_header or ()),
        cors_allow_credentials=cors_allow_credentials,
        mock_delay_ms=mock_delay_ms,
        max_body_bytes=max_body_bytes,
        max_message_chars=max_message_chars,
        max_attachments=max_attachments,
        sse_ping_seconds=sse_ping_seconds,
        acp_request_timeout=acp_request_timeout_ms / 1000,
        agents_dir=str(agents_dir.resolve()) if agents_dir is not None else None,
        auto_install=auto_install,
        acp_commands=acp_commands,
        pass_credentials=not no_credentials,
        turn_idle_timeout=turn_idle_timeout,
        cancel_grace_seconds=cancel_grace_seconds,
        fs_limits=FsLimits(
            max_file_bytes=fs_max_file_bytes,
            max_tar_entries=fs_max_tar_entries,
            max_tar_bytes=fs_max_tar_bytes,
            max_path_chars=fs_max_path_chars,
        ),
    )
    serve(config, log_level)
