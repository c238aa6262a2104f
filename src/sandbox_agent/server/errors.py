"""Errors as ``application/problem+json``: typed exceptions and the one place that renders them.

Routes raise ``ApiError`` for what is HTTP's own (bad input, limits) and let the domain errors of
the session engine, the agents and the store through; ``as_api_error`` maps each of those to its
problem, and the handlers installed by ``install_error_handlers`` turn every error, including
request validation failures, unknown routes and unexpected exceptions, into
``{type: "urn:sandbox-agent:error:<name>", title, status, detail, ...extensions}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from sandbox_agent.agents import AgentError, UnknownRequest, UnsupportedAgent
from sandbox_agent.agents import TurnInProgress as AgentTurnInProgress
from sandbox_agent.agents.errors import InvalidMcpConfig, InvalidMode, ModeNotSupported
from sandbox_agent.agents.install import InvalidAgentVersion
from sandbox_agent.replay import SequencePastEnd
from sandbox_agent.sessions import (
    AgentNotInstalled,
    AgentProcessExited,
    FsError,
    InstallFailed,
    InvalidSessionRequest,
    PathOutsideRoot,
    QueueFull,
    RequestNotFound,
    SessionError,
    SkillsError,
    TurnInProgress,
)
from sandbox_agent.sessions.acp_endpoint import (
    AcpAgentMismatch,
    AcpAgentRequired,
    AcpAgentUnavailable,
    AcpInvalidServerId,
    AcpRequestTimeout,
    AcpServerNotFound,
)
from sandbox_agent.store import (
    InvalidCursor,
    InvalidText,
    SequenceConflict,
    SessionExists,
    SessionNotFound,
    SessionOwned,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:sandbox-agent:error:"
#: Seconds a client is told to wait (``Retry-After``) while the store cannot be reached: about a
#: session's recovery probe (``sessions/store_retry.py``).
STORE_RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """An error with its problem name, HTTP status and detail; extensions go in the body."""

    def __init__(
        self,
        name: str,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.name = name
        self.status = status
        self.detail = detail
        #: HTTP headers of the answer (``Retry-After``).
        self.headers = headers or {}
        self.extensions = {k: v for k, v in extensions.items() if v is not None}

    @property
    def title(self) -> str:
        return " ".join(word.capitalize() for word in self.name.split("_"))

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.name,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


def invalid_request(message: str, **extensions: Any) -> ApiError:
    return ApiError("invalid_request", 400, f"invalid request: {message}", **extensions)


def session_not_found(session_id: str) -> ApiError:
    return ApiError(
        "session_not_found", 404, f"session not found: {session_id}", sessionId=session_id
    )


def session_already_exists(session_id: str) -> ApiError:
    return ApiError(
        "session_already_exists", 409, f"session already exists: {session_id}", sessionId=session_id
    )


def unsupported_agent(agent: str, reason: str | None = None) -> ApiError:
    detail = f"unsupported agent: {agent}" + (f" ({reason})" if reason else "")
    return ApiError("unsupported_agent", 400, detail, agent=agent)


def agent_not_installed(agent: str) -> ApiError:
    return ApiError("agent_not_installed", 404, f"agent not installed: {agent}", agent=agent)


def install_failed(agent: str, reason: str) -> ApiError:
    return ApiError("install_failed", 500, f"install failed: {agent}: {reason}", agent=agent)


def mode_not_supported(agent: str, mode: str) -> ApiError:
    return ApiError(
        "mode_not_supported",
        400,
        f"mode not supported: {agent} {mode}",
        agent=agent,
        details={"mode": mode},
    )


def token_invalid() -> ApiError:
    return ApiError(
        "token_invalid", 401, "token invalid", details={"message": "missing or invalid token"}
    )


def payload_too_large(limit: int) -> ApiError:
    return ApiError(
        "payload_too_large", 413, f"request body over the limit of {limit} bytes", limit=limit
    )


def request_not_found(kind: str, request_id: str, session_id: str) -> ApiError:
    """404 ``<kind>_not_found`` (permission, question, queued_prompt)."""
    first, *rest = kind.split("_")
    key = first + "".join(word.capitalize() for word in rest) + "Id"
    return ApiError(
        f"{kind}_not_found",
        404,
        f"unknown {kind.replace('_', ' ')} id: {request_id}",
        sessionId=session_id,
        details={key: request_id},
    )


def store_unavailable(exc: StoreUnavailable) -> ApiError:
    """503 with ``Retry-After``: the store cannot be reached (its connection, the network or
    the disk failed); the request may succeed once it answers again."""
    return ApiError(
        "store_unavailable",
        503,
        f"store unavailable: {exc}",
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


def session_owned(exc: SessionOwned) -> ApiError:
    """409: another live server holds the session's lease (servers sharing a store)."""
    holder = exc.lease.holder
    return ApiError(
        "session_owned",
        409,
        str(exc),
        sessionId=exc.session_id,
        owner={
            "serverId": holder.server_id,
            "pid": holder.pid,
            "host": holder.host,
            "since": holder.since.isoformat().replace("+00:00", "Z"),
        },
        leaseExpiresAt=exc.lease.expires_at.isoformat().replace("+00:00", "Z"),
    )


def store_corrupt(exc: StoreCorrupt) -> ApiError:
    """500: the session's stored stream is damaged (a gap, a row that does not decode). Not
    503: it is not transient, and retrying gives the same answer until the database is repaired
    or restored; the client can do nothing about it (not 4xx). ``sequence``: the first event
    concerned."""
    return ApiError(
        "store_corrupt",
        500,
        str(exc),
        sessionId=exc.session_id,
        sequence=exc.sequence or None,
    )


def not_acceptable(detail: str) -> ApiError:
    """406: the ``Accept`` header allows nothing the route answers with."""
    return ApiError("not_acceptable", 406, detail)


def unsupported_media_type(detail: str) -> ApiError:
    """415: a body of another ``Content-Type`` than the route takes."""
    return ApiError("unsupported_media_type", 415, detail)


#: The status and problem name of each kind of ``FsError``.
_FS_PROBLEMS: dict[str, tuple[int, str]] = {
    "not_found": (404, "path_not_found"),
    "exists": (409, "path_exists"),
    "not_empty": (409, "directory_not_empty"),
    "invalid": (400, "invalid_request"),
    "denied": (403, "permission_denied"),
    "too_large": (413, "payload_too_large"),
    "io": (500, "fs_error"),
}


def fs_error(exc: FsError) -> ApiError:
    status, name = _FS_PROBLEMS.get(exc.kind, (500, "fs_error"))
    details = {"path": exc.path} if exc.path is not None else None
    return ApiError(name, status, str(exc), limit=exc.limit, details=details)


def problem_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.body(),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers={**error.headers, **(headers or {})} or None,
    )


def as_api_error(exc: Exception) -> ApiError:
    """The problem a domain error (of the engine, the agents or the store) stands for."""
    match exc:
        case ApiError():
            return exc
        case AcpAgentRequired() | AcpInvalidServerId():
            return invalid_request(str(exc), serverId=exc.server_id)
        case AcpAgentMismatch():
            return ApiError("conflict", 409, str(exc), serverId=exc.server_id, agent=exc.agent)
        case AcpServerNotFound():
            return ApiError("acp_server_not_found", 404, str(exc), serverId=exc.server_id)
        case AcpRequestTimeout():
            return ApiError("timeout", 504, str(exc), serverId=exc.server_id)
        case AcpAgentUnavailable():
            return ApiError("agent_process_exited", 500, str(exc), serverId=exc.server_id)
        case InvalidSessionRequest():
            return invalid_request(exc.reason, sessionId=exc.session_id)
        case PathOutsideRoot():
            return ApiError("path_outside_root", 400, str(exc), details={exc.what: exc.path})
        case SkillsError(kind="invalid_config"):
            return invalid_request(exc.detail, details={"field": "skills"})
        case SkillsError():
            # 400 each (the request names what cannot be had), typed by what went wrong.
            return ApiError(exc.kind, 400, exc.detail, details={"field": "skills"})
        case FsError():
            return fs_error(exc)
        case InvalidAgentVersion():
            return invalid_request(f"agentVersion: {exc.reason}", details={"field": "agentVersion"})
        case TurnInProgress():
            return ApiError("turn_in_progress", 409, str(exc), sessionId=exc.session_id)
        case QueueFull():
            return ApiError("queue_full", 409, str(exc), sessionId=exc.session_id, limit=exc.limit)
        case RequestNotFound():
            return request_not_found(exc.kind, exc.request_id, exc.session_id)
        case AgentNotInstalled():
            return agent_not_installed(exc.agent)
        case InstallFailed():
            return install_failed(exc.agent, exc.reason)
        case AgentProcessExited():
            return ApiError("agent_process_exited", 500, str(exc), agent=exc.agent)
        case ModeNotSupported():
            return mode_not_supported(exc.agent, exc.mode)
        case InvalidMode() | InvalidMcpConfig():
            return invalid_request(str(exc))
        case SessionNotFound():
            return session_not_found(exc.session_id)
        case SessionExists():
            return session_already_exists(exc.session_id)
        case SequenceConflict():
            return ApiError("sequence_conflict", 409, str(exc), sessionId=exc.session_id)
        case SessionOwned():
            return session_owned(exc)
        case InvalidCursor() | InvalidText():
            return invalid_request(str(exc))
        case SequencePastEnd():
            return invalid_request(str(exc))
        case UnsupportedAgent():
            return unsupported_agent(exc.agent_id, str(exc))
        case AgentTurnInProgress():
            return ApiError("turn_in_progress", 409, str(exc))
        case UnknownRequest():
            return ApiError(f"{exc.kind}_not_found", 404, str(exc))
        case AgentError():
            return ApiError("agent_error", 500, f"agent error: {exc}")
        case StoreUnavailable():
            return store_unavailable(exc)
        case StoreCorrupt():
            return store_corrupt(exc)
        case StoreError():
            return ApiError("store_error", 503, f"store error: {exc}")
    return ApiError("internal_error", 500, "internal server error")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def _allowed(request: Request) -> list[str]:
    """Every method some route of the app serves on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(as_api_error(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        error = invalid_request(_validation_message(exc), details={"errors": errors})
        return problem_response(error)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            error = ApiError("not_found", 404, f"no route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = ApiError(
                "method_not_allowed", 405, f"{request.method} is not allowed on {request.url.path}"
            )
            # Starlette names the methods of the first route of that path only.
            return problem_response(error, headers={"Allow": ", ".join(_allowed(request))})
        else:
            name = "invalid_request" if exc.status_code == 400 else f"http_{exc.status_code}"
            error = ApiError(name, exc.status_code, str(exc.detail))
        return problem_response(error, headers=dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = as_api_error(exc)
        if error.name in ("internal_error", "store_error", "agent_error"):
            logger.exception("request %s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(error)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(SessionError, on_api_error)
    app.add_exception_handler(StoreError, on_api_error)
    app.add_exception_handler(AgentError, on_api_error)
    app.add_exception_handler(SequencePastEnd, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
