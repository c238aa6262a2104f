"""What routes share: the session engine and the config from the app, id and flag parameters.

The dependencies are ``async def`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hop per dependency per request. The hottest route
(``POST .../messages``, once per prompt) takes the request and uses ``engine_of`` and
``config_of`` instead: each dependency costs FastAPI some work on every request."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from sandbox_agent.api import ID_PATTERN
from sandbox_agent.server.config import ServerConfig
from sandbox_agent.sessions import SessionEngine


def engine_of(request: Request) -> SessionEngine:
    engine: SessionEngine = request.app.state.engine
    return engine


def config_of(request: Request) -> ServerConfig:
    config: ServerConfig = request.app.state.config
    return config


async def get_engine(request: Request) -> SessionEngine:
    return engine_of(request)


async def get_config(request: Request) -> ServerConfig:
    return config_of(request)


async def get_stop(request: Request) -> asyncio.Event:
    stop: asyncio.Event = request.app.state.stopping
    return stop


Engine = Annotated[SessionEngine, Depends(get_engine)]
Config = Annotated[ServerConfig, Depends(get_config)]
Stopping = Annotated[asyncio.Event, Depends(get_stop)]
SessionId = Annotated[
    str, Path(pattern=ID_PATTERN, description="Session id: [A-Za-z0-9._:-]{1,128}")
]
RequestId = Annotated[str, Path(pattern=ID_PATTERN)]


async def include_raw_flag(
    include_raw: Annotated[bool, Query(description="Return each event's raw payload.")] = False,
    includeRaw: Annotated[bool | None, Query(include_in_schema=False)] = None,
) -> bool:
    return include_raw or bool(includeRaw)


IncludeRaw = Annotated[bool, Depends(include_raw_flag)]
