"""``create_app(config)``: the FastAPI app of the server.

At start-up the app opens the store, loads every active session and closes what a previous
server left open (``SessionEngine.recover``); at shutdown it ends every SSE stream, stops every
agent and closes the store. Middleware, outermost first: CORS when an origin is allowed (so
preflights are answered before auth), token auth, a path's trailing slash dropped, the body
limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from sandbox_agent.agents import AgentSettings
from sandbox_agent.agents.credentials import agent_env, extract_all
from sandbox_agent.api import HealthResponse
from sandbox_agent.inspector import Options, build_inspector
from sandbox_agent.server.auth import TokenAuth
from sandbox_agent.server.config import ServerConfig
from sandbox_agent.server.errors import install_error_handlers
from sandbox_agent.server.limits import BodyLimit
from sandbox_agent.server.responses import document_problems, problems
from sandbox_agent.server.routes import acp, agents, events, fs, hitl, sessions
from sandbox_agent.server.slashes import TrailingSlash
from sandbox_agent.sessions import SessionEngine, TurnLimits
from sandbox_agent.sessions.acp_endpoint import AcpEndpoint
from sandbox_agent.sessions.files import Jail
from sandbox_agent.store import StoreConfigError, StoreOwned, default_store_url, open_store
from sandbox_agent.version import __version__

logger = logging.getLogger(__name__)

BANNER = (
    "This is a Sandbox Agent server. Available endpoints:\n"
    "  GET /            this text\n"
    "  GET /v1/health   health check\n"
    "  GET /openapi.json the API description\n"
    "  /v1/...          the API (see /openapi.json)\n"
)


async def agent_settings(config: ServerConfig) -> AgentSettings:
    """The adapters' settings; credentials found now go into every agent's environment (the
    variable names are logged, never the values)."""
    extra_env: dict[str, str] = {}
    if config.pass_credentials:
        extra_env = agent_env(await asyncio.to_thread(extract_all))
        if extra_env:
            logger.info("passing credentials to agents: %s", ", ".join(sorted(extra_env)))
    return AgentSettings(
        mock_delay_ms=config.mock_delay_ms,
        agents_dir=Path(config.agents_dir) if config.agents_dir else None,
        acp_commands=dict(config.acp_commands),
        extra_env=extra_env,
        auto_install=config.auto_install,
    )


#: The fork route of the HTTP API, when the server has one: the inspector calls it, else its own.
FORK_ROUTE = "/v1/sessions/{session_id}/fork"


def _mount_inspector(app: FastAPI) -> None:
    """The inspector at ``/ui/`` over the server's store, live (prompts, answers and cancel go
    through ``/v1``) and writable (fork). Its pages are public, its data behind the token."""
    has_fork = any(getattr(route, "path", None) == FORK_ROUTE for route in app.router.routes)
    inspector = build_inspector(
        lambda: app.state.engine.store,
        Options(
            base="/ui",
            live=True,
            writable=True,
            fork_url="/v1/sessions/{id}/fork" if has_fork else None,
        ),
    )
    app.router.routes.append(inspector.index_route("/ui"))
    app.router.routes.append(Mount("/ui", app=inspector.app()))


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The server app for ``config`` (defaults: loopback, no token, the default store)."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = config.store_url or default_store_url()
        store = await open_store(url)
        leases = None
        try:
            # Before recovery: a second server must not close the first one's turns. Servers
            # sharing the store lease each session instead (--shared-store).
            if config.shared_store:
                leases = await store.share(config.lease_seconds, url)
            else:
                await store.claim(url)
        except (StoreOwned, StoreConfigError) as exc:
            logger.error("%s", exc)
            await store.close()
            raise
        engine = SessionEngine(
            store,
            settings=await agent_settings(config),
            root=config.root,
            snapshot_every=config.snapshot_every,
            leases=leases,
            turn_limits=TurnLimits(
                idle_timeout=config.turn_idle_timeout, cancel_grace=config.cancel_grace_seconds
            ),
        )
        recovered = await engine.recover()
        if recovered:
            logger.info("resumed %d session(s) after a restart", len(recovered))
        app.state.engine = engine
        app.state.acp = AcpEndpoint(
            store,
            engine.settings,
            directory=config.root or str(Path.cwd()),
            request_timeout=config.acp_request_timeout,
        )
        await app.state.acp.recover()
        try:
            yield
        finally:
            app.state.stopping.set()
            await app.state.acp.shutdown()
            await engine.shutdown()
            await store.close()

    app = FastAPI(
        title="sandbox-agent",
        version=__version__,
        description="Run coding agents in a sandbox behind an HTTP API; every session is an "
        "append-only event stream. Errors are application/problem+json.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # TrailingSlash serves them: no redirect built from Host
    )
    app.state.config = config
    # The filesystem API's jail: the root, else the directory the server started in.
    app.state.fs = Jail(config.root or os.getcwd(), config.fs_limits)
    app.state.stopping = asyncio.Event()
    install_error_handlers(app)
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        document = fastapi_openapi()  # built once, then cached by FastAPI
        if "Problem" not in document.get("components", {}).get("schemas", {}):
            document_problems(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", response_class=PlainTextResponse, include_in_schema=False)
    async def banner() -> str:
        return BANNER

    @app.get("/v1/health", response_model=HealthResponse, tags=["health"], responses=problems(503))
    async def health() -> HealthResponse:
        """Public: ``{"status": "ok"}``; 503 ``store_unavailable`` (with ``Retry-After``) while
        the store cannot be reached (a load balancer takes the server out of rotation)."""
        await app.state.engine.check_store()
        return HealthResponse()

    for module in (agents, sessions, events, hitl, acp, fs):
        # The routes themselves, not include_router: since FastAPI 0.137 an included router
        # rebuilds each route's handler on every request (about a quarter of a small request's
        # cost). Each route already carries its router's prefix and tags.
        app.router.routes.extend(module.router.routes)
    _mount_inspector(app)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(TrailingSlash)
    if config.token:
        app.add_middleware(TokenAuth, token=config.token)
    if config.cors_allow_origins:
        # Without an allowed origin CORS has nothing to allow: no middleware (it would wrap
        # every send of every response, each SSE chunk included).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_allow_origins),
            allow_methods=list(config.cors_allow_methods) or ["*"],
            allow_headers=list(config.cors_allow_headers) or ["*"],
            allow_credentials=config.cors_allow_credentials,
        )
    return app
