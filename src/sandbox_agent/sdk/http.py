"""``ApiClient``: the HTTP API of a sandbox-agent server, one method per endpoint, no local store.

Request bodies are the models of ``sandbox_agent.api``; answers are the server's JSON as it sent
it (camelCase objects, ``None`` for an empty answer). An error status raises
``SandboxAgentError`` with the server's problem; a body the models refuse raises it too (400
``invalid_request``), before any request. ``SandboxAgent`` sends its requests through one; the
``sandbox-agent api`` commands use it directly.

Example::

    async with ApiClient.open("http://127.0.0.1:2468", token) as api:
        await api.create_session("s1", CreateSessionRequest(agent="mock"))
        await api.send_message("s1", MessageRequest(message="hi"))
        async for line in api.events_sse("s1"):
            print(line)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import ValidationError

from sandbox_agent.api import (
    ApiModel,
    CreateSessionRequest,
    InstallAgentRequest,
    MessageRequest,
    PermissionReplyRequest,
    QuestionReplyRequest,
)
from sandbox_agent.sdk.errors import SandboxAgentError

M = TypeVar("M", bound=ApiModel)

#: Timeouts of ordinary requests; streams override the read timeout (none).
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: An agent install downloads up to about 500 MB.
INSTALL_TIMEOUT = httpx.Timeout(900.0, connect=10.0)


class ApiClient:
    """One server's HTTP API over an ``httpx.AsyncClient`` (closed with ``aclose``)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @classmethod
    def open(
        cls,
        base_url: str,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ApiClient:
        """A client of ``base_url``; ``token`` is sent as ``Authorization: Bearer``."""
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=all_headers, timeout=timeout, transport=transport
        )
        return cls(http)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def base_url(self) -> str:
        return str(self.http.base_url)

    # -- requests -------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request; raises ``SandboxAgentError`` on an error status."""
        query = _query(params)
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self.http.request(method, path, json=json, params=query, **extra)
        except httpx.TimeoutException:
            raise
        except httpx.TransportError:
            if method.upper() != "GET":
                raise
            # A kept-alive connection the network dropped while idle: one retry is safe for
            # a read (a POST might have been applied, so it is not retried).
            response = await self.http.request(method, path, json=json, params=query, **extra)
        if response.status_code >= 400:
            raise SandboxAgentError.from_response(response)
        return response

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """``request``, then its JSON answer (None when the answer is empty)."""
        response = await self.request(method, path, json=json, params=params, timeout=timeout)
        return response.json() if response.content else None

    async def stream_lines(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[str]:
        """A streaming request's body, line by line (SSE text as it arrives), until the server
        ends it; no read timeout (a stream may idle for long). Raises ``SandboxAgentError`` on
        an error status."""
        limits = self.http.timeout
        timeout = httpx.Timeout(connect=limits.connect, read=None, write=limits.write, pool=None)
        request = self.http.build_request(
            method, path, json=json, params=_query(params), headers=headers, timeout=timeout
        )
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise SandboxAgentError.from_response(response)
            async for line in response.aiter_lines():
                yield line
        finally:
            await response.aclose()

    # -- agents ---------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """``GET /v1/health``."""
        return dict(await self.request_json("GET", "/v1/health") or {})

    async def list_agents(self) -> dict[str, Any]:
        """``GET /v1/agents``: ``{"agents": [AgentInfo, ...]}``."""
        return dict(await self.request_json("GET", "/v1/agents"))

    async def install_agent(
        self, agent: str, reinstall: bool = False, *, timeout: httpx.Timeout = INSTALL_TIMEOUT
    ) -> None:
        """``POST /v1/agents/{agent}/install``: returns once the agent is installed."""
        body = _body(InstallAgentRequest, reinstall=reinstall)
        await self.request("POST", f"/v1/agents/{agent}/install", json=body, timeout=timeout)

    async def agent_modes(self, agent: str) -> dict[str, Any]:
        """``GET /v1/agents/{agent}/modes``."""
        return dict(await self.request_json("GET", f"/v1/agents/{agent}/modes"))

    async def agent_models(self, agent: str) -> dict[str, Any]:
        """``GET /v1/agents/{agent}/models``."""
        return dict(await self.request_json("GET", f"/v1/agents/{agent}/models"))

    # -- sessions -------------------------------------------------------------------------
    async def list_sessions(
        self, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """``GET /v1/sessions``: ``{"sessions": [SessionInfo, ...], "nextCursor": ...}``."""
        params = {"limit": limit, "cursor": cursor}
        return dict(await self.request_json("GET", "/v1/sessions", params=params))

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """``GET /v1/sessions/{id}``: the ``SessionInfo``."""
        return dict(await self.request_json("GET", f"/v1/sessions/{session_id}"))

    async def create_session(
        self, session_id: str, request: CreateSessionRequest
    ) -> dict[str, Any]:
        """``POST /v1/sessions/{id}``: the ``CreateSessionResponse``."""
        path = f"/v1/sessions/{session_id}"
        return dict(await self.request_json("POST", path, json=request.wire()) or {})

    async def delete_session(self, session_id: str) -> None:
        """``DELETE /v1/sessions/{id}``."""
        await self.request("DELETE", f"/v1/sessions/{session_id}")

    async def send_message(self, session_id: str, request: MessageRequest) -> None:
        """``POST /v1/sessions/{id}/messages``: returns once the turn started."""
        path = f"/v1/sessions/{session_id}/messages"
        await self.request("POST", path, json=request.wire())

    def send_message_stream(
        self, session_id: str, request: MessageRequest, include_raw: bool = False
    ) -> AsyncIterator[str]:
        """``POST /v1/sessions/{id}/messages/stream``: the turn's SSE text, line by line."""
        path = f"/v1/sessions/{session_id}/messages/stream"
        params = {"include_raw": _flag(include_raw)}
        return self.stream_lines("POST", path, json=request.wire(), params=params)

    async def events(
        self,
        session_id: str,
        offset: int | None = None,
        limit: int | None = None,
        include_raw: bool = False,
    ) -> dict[str, Any]:
        """``GET /v1/sessions/{id}/events``: ``{"events": [...], "hasMore": ...}``."""
        params = {"offset": offset, "limit": limit, "include_raw": _flag(include_raw)}
        path = f"/v1/sessions/{session_id}/events"
        return dict(await self.request_json("GET", path, params=params))

    def events_sse(
        self, session_id: str, offset: int | None = None, include_raw: bool = False
    ) -> AsyncIterator[str]:
        """``GET /v1/sessions/{id}/events/sse``: the session live, as SSE text line by line."""
        params = {"offset": offset, "include_raw": _flag(include_raw)}
        return self.stream_lines("GET", f"/v1/sessions/{session_id}/events/sse", params=params)

    async def reply_permission(
        self, session_id: str, permission_id: str, reply: Literal["once", "always", "reject"]
    ) -> None:
        path = f"/v1/sessions/{session_id}/permissions/{permission_id}/reply"
        await self.request("POST", path, json=_body(PermissionReplyRequest, reply=reply))

    async def reply_question(
        self, session_id: str, question_id: str, answers: list[list[str]]
    ) -> None:
        path = f"/v1/sessions/{session_id}/questions/{question_id}/reply"
        await self.request("POST", path, json=_body(QuestionReplyRequest, answers=answers))

    async def reject_question(self, session_id: str, question_id: str) -> None:
        path = f"/v1/sessions/{session_id}/questions/{question_id}/reject"
        await self.request("POST", path)

    async def cancel(self, session_id: str) -> None:
        """Interrupt the running turn; it ends with ``reason: cancelled``."""
        await self.request("POST", f"/v1/sessions/{session_id}/cancel")

    async def terminate(self, session_id: str) -> None:
        """Stop the agent; the session ends (its events stay)."""
        await self.request("POST", f"/v1/sessions/{session_id}/terminate")


def request_body(model: type[M], /, **fields: Any) -> M:
    """``model(**fields)``, a refusal as ``SandboxAgentError`` 400 ``invalid_request`` (as the
    server would answer), raised before anything is sent."""
    try:
        return model(**fields)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SandboxAgentError.of("invalid_request", 400, f"invalid request: {errors}") from exc


def _body(model: type[ApiModel], **fields: Any) -> dict[str, Any]:
    return request_body(model, **fields).wire()


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def _flag(value: bool) -> bool | None:
    # Sent only when set, as v0.1 clients do.
    return True if value else None
