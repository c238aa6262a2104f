"""The server's settings (``ServerConfig``), filled from the command line or by a caller."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from sandbox_agent.replay import DEFAULT_SNAPSHOT_EVERY
from sandbox_agent.sessions.config import DEFAULT_CANCEL_GRACE_SECONDS
from sandbox_agent.sessions.files import FsLimits
from sandbox_agent.store import DEFAULT_LEASE_SECONDS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2468
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_MESSAGE_CHARS = 1_000_000
DEFAULT_MAX_ATTACHMENTS = 100


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``create_app`` needs. ``store_url`` None means the default SQLite store."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Bearer token guarding every route but ``/v1/health`` and ``/``; None: no auth.
    token: str | None = None
    store_url: str | None = None
    #: One of several servers on one store, each leasing the sessions it runs (Postgres;
    #: ``--shared-store``), instead of owning the whole store.
    shared_store: bool = False
    #: Seconds a session's lease lasts without a renewal (renewed every third of it).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    #: Working directory of agents whose session names none (None: the current directory).
    root: str | None = None
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_methods: tuple[str, ...] = ()
    cors_allow_headers: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    mock_delay_ms: int = 200
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    max_attachments: int = DEFAULT_MAX_ATTACHMENTS
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    #: Seconds between ``: ping`` comments on an idle SSE stream.
    sse_ping_seconds: float = 15.0
    #: Where agent CLIs are installed (None: ``$SANDBOX_AGENT_AGENTS_DIR``, else the data dir's).
    agents_dir: str | None = None
    #: Install a missing agent when a session asks for it (``--auto-install``).
    auto_install: bool = False
    #: ACP agents configured by ``--acp-agent NAME=COMMAND``: name -> argv.
    acp_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Pass the credentials found (``agents.credentials``) to agent processes.
    pass_credentials: bool = True
    #: Seconds a turn may go without a word from its agent (``--turn-idle-timeout``; None: no
    #: bound), and that a cancel waits before it stops the agent (``sessions.TurnLimits``).
    turn_idle_timeout: float | None = None
    cancel_grace_seconds: float = DEFAULT_CANCEL_GRACE_SECONDS
    #: Seconds a request POSTed to ``/v1/acp`` waits for the agent's answer (then 504;
    #: ``$SANDBOX_AGENT_ACP_REQUEST_TIMEOUT_MS``, upstream's variable).
    acp_request_timeout: float = 120.0
    #: The filesystem API's limits (``--fs-max-*``).
    fs_limits: FsLimits = field(default_factory=FsLimits)
    extra: dict[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, no_token: bool) -> None:
    """Refuse to serve a non-loopback address without a token, unless ``--no-token`` says so.

    Raises ``ValueError`` with the reason."""
    if token is not None and no_token:
        raise ValueError("--token and --no-token exclude each other")
    if token is None and not no_token and not is_loopback(host):
        raise ValueError(
            f"refusing to bind {host} without a token: pass --token (or set "
            "SANDBOX_AGENT_TOKEN), or --no-token to serve it unauthenticated"
        )
